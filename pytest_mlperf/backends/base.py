"""The Backend protocol every inference engine implements, and the options they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # the plugin validates --mlperf-backend at configure time, before any benchmark needs numpy
    import numpy as np


@dataclass(frozen=True)
class BackendOptions:
    """Engine-independent knobs; each backend maps them onto its own session options."""

    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    intra_op_threads: int = 0  # 0: one per core the process may use
    inter_op_threads: int = 1
    batch_size: int = 32  # Offline/Server batch ceiling
    graph_optimization: str = "all"  # disable | basic | extended | all
    warmup_runs: int = 3


@runtime_checkable
class Backend(Protocol):
    """Runs a batch of preprocessed inputs and returns the raw outputs, first axis = batch."""

    name: str
    version: str

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Infer one batch. Must be safe to call from several threads at once."""
        ...

    def warmup(self, sample: np.ndarray) -> None:
        """Run a few throw-away inferences so the first timed query does not pay for lazy init."""
        ...
