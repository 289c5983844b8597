"""The Backend protocol every inference engine implements, and the options they share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pytest_mlperf.errors import ModelError

if TYPE_CHECKING:  # the plugin imports this module to register the built-in backends; numpy comes with a run
    import numpy as np

    from pytest_mlperf.datasets.base import Inputs


@dataclass(frozen=True)
class BackendOptions:
    """Engine-independent knobs, plus engine-specific ``extra`` pairs from ``--mlperf-backend-option KEY=VALUE``."""

    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    intra_op_threads: int = 0  # 0: one per core the process may use
    inter_op_threads: int = 1
    batch_size: int = 32  # Offline/Server batch ceiling
    graph_optimization: str = "all"  # disable | basic | extended | all
    warmup_runs: int = 3
    extra: tuple[tuple[str, str], ...] = ()
    cache_dir: Path | None = None  # where engines cache what they compile (TVM libraries); not a number-changer

    def option(self, key: str, default: str | None = None) -> str | None:
        """The last ``--mlperf-backend-option`` value given for *key*."""
        return dict(self.extra).get(key, default)

    def refuse_unknown(self, engine: str, keys: Sequence[str], usage: str) -> None:
        """Raise ModelError for a ``--mlperf-backend-option`` key the *engine* does not read, listing the *keys* it
        does and their *usage*."""
        unknown = sorted({key for key, _ in self.extra} - set(keys))
        if unknown:
            raise ModelError(
                f"--mlperf-backend-option {unknown[0]}=...: the {engine} backend has no option {unknown[0]!r}; it "
                f"reads: {', '.join(keys)} ({usage})"
            )

    def describe(self) -> dict[str, Any]:
        """These options as a run records them (and the gate fingerprints them)."""
        out: dict[str, Any] = {
            "providers": list(self.providers),
            "threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
            "batch_size": self.batch_size,
            "graph_optimization": self.graph_optimization,
        }
        if self.extra:
            out["options"] = dict(self.extra)
        return out


@runtime_checkable
class Backend(Protocol):
    """Runs a batch of preprocessed inputs and returns the outputs by name, first axis = batch.

    ``thread_safe`` False makes the harness give each inference thread its own instance. ``model_identity`` is
    what identifies a model that is not a local file (a server's reported name and version, or a digest the user
    gave); the harness hashes local files itself.
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def thread_safe(self) -> bool: ...

    @property
    def model_identity(self) -> str | None: ...

    def run(self, inputs: Inputs) -> Mapping[str, np.ndarray]:
        """Infer one batch: one array for a one-input model, else tensors by input name."""
        ...

    def warmup(self, sample: Inputs) -> None:
        """Run a few throw-away inferences so the first timed query does not pay for lazy init."""
        ...

    def describe(self) -> dict[str, Any]:
        """What enters the results and the gate's fingerprint: the engine version and every option that can change
        the numbers."""
        ...

    def close(self) -> None:
        """Release the engine's resources (sessions, GPU memory); the backend is not used afterwards."""
        ...


def local_model(model: Path | str) -> Path:
    """*model* as a Path to an existing file, else a ModelError that says where relative paths start and the fix."""
    path = Path(model)
    if not path.is_file():
        raise ModelError(
            f"model file not found: {path} (relative paths start at {Path.cwd()}); check the path, or "
            "provision the model through the mlperf_assets fixture (see --mlperf-asset NAME=PATH)"
        )
    return path
