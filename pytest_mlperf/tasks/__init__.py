"""Tasks: what a benchmark's outputs mean and how they are scored (classification first; detection and QA next)."""

from pytest_mlperf.tasks.base import AccuracyCoverageError, Task, describe

__all__ = ["AccuracyCoverageError", "Task", "describe"]
