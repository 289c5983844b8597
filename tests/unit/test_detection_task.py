"""The detection task, the COCO-format dataset and the reference preprocessing, against values derived here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pytest_mlperf.datasets.coco import PROFILES, CocoDataset, CocoError, preprocess_image, synthetic_detection
from pytest_mlperf.tasks.base import AccuracyCoverageError
from pytest_mlperf.tasks.detection import (
    COCO80_TO_COCO,
    RETINANET,
    SSD_MOBILENET,
    SSD_RESNET34,
    Detection,
    DetectionInterfaceError,
)

PIL = pytest.importorskip("PIL", reason="detection preprocessing needs Pillow: pip install pillow")
pytest.importorskip("pycocotools", reason="detection accuracy needs pycocotools: pip install pycocotools")

#: Float pixels (0..255 scale) may differ from a float64 evaluation of the bilinear formula by float32 rounding.
TOLERANCE = 1e-4


def bilinear64(image: np.ndarray, size: int) -> np.ndarray:
    """OpenCV's INTER_LINEAR written from its definition: half-pixel centres, edges clamped, float64 sums."""

    def axis(src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # resize.cpp: fx = (float)((dx + 0.5) * scale_x - 0.5), a float32 position; the rest here is float64.
        pos = ((np.arange(size) + 0.5) * (src / size) - 0.5).astype(np.float32).astype(np.float64)
        pos = np.clip(pos, 0.0, src - 1.0)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, pos - lo

    h, w = image.shape[:2]
    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    img = image.astype(np.float64)
    out = np.empty((size, size, 3))
    for i in range(size):
        top = img[y0[i], x0] * (1 - fx)[:, None] + img[y0[i], x1] * fx[:, None]
        bottom = img[y1[i], x0] * (1 - fx)[:, None] + img[y1[i], x1] * fx[:, None]
        out[i] = top * (1 - fy[i]) + bottom * fy[i]
    return out


def _png(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("shape", [(480, 640, 3), (53, 37, 3), (300, 300, 3), (211, 407)])
def test_mobilenet_pixels_are_the_truncated_bilinear_resize(tmp_path: Path, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape))
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    got = preprocess_image(_png(tmp_path / "a.png", pixels), PROFILES["ssd-mobilenet"][0])
    rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, None], 3, axis=2)  # grey -> three channels
    want = bilinear64(rgb, 300)
    assert got.shape == (300, 300, 3) and got.dtype == np.uint8
    # np.asarray(float, uint8) truncates; away from integer values the truncation is certain.
    certain = np.abs(want - np.round(want)) > TOLERANCE
    assert np.array_equal(got[certain], np.floor(want[certain]).astype(np.uint8))
    assert np.all(np.abs(got.astype(np.float64) - np.floor(want + TOLERANCE)) <= 1)
    if shape[:2] == (300, 300):
        assert np.array_equal(got, rgb)  # same size: a copy


def test_resnet34_and_retinanet_pixels_are_normalised_nchw(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)
    path = _png(tmp_path / "b.png", pixels)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    resnet = preprocess_image(path, PROFILES["ssd-resnet34"][0])
    want = (bilinear64(pixels, 1200) / 255.0 - mean) / std
    assert resnet.shape == (3, 1200, 1200) and resnet.dtype == np.float32
    assert np.max(np.abs(resnet - want.transpose(2, 0, 1))) < TOLERANCE / 255 / 0.224
    retina = preprocess_image(path, PROFILES["retinanet"][0])
    assert retina.shape == (3, 800, 800) and retina.dtype == np.float32
    assert np.max(np.abs(retina - (bilinear64(pixels, 800) / 255.0).transpose(2, 0, 1))) < TOLERANCE / 255


def _outputs(n: int = 2, k: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 1, (n, k, 4)).astype(np.float32)
    scores = np.sort(rng.uniform(0, 1, (n, k)).astype(np.float32), axis=1)[:, ::-1].copy()
    return {"detection_boxes:0": boxes, "detection_scores:0": scores,
            "detection_classes:0": rng.integers(1, 80, (n, k)).astype(np.float32),
            "num_detections:0": np.array([3, 0], np.float32)[:n]}  # fmt: skip


