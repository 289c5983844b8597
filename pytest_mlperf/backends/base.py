"""The Backend protocol every inference engine implements, and the options they share."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
    #: Where an engine caches what it builds from a model (a TensorRT engine); --mlperf-cache-dir. Not fingerprinted:
    #: where a build is kept changes no number.
    cache_dir: Path | None = None

    def option(self, key: str, default: str | None = None) -> str | None:
        """The last ``--mlperf-backend-option`` value given for *key*."""
        return dict(self.extra).get(key, default)

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



def as_feeds(inputs: Inputs, input_names: Sequence[str], model: object) -> Mapping[str, np.ndarray]:
    """*inputs* by input name: one array feeds a one-input model's only input; a mapping passes as it is."""
    if isinstance(inputs, Mapping):
        return inputs
    if len(input_names) != 1:
        raise ModelError(
            f"{model} has {len(input_names)} inputs ({', '.join(input_names)}) but the dataset gives one array; "
            "give the dataset a mapping of input name -> array"
        )
    return {input_names[0]: inputs}


def warm_up(run: Callable[[Inputs], object], sample: Inputs, options: BackendOptions) -> None:
    """Call *run* on *sample* ``options.warmup_runs`` times (at least once): what every engine's ``warmup`` does."""
    for _ in range(max(1, options.warmup_runs)):
        run(sample)


def option_error(engine: str, key: str, value: str, fix: str) -> ModelError:
    """The error for a bad ``--mlperf-backend-option ENGINE.KEY=VALUE``, with *fix* saying what to give instead."""
    return ModelError(f"--mlperf-backend-option {engine}.{key}={value}: {fix}")


def whole_option(options: BackendOptions, key: str, default: int) -> int:
    """The whole number given as ``KEY=N`` (already checked by ``options.check_options``), else *default*."""
    raw = options.option(key)
    return default if raw is None else int(raw)


def require_model_file(model: Path) -> None:
    """Raise ModelError naming the fix when the model file an engine is to load is not there."""
    if not model.is_file():
        raise ModelError(
            f"model file not found: {model} (relative paths start at {Path.cwd()}); check the path, or "
            "provision the model through the mlperf_assets fixture (see --mlperf-asset NAME=PATH)"
        )


def run_in_chunks(
    run_batch: Callable[[Inputs], Mapping[str, np.ndarray]], inputs: Inputs, size: int, *, pad: bool
) -> dict[str, np.ndarray]:
    """Run a batch of any size through *run_batch* in chunks of at most *size* samples, outputs concatenated.

    *pad* (a model whose batch axis is fixed at *size*): the last chunk is filled up to *size* with copies of its
    final sample, and the padding's outputs are dropped.
    """
    import numpy as np

    n = len(inputs) if isinstance(inputs, np.ndarray) else len(next(iter(inputs.values())))

    def chunk(array: np.ndarray, start: int) -> np.ndarray:
        part = array[start : start + size]
        if pad and len(part) < size:
            part = np.concatenate([part, np.repeat(part[-1:], size - len(part), axis=0)])
        return part

    pieces: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, size):
        if isinstance(inputs, np.ndarray):
            part: Inputs = chunk(inputs, start)
        else:
            part = {name: chunk(array, start) for name, array in inputs.items()}
        for name, out in run_batch(part).items():
            pieces.setdefault(name, []).append(out)
    return {name: np.concatenate(outs)[:n] for name, outs in pieces.items()}


def fit_batch(
    run_batch: Callable[[Inputs], Mapping[str, np.ndarray]], inputs: Inputs, size: int | None
) -> Mapping[str, np.ndarray]:
    """*run_batch* the batch as it is when the model's batch axis is free (*size* None) or the batch has *size*
    samples; else through :func:`run_in_chunks` of *size*, padded."""
    if size is not None:
        n = len(inputs) if not isinstance(inputs, Mapping) else len(next(iter(inputs.values())))
        if n != size:
            return run_in_chunks(run_batch, inputs, size, pad=True)
    return run_batch(inputs)


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
    require_model_file(path)
    return path
