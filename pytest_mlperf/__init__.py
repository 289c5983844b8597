"""pytest-mlperf: MLPerf Inference benchmarks (MLCommons LoadGen) as pytest cases."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_mlperf.backends.base import Backend, BackendOptions
    from pytest_mlperf.config import Thresholds
    from pytest_mlperf.datasets.base import ArrayDataset, Dataset
    from pytest_mlperf.datasets.coco import CocoDataset, DetectionPreprocessing
    from pytest_mlperf.datasets.imagenet import ImageNetDataset, imagenet_from_dir
    from pytest_mlperf.datasets.squad import SquadDataset
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
    from pytest_mlperf.tasks.base import Task
    from pytest_mlperf.tasks.classification import Classification
    from pytest_mlperf.tasks.detection import Detection
    from pytest_mlperf.tasks.squad import QuestionAnswering

#: Where each public name lives. Resolved on first access: pytest imports this package for the plugin in every
#: run, and the datasets pull in numpy, which a project that never benchmarks should not pay for.
_EXPORTS = {
    "SCENARIOS": "pytest_mlperf.rules",
    "Thresholds": "pytest_mlperf.config",
    "ArrayDataset": "pytest_mlperf.datasets.base",
    "Backend": "pytest_mlperf.backends.base",
    "BackendOptions": "pytest_mlperf.backends.base",
    "Classification": "pytest_mlperf.tasks.classification",
    "Dataset": "pytest_mlperf.datasets.base",
    "ImageNetDataset": "pytest_mlperf.datasets.imagenet",
    "Task": "pytest_mlperf.tasks.base",
    "imagenet_from_dir": "pytest_mlperf.datasets.imagenet",
    "ConfigError": "pytest_mlperf.errors",
    "InferenceError": "pytest_mlperf.errors",
    "LoadGenError": "pytest_mlperf.errors",
    "MLPerfError": "pytest_mlperf.errors",
    "MLPerfWarning": "pytest_mlperf.errors",
    "ModelError": "pytest_mlperf.errors",
    "ProvisioningError": "pytest_mlperf.errors",
    "RunResult": "pytest_mlperf.results",
    "QuestionAnswering": "pytest_mlperf.tasks.squad",
    "SquadDataset": "pytest_mlperf.datasets.squad",
    "CocoDataset": "pytest_mlperf.datasets.coco",
    "DetectionPreprocessing": "pytest_mlperf.datasets.coco",
    "Detection": "pytest_mlperf.tasks.detection",
}

__all__ = [
    "SCENARIOS",
    "ArrayDataset",
    "Backend",
    "BackendOptions",
    "Classification",
    "CocoDataset",
    "ConfigError",
    "Dataset",
    "Detection",
    "DetectionPreprocessing",
    "ImageNetDataset",
    "InferenceError",
    "LoadGenError",
    "MLPerfError",
    "MLPerfWarning",
    "ModelError",
    "ProvisioningError",
    "QuestionAnswering",
    "RunResult",
    "SquadDataset",
    "Task",
    "Thresholds",
    "imagenet_from_dir",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_mlperf' has no attribute {name!r}")
    return getattr(import_module(module), name)