def test_responses_are_the_references_rows_packed_once_per_batch() -> None:
    out = _outputs()
    rows = SSD_MOBILENET.postprocess(out, [41, 7])
    assert [r.shape for r in rows] == [(3, 7), (0, 7)]  # num_detections: 3 and 0
    assert rows[0].base is rows[1].base  # views into one block: no per-sample copy
    want = np.column_stack([np.full(3, 41.0), out["detection_boxes:0"][0, :3], out["detection_scores:0"][0, :3],
                            out["detection_classes:0"][0, :3]]).astype(np.float32)  # fmt: skip
    assert np.array_equal(rows[0], want)


def test_xyxy_pixels_threshold_and_label_conventions() -> None:
    boxes = np.array([[[80, 160, 400, 800], [0, 0, 8, 8], [1, 1, 2, 2]]], np.float32)  # xmin ymin xmax ymax
    scores = np.array([[0.9, 0.04, 0.8]], np.float32)  # the reference stops at the first score below 0.05
    labels = np.array([[3, 4, 5]], np.int64)
    (rows,) = RETINANET.postprocess({"boxes": boxes, "scores": scores, "labels": labels}, [2])
    # Divided by the input size in float32, as the reference's box[1] / height: exactly float32(160 / 800).
    assert np.array_equal(rows, np.array([[2, 0.2, 0.1, 1.0, 0.5, 0.9, 3]], np.float32))
    norm = boxes / 800
    (resnet,) = SSD_RESNET34.postprocess({"bboxes": norm, "scores": np.array([[0.9, 0.6, 0.4]], np.float32),
                                          "labels": np.array([[1, 25, 80]])}, [0])  # fmt: skip
    assert resnet[:, 6].tolist() == [1.0, 27.0]  # contiguous 25 is COCO id 27; 0.4 < 0.5 stops
    assert COCO80_TO_COCO[80] == 90 and len(COCO80_TO_COCO) == 81
    unbatched = RETINANET.postprocess({"boxes": boxes[0], "scores": scores[0], "labels": labels[0]}, [9])
    assert len(unbatched) == 1 and unbatched[0][0, 0] == 9.0
    with pytest.raises(DetectionInterfaceError, match=r"no batch axis.*batch of 2: run it with --mlperf-batch-size 1"):
        RETINANET.postprocess({"boxes": boxes[0], "scores": scores[0], "labels": labels[0]}, [9, 10])


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"bboxes": np.zeros((1, 3, 4), np.float32)}, "the detector has no scores output 'scores'; its outputs are"),
        (
            {"bboxes": np.zeros((1, 3, 5), np.float32), "scores": np.zeros((1, 3), np.float32),
             "labels": np.zeros((1, 3))},
            "must be [N, K, 4]",
        ),
        (
            {"bboxes": np.zeros((1, 1, 4), np.float32), "scores": np.ones((1, 1), np.float32),
             "labels": np.array([[81]])},
            "has label 81; labels='coco80' declares contiguous labels 1..80",
        ),
        (np.zeros((1, 3)), "one unnamed output"),
    ],
)
def test_outputs_that_do_not_match_the_interface_are_refused(outputs: object, message: str) -> None:
    with pytest.raises(DetectionInterfaceError) as err:
        SSD_RESNET34.postprocess(outputs, [0])  # type: ignore[arg-type]
    assert message in str(err.value)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="needs input_size"):
        Detection(box_units="pixels")
    with pytest.raises(ValueError, match="box_order='yx'"):
        Detection(box_order="yx")  # type: ignore[arg-type]


def _coco_dir(root: Path, count: int = 3, subset: bool = False) -> Path:
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(1)
    images = []
    for i in range(count):
        _png(root / "val2017" / f"{i}.png", rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8))
        images.append({"id": 10 + i, "file_name": f"{i}.png", "height": 40 + i, "width": 50})
    doc = {"images": images, "categories": [{"id": 1, "name": "person"}],
           "annotations": [{"id": 1, "image_id": 10, "category_id": 1, "bbox": [5, 4, 20, 10], "area": 200,
                            "iscrowd": 0}]}  # fmt: skip
    name = "my_subset.json" if subset else "instances_val2017.json"
    (root / "annotations" / name).write_text(json.dumps(doc))
    return root / "annotations" / name


