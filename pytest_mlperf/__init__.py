"""pytest-mlperf: MLPerf Inference benchmarks (MLCommons LoadGen) as pytest cases."""

from pytest_mlperf.config import SCENARIOS, Thresholds
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
