"""Embedded default suite: a CNN trained on the 1,797 real 8x8 digit scans, benchmarked in every scenario.

It needs no network: the scans ship inside pytest-mlperf and the model is trained deterministically on first use.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mlperf import ArrayDataset, Classification
from pytest_mlperf.models.digits import (
    DIGITS_ACCURACY_TARGET,
    DIGITS_MODEL_NAME,
    load_digits,
    split_indices,
)
from pytest_mlperf.models.digits_formats import digits_model_for


@pytest.fixture
def digits_model(mlperf_backend: str, mlperf_cache_dir: Path) -> Path:
    """The same trained weights in the format this case's engine loads (built once per engine and cached)."""
    return digits_model_for(mlperf_backend, mlperf_cache_dir)


@pytest.fixture(scope="session")
def digits_test_set() -> ArrayDataset:
    images, labels = load_digits()
    _, held_out = split_indices(labels)
    return ArrayDataset(images[held_out], labels[held_out], name="digits-heldout", task=Classification(topk=5))


# Bounds are deliberately loose for a shared CI runner; the regression gate catches the small changes.
@pytest.mark.mlperf(accuracy=DIGITS_ACCURACY_TARGET, latency_ms=25.0, min_qps=50.0, model_name=DIGITS_MODEL_NAME)
def test_digits(mlperf, mlperf_scenario, mlperf_mode, digits_model, digits_test_set):  # type: ignore[no-untyped-def]
    result = mlperf.run(digits_model, digits_test_set)
    if mlperf_mode == "accuracy":
        assert result.metrics.accuracy is not None
        assert result.metrics.accuracy["count"] == digits_test_set.total_count
    else:
        assert result.valid is True