def test_dataset_scores_its_own_ground_truth_and_caches_the_pixels(tmp_path: Path) -> None:
    annotations = _coco_dir(tmp_path / "coco", subset=True)
    dataset = CocoDataset(tmp_path / "coco" / "val2017", annotations, tmp_path / "cache",
                          full_annotations="instances_val2017.json")  # fmt: skip
    assert dataset.name == "coco-2017-val[my_subset]"  # a declared subset is named
    dataset.prepare()
    assert dataset.preprocessed == 3
    again = CocoDataset(tmp_path / "coco" / "val2017", annotations, tmp_path / "cache")
    again.prepare()
    assert again.preprocessed == 0
    assert again.digest == dataset.digest and dataset.digest.startswith("sha256:")
    again.load([0, 1, 2])
    assert again.batch([2, 0]).shape == (2, 300, 300, 3)  # type: ignore[union-attr]
    # image 0 (40x50): the one object found exactly, plus one miss elsewhere; images 1 and 2 answer nothing.
    hit = np.array([0, 4 / 40, 5 / 50, 14 / 40, 25 / 50, 0.9, 1], np.float32).tobytes()
    miss = np.array([0, 0.8, 0.8, 0.9, 0.9, 0.5, 1], np.float32).tobytes()
    metrics = SSD_MOBILENET.score({0: hit + miss, 1: b"", 2: b""}, dataset)
    assert metrics["mAP"] == pytest.approx(1.0) and metrics["AP50"] == pytest.approx(1.0)
    assert metrics["images"] == 3 and metrics["detections"] == 2
    assert SSD_MOBILENET.accuracy_line(metrics) == "mAP=100.000%"
    with pytest.raises(AccuracyCoverageError, match="covers 2 of 3 samples"):
        SSD_MOBILENET.score({0: hit, 1: b""}, dataset)
    with pytest.raises(AccuracyCoverageError, match="carries detections of sample 0"):
        SSD_MOBILENET.score({0: b"", 1: hit, 2: b""}, dataset)
    with pytest.raises(AccuracyCoverageError, match="not a whole number of 7-float32"):
        SSD_MOBILENET.score({0: hit[:8], 1: b"", 2: b""}, dataset)
    with pytest.raises(ValueError, match="synthetic"):
        SSD_MOBILENET.score({}, synthetic_detection("ssd-mobilenet", count=2))
    # A partial log (TEST01's sampled responses) is scored over its own images, as accuracy-coco.py does: image 0
    # alone scores its one object; images 1 and 2 alone have no object to find.
    assert SSD_MOBILENET.score_subset({0: hit}, dataset)["images"] == 1
    assert SSD_MOBILENET.score_subset({0: hit}, dataset)["mAP"] == pytest.approx(1.0)
    assert SSD_MOBILENET.score_subset({1: b"", 2: b""}, dataset)["mAP"] == 0.0
    with pytest.raises(AccuracyCoverageError, match=r"unknown qsl indices \[3\]"):
        SSD_MOBILENET.score_subset({3: b""}, dataset)


def test_missing_and_unreadable_images_are_one_error(tmp_path: Path) -> None:
    annotations = _coco_dir(tmp_path / "coco", count=4)
    (tmp_path / "coco" / "val2017" / "1.png").unlink()
    (tmp_path / "coco" / "val2017" / "2.png").write_bytes(b"not a png")
    dataset = CocoDataset(tmp_path / "coco" / "val2017", annotations, tmp_path / "cache")
    assert dataset.name == "coco-2017-val"
    with pytest.raises(CocoError) as err:
        dataset.prepare()
    text = str(err.value)
    assert "2 of 4 listed images cannot be used" in text and "never shrunk silently" in text
    assert f"1 missing:\n  {tmp_path / 'coco' / 'val2017' / '1.png'}" in text
    assert f"1 unreadable:\n  {tmp_path / 'coco' / 'val2017' / '2.png'} (UnidentifiedImageError" in text


def test_a_malformed_annotation_file_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "a.json"
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "x.png"}]}))
    with pytest.raises(CocoError, match=r"a.json: images\[0\] lacks height, width"):
        CocoDataset(tmp_path, bad, tmp_path / "cache")
