"""Datasets as LoadGen query sample libraries (QSLs), with per-task post-processing and metrics."""

from pytest_mlperf.datasets.base import AccuracyCoverageError, ArrayDataset, Classification, Dataset

__all__ = ["AccuracyCoverageError", "ArrayDataset", "Classification", "Dataset"]
