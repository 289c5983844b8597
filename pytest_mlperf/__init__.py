"""pytest-mlperf: MLPerf Inference benchmarks (MLCommons LoadGen) as pytest cases."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_mlperf.config import Thresholds
    from pytest_mlperf.datasets.base import ArrayDataset, Classification, Dataset
    from pytest_mlperf.errors import (
        ConfigError,
        InferenceError,
        LoadGenError,
        MLPerfError,
        MLPerfWarning,
        ModelError,
        ProvisioningError,
    )
    from pytest_mlperf.results import RunResult
    from pytest_mlperf.rules import SCENARIOS

#: Where each public name lives. Resolved on first access: pytest imports this package for the plugin in every
#: run, and the datasets pull in numpy, which a project that never benchmarks should not pay for.
_EXPORTS = {
    "SCENARIOS": "pytest_mlperf.config",
    "Thresholds": "pytest_mlperf.config",
    "ArrayDataset": "pytest_mlperf.datasets.base",
    "Classification": "pytest_mlperf.datasets.base",
    "Dataset": "pytest_mlperf.datasets.base",
    "ConfigError": "pytest_mlperf.errors",
    "InferenceError": "pytest_mlperf.errors",
    "LoadGenError": "pytest_mlperf.errors",
    "MLPerfError": "pytest_mlperf.errors",
    "MLPerfWarning": "pytest_mlperf.errors",
    "ModelError": "pytest_mlperf.errors",
    "ProvisioningError": "pytest_mlperf.errors",
    "RunResult": "pytest_mlperf.results",
}

__all__ = [
    "SCENARIOS",
    "ArrayDataset",
    "Classification",
    "ConfigError",
    "Dataset",
    "InferenceError",
    "LoadGenError",
    "MLPerfError",
    "MLPerfWarning",
    "ModelError",
    "ProvisioningError",
    "RunResult",
    "Thresholds",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_mlperf' has no attribute {name!r}")
    return getattr(import_module(module), name)
