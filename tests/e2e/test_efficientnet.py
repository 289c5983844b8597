"""End-to-end tests of the torch-free EfficientNet-Lite0 build on the real weights and the scikit-image photos."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from pytest_mlperf.datasets.photos import KNOWN_CLASSES, load_skimage_photos, preprocess_imagenet
from pytest_mlperf.errors import ProvisioningError
from pytest_mlperf.models.efficientnet_lite0 import (
    INPUT_NAME,
    MODEL_FILENAME,
    NUM_CLASSES,
    OUTPUT_NAME,
    WEIGHTS_SHA256,
    build_efficientnet_lite0,
    ensure_efficientnet_lite0,
    weights_path,
)

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("skimage", reason="the photos ship with scikit-image: pip install scikit-image")
pytest.importorskip("PIL", reason="preprocessing needs Pillow: pip install pillow")
try:
    weights_path()
except ProvisioningError as exc:
    pytest.skip(str(exc), allow_module_level=True)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_efficientnet_lite0(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def logits(model_path: Path) -> dict[str, npt.NDArray[np.float32]]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    photos = load_skimage_photos()
    batch = np.stack([preprocess_imagenet(image) for _, image in photos])
    (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch})
    return {name: out[i] for i, (name, _) in enumerate(photos)}


@pytest.mark.parametrize("photo", sorted(KNOWN_CLASSES))
def test_top5_contains_known_class(logits: dict[str, npt.NDArray[np.float32]], photo: str) -> None:
    top5 = [int(i) for i in np.argsort(-logits[photo])[:5]]
    assert KNOWN_CLASSES[photo] & set(top5), f"{photo}: top-5 {top5} misses all of {sorted(KNOWN_CLASSES[photo])}"


def test_top1_is_a_known_class_for_every_photo(logits: dict[str, npt.NDArray[np.float32]]) -> None:
    # Stronger than top-5: a mis-wired graph (wrong padding, a missing skip) keeps few photos right at top-1.
    top1 = {name: int(np.argmax(row)) for name, row in logits.items()}
    assert all(top1[name] in KNOWN_CLASSES[name] for name in KNOWN_CLASSES), top1


def test_graph_interface_has_dynamic_batch(model_path: Path) -> None:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == (INPUT_NAME, "tensor(float)", [3, 224, 224])
    assert (out.name, out.shape[1:]) == (OUTPUT_NAME, [NUM_CLASSES])
    assert isinstance(inp.shape[0], str)  # symbolic, so any batch size runs
    for batch in (1, 3):
        (y,) = session.run(None, {INPUT_NAME: np.zeros((batch, 3, 224, 224), np.float32)})
        assert y.shape == (batch, NUM_CLASSES)


def test_build_is_byte_identical_and_matches_cache(model_path: Path) -> None:
    first = build_efficientnet_lite0()
    second = build_efficientnet_lite0()
    assert first == second
    assert model_path.read_bytes() == first
    sidecar = model_path.with_name(f"{MODEL_FILENAME}.sha256").read_text().split()
    assert sidecar == [hashlib.sha256(first).hexdigest(), MODEL_FILENAME]


def test_cache_is_reused_then_rebuilt_when_corrupt(tmp_path: Path) -> None:
    path = ensure_efficientnet_lite0(tmp_path)
    good = path.read_bytes()
    inode = path.stat().st_ino

    assert ensure_efficientnet_lite0(tmp_path) == path
    assert path.stat().st_ino == inode  # reused in place, not rewritten

    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    assert ensure_efficientnet_lite0(tmp_path) == path
    assert path.read_bytes() == good

    path.with_name(f"{MODEL_FILENAME}.sha256").unlink()  # as a crash between the two writes would leave it
    ensure_efficientnet_lite0(tmp_path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == [
        MODEL_FILENAME,
        f"{MODEL_FILENAME}.sha256",
    ]  # no temporary files left behind


def test_weights_file_is_the_published_one() -> None:
    assert hashlib.sha256(weights_path().read_bytes()).hexdigest() == WEIGHTS_SHA256


@pytest.mark.parametrize("shape", [(300, 451, 3), (500, 200, 3), (224, 224, 3)])
def test_preprocess_shape_range_and_centre(shape: tuple[int, int, int]) -> None:
    # A frame of 0 around a white centre: after resize and centre crop the middle must still be white.
    image = np.zeros(shape, np.uint8)
    h, w = shape[:2]
    image[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
    x = preprocess_imagenet(image)
    assert x.shape == (3, 224, 224)
    assert x.dtype == np.float32
    assert x.flags.c_contiguous
    assert x.min() >= -127 / 128
    assert x.max() <= 1.0
    assert x[:, 112, 112].tolist() == [1.0, 1.0, 1.0]


def test_preprocess_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match=r"expected an HxWx3 uint8 RGB image, got \(8, 8\) uint8"):
        preprocess_imagenet(np.zeros((8, 8), np.uint8))
