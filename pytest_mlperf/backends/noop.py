"""A backend that does no work: measures the harness's and LoadGen's own cost."""

from __future__ import annotations

import numpy as np

from pytest_mlperf.backends.base import BackendOptions


class NoopBackend:
    """Returns zeros of a fixed width without touching the input beyond its batch size."""

    name = "noop"
    version = "0"

    def __init__(self, options: BackendOptions, width: int = 1) -> None:
        self.options = options
        self._width = width

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros((len(batch), self._width), dtype=np.float32)

    def warmup(self, sample: np.ndarray) -> None:
        return None
