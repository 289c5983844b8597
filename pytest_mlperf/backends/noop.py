"""A backend that does no work: measures the harness's and LoadGen's own cost."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pytest_mlperf.backends.base import BackendOptions
from pytest_mlperf.datasets.base import Inputs


class NoopBackend:
    """Returns zeros of a fixed width without touching the input beyond its batch size."""

    name = "noop"
    version = "0"
    thread_safe = True
    model_identity: str | None = "noop"

    def __init__(self, options: BackendOptions, width: int = 1) -> None:
        self.options = options
        self._width = width

    def run(self, inputs: Inputs) -> Mapping[str, np.ndarray]:
        first = inputs if isinstance(inputs, np.ndarray) else next(iter(inputs.values()))
        return {"output": np.zeros((len(first), self._width), dtype=np.float32)}

    def warmup(self, sample: Inputs) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return self.options.describe() | {"version": self.version}

    def close(self) -> None:
        return None
