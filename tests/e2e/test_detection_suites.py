"""End to end: the detection suites on stand-in detectors whose detections are written into lossless images.

For each MLPerf detector interface (SSD-MobileNet, SSD-ResNet34, RetinaNet) the test writes PNG images (sizes that
are whole multiples of the model input, one greyscale) with a payload of designed detections, a COCO-format
annotation file with the ground truth, and the stand-in ONNX (pytest_mlperf/models/detector_standin.py). Every
designed detection either matches its own ground-truth box exactly, overlaps it with IoU 0.633 (a hit below
IoU 0.65 only) or lies on no object, so the expected AP at each IoU threshold follows from counting: it is computed
here from the design (COCO's 101-point interpolated precision), not by pycocotools, and the suite's mAP, AP50
and AP75 must equal it to 1e-9. Category counts (13 and 7) keep recall off multiples of 0.01.
An independent decoder of mlperf_log_accuracy.json (struct, not numpy) checks the response layout.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pytest_httpserver import HTTPServer

from pytest_mlperf.models.detector_standin import (
    BOX_UNITS,
    INTERFACES,
    SCORE_UNITS,
    Interface,
    PayloadDetection,
    build_detector_standin,
    write_payload,
)

PIL = pytest.importorskip("PIL", reason="detection preprocessing needs Pillow: pip install pillow")
pytest.importorskip("pycocotools", reason="detection accuracy needs pycocotools: pip install pycocotools")

SUITE_FILE = Path(__file__).resolve().parents[2] / "suites" / "test_detection.py"
QUIET = ["--mlperf-threads=1", "--mlperf-latency-bound-ms=500", "-p", "no:cacheprovider"]
#: Performance runs that are VALID whatever this machine's speed: a few samples and no minimum duration (the
#: calibration times the model, not the copy of 1200x1200 float inputs, and would ask for far too many).
ANY_SPEED = ["--mlperf-target-qps=40", "--mlperf-min-duration-ms=0", *QUIET]
MAX_DETECTIONS = 16
#: The COCO ids absent from the 80 categories; contiguous label i is the i-th present id (the reference's inv_map).
COCO_GAPS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
COCO_IDS = [i for i in range(1, 91) if i not in COCO_GAPS]
W_BOX, SHIFT = 640, 144  # box width and shift in 1/4000: IoU (640 - 144) / (640 + 144) = 0.6327


@dataclass(frozen=True)
class Profile:
    test: str
    model_entry: str
    dataset_entry: str
    interface: Interface
    sizes: tuple[tuple[int, int], ...]  # (height, width) of each image
    categories: tuple[int, int]  # the two category ids with objects
    labels: str  # how the model names a category: coco ids, coco80 contiguous, or the file's own ids


PROFILES = {
    "ssd_mobilenet": Profile("test_ssd_mobilenet", "ssd-mobilenet-v1-onnx", "coco-2017-val",
                             INTERFACES["ssd-mobilenet"],
                             ((300, 300), (600, 300), (300, 600), (600, 600), (300, 300), (600, 600), (300, 300),
                              (300, 600)), (1, 27), "coco"),
    "ssd_resnet34": Profile("test_ssd_resnet34", "ssd-resnet34-onnx", "coco-2017-val", INTERFACES["ssd-resnet34"],
                            ((1200, 1200),) * 8, (3, 88), "coco80"),
    "retinanet": Profile("test_retinanet", "retinanet-onnx", "openimages-mlperf", INTERFACES["retinanet"],
                         ((800, 800), (800, 1600), (800, 800), (1600, 800), (800, 800), (800, 800), (800, 800),
                          (800, 800)), (5, 200), "own"),
}  # fmt: skip


@dataclass
class Design:
    root: Path
    annotations: dict[str, Any]
    expected: dict[str, float]
    truth: dict[int, list[tuple[int, list[float]]]]  # image index -> [(category, [x, y, w, h])]


def _slot(k: int) -> tuple[int, int]:
    """Top-left (y, x) in 1/4000 of slot k of a 4x4 grid below the payload rows: objects never overlap."""
    row, col = divmod(k, 4)
    return 1200 + 680 * row, 100 + 960 * col


def _ap(scored: list[tuple[float, float]], n_gt: int, threshold: float) -> float:
    """COCO's AP for one category: detections (score, IoU with their own target), 101-point interpolation."""
    ranked = sorted(scored, key=lambda d: -d[0])
    tp = np.cumsum([iou >= threshold for _, iou in ranked])
    fp = np.cumsum([iou < threshold for _, iou in ranked])
    recall = tp / n_gt
    precision = tp / np.maximum(tp + fp, np.spacing(1))
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    points = [envelope[i] if (i := int(np.searchsorted(recall, r, side="left"))) < len(recall) else 0.0
              for r in np.linspace(0.0, 1.0, 101)]  # fmt: skip
    return float(np.mean(points))


def design(root: Path, profile: Profile, seed: int = 7) -> tuple[Design, list[list[PayloadDetection]]]:
    rng = np.random.default_rng(seed)
    n = len(profile.sizes)
    counts = dict(zip(profile.categories, (13, 7), strict=True))
    scores = iter(rng.permutation(np.arange(2400, 4096))[:200].tolist())  # distinct, all above 0.58
    dets: list[list[PayloadDetection]] = [[] for _ in range(n)]
    scored: dict[int, list[tuple[float, float]]] = {c: [] for c in profile.categories}
    truth: dict[int, list[tuple[int, list[float]]]] = {i: [] for i in range(n)}
    used = [0] * n
    model_label = {c: (COCO_IDS.index(c) + 1 if profile.labels == "coco80" else c) for c in profile.categories}
    k = 0
    for cat, count in counts.items():
        for _ in range(count):
            image = k % n
            k += 1
            y, x = _slot(used[image])
            used[image] += 1
            h_img, w_img = profile.sizes[image]
            truth[image].append((cat, [x / BOX_UNITS * w_img, y / BOX_UNITS * h_img, W_BOX / BOX_UNITS * w_img,
                                       500 / BOX_UNITS * h_img]))  # fmt: skip
            outcome = rng.choice(["exact", "exact", "shifted", "missed"])
            if outcome == "missed":
                continue
            shift = SHIFT if outcome == "shifted" else 0
            q = next(scores)
            box = ((y) / BOX_UNITS, (x + shift) / BOX_UNITS, (y + 500) / BOX_UNITS, (x + shift + W_BOX) / BOX_UNITS)
            dets[image].append(PayloadDetection(box, q / SCORE_UNITS, model_label[cat]))
            scored[cat].append((q, 1.0 if not shift else (W_BOX - SHIFT) / (W_BOX + SHIFT)))
    for image in range(n):  # one detection on no object per image, of either category
        cat = profile.categories[image % 2]
        y, x = _slot(used[image])
        q = next(scores)
        box = (y / BOX_UNITS, x / BOX_UNITS, (y + 500) / BOX_UNITS, (x + W_BOX) / BOX_UNITS)
        dets[image].append(PayloadDetection(box, q / SCORE_UNITS, model_label[cat]))
        scored[cat].append((q, 0.0))
    for image in range(n):  # sorted by score, as detectors answer (the reference stops at the first low score)
        dets[image].sort(key=lambda d: -d.score)
    thresholds = np.linspace(0.5, 0.95, 10)
    per_t = [np.mean([_ap(scored[c], counts[c], t) for c in profile.categories]) for t in thresholds]
    expected = {"mAP": float(np.mean(per_t)), "AP50": float(per_t[0]), "AP75": float(per_t[5])}
    ids = COCO_IDS if profile.labels != "own" else sorted({*profile.categories, 17})
    images, annotations = [], []
    for i, (h, w) in enumerate(profile.sizes):
        images.append({"id": 1000 + 3 * i, "file_name": f"img{i:03d}.png", "height": h, "width": w})
        for cat, bbox in truth[i]:
            annotations.append({"id": len(annotations) + 1, "image_id": 1000 + 3 * i, "category_id": cat,
                                "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})  # fmt: skip
    document = {"images": images, "annotations": annotations,
                "categories": [{"id": c, "name": f"class{c}", "supercategory": "x"} for c in ids]}  # fmt: skip
    return Design(root, document, expected, truth), dets


def write_dataset(root: Path, profile: Profile) -> Design:
    from PIL import Image

    plan, dets = design(root, profile)
    if profile.dataset_entry == "coco-2017-val":
        images_dir, annotation_file = root / "val2017", root / "annotations" / "instances_val2017.json"
    else:
        images_dir, annotation_file = root / "validation" / "data", root / "annotations" / "openimages-mlperf.json"
    images_dir.mkdir(parents=True)
    annotation_file.parent.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i, (h, w) in enumerate(profile.sizes):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        write_payload(pixels, dets[i], profile.interface, MAX_DETECTIONS)
        if i == 1:  # a greyscale file: the reference replicates it to three channels
            Image.fromarray(pixels[:, :, 0], mode="L").save(images_dir / f"img{i:03d}.png")
        else:
            Image.fromarray(pixels).save(images_dir / f"img{i:03d}.png")
    annotation_file.write_text(json.dumps(plan.annotations))
    return plan


def _manifest(directory: Path, name: str, model: bytes) -> Path:
    entry = {"name": name, "kind": "model", "url": "http://127.0.0.1:9/standin.onnx", "filename": f"{name}.onnx",
             "sha256": hashlib.sha256(model).hexdigest(), "description": "detector stand-in (tests)"}  # fmt: skip
    path = directory / "manifest.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 1, "assets": [entry]}), encoding="utf-8")
    return path


def decode_log(path: Path, plan: Design) -> dict[int, list[tuple[float, ...]]]:
    """The accuracy log read from its documented layout: hex float32, 7 per detection, qsl index first."""
    out: dict[int, list[tuple[float, ...]]] = {}
    for entry in json.loads(path.read_text()):
        raw = bytes.fromhex(entry["data"])
        values = struct.unpack(f"<{len(raw) // 4}f", raw)
        dets = [values[i : i + 7] for i in range(0, len(values), 7)]
        assert all(int(d[0]) == entry["qsl_idx"] for d in dets)
        out[entry["qsl_idx"]] = dets
    return out


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_detection=SUITE_FILE.read_text())
    return pytester


@pytest.mark.parametrize("key", list(PROFILES))
def test_accuracy_on_the_standin_equals_the_designed_map(
    suite: pytest.Pytester, tmp_path: Path, key: str
) -> None:
    profile = PROFILES[key]
    plan = write_dataset(tmp_path / "data", profile)
    model = build_detector_standin(profile.interface, MAX_DETECTIONS)
    model_path = tmp_path / "standin.onnx"
    model_path.write_bytes(model)
    results, logs = tmp_path / "results.json", tmp_path / "logs"
    manifest = _manifest(tmp_path, profile.model_entry, model)
    run = suite.runpytest(
        "-k", profile.test, "--mlperf-offline", f"--mlperf-manifest={manifest}",
        f"--mlperf-asset={profile.model_entry}={model_path}", f"--mlperf-asset={profile.dataset_entry}={plan.root}",
        f"--mlperf-cache-dir={tmp_path / 'c'}", "--mlperf-scenarios=Offline", "--mlperf-mode=accuracy",
        "--mlperf-accuracy-target=0.01", f"--mlperf-results={results}", f"--mlperf-log-dir={logs}", *QUIET,
    )  # fmt: skip
    run.assert_outcomes(passed=1)
    (record,) = json.loads(results.read_text())["runs"]
    metrics = record["metrics"]["accuracy"]
    for name in ("mAP", "AP50", "AP75"):
        assert metrics[name] == pytest.approx(plan.expected[name], abs=1e-9), name
    assert plan.expected["AP50"] > plan.expected["AP75"]  # the shifted hits make the thresholds differ
    assert metrics["images"] == len(profile.sizes)
    assert record["task"] == {"name": "detection", "metric": "mAP", "higher_is_better": True}
    (log,) = logs.rglob("mlperf_log_accuracy.json")
    assert (log.parent / "accuracy.txt").read_text().strip() == f"mAP={100 * plan.expected['mAP']:.3f}%"
    decoded = decode_log(log, plan)
    assert sorted(decoded) == list(range(len(profile.sizes)))
    ids = COCO_IDS if profile.labels == "coco80" else None
    for idx, dets in decoded.items():
        h, w = profile.sizes[idx]
        # Every detection's category is the annotation file's id (coco80 labels mapped back), its box normalised.
        got = sorted((round(d[2] * w, 1), round(d[1] * h, 1), int(d[6])) for d in dets)
        want_cats = {c for c, _ in plan.truth[idx]} | set(profile.categories)
        assert all(cat in want_cats for *_, cat in got)
        assert all(0.0 <= v <= 1.0 for d in dets for v in d[1:5])
        if ids is not None:
            assert all(int(d[6]) in ids for d in dets)
        scores = [d[5] for d in dets]
        assert scores == sorted(scores, reverse=True)
    total = sum(len(d) for d in decoded.values())
    assert metrics["detections"] == total


@pytest.mark.parametrize(
    ("test", "model", "dataset"),
    [
        ("test_ssd_mobilenet", "ssd-mobilenet-v1-onnx", "coco-2017-val"),
        ("test_ssd_resnet34", "ssd-resnet34-onnx", "coco-2017-val"),
        ("test_retinanet", "retinanet-onnx", "openimages-mlperf"),
    ],
)
def test_offline_without_the_model_each_suite_skips_saying_how_to_provide_it(
    suite: pytest.Pytester, tmp_path: Path, test: str, model: str, dataset: str
) -> None:
    run = suite.runpytest("-k", test, "--mlperf-offline", f"--mlperf-cache-dir={tmp_path / 'empty'}", "-rs")

    run.assert_outcomes(skipped=8)  # four scenarios, two modes
    run.stdout.fnmatch_lines([f"*--mlperf-asset {model}=PATH*"])
    strict = suite.runpytest("-k", test, "--mlperf-offline", "--mlperf-strict-assets", "--mlperf-scenarios=Offline",
                             f"--mlperf-cache-dir={tmp_path / 'empty'}")  # fmt: skip
    strict.assert_outcomes(failed=2)
    strict.stdout.fnmatch_lines([f"*--mlperf-asset {model}=PATH*", "*--mlperf-strict-assets*"])


@pytest.mark.parametrize("key", list(PROFILES))
def test_without_data_performance_runs_on_synthetic_inputs_and_accuracy_skips(
    suite: pytest.Pytester, tmp_path: Path, key: str
) -> None:
    profile = PROFILES[key]
    model = build_detector_standin(profile.interface, MAX_DETECTIONS)
    model_path = tmp_path / "standin.onnx"
    model_path.write_bytes(model)
    results = tmp_path / "results.json"
    run = suite.runpytest(
        "-k", profile.test, "--mlperf-offline", f"--mlperf-manifest={_manifest(tmp_path, profile.model_entry, model)}",
        f"--mlperf-asset={profile.model_entry}={model_path}", f"--mlperf-cache-dir={tmp_path / 'c'}", "-rs",
        "--mlperf-scenarios=Offline", f"--mlperf-results={results}", *ANY_SPEED,
    )  # fmt: skip

    run.assert_outcomes(passed=1, skipped=1)
    run.stdout.fnmatch_lines(
        ["*Offline-performance? (synthetic inputs)*VALID*PASS", f"*--mlperf-asset {profile.dataset_entry}=PATH*"]
    )
    (perf,) = json.loads(results.read_text())["runs"]
    assert perf["synthetic_inputs"] is True
    assert perf["dataset"]["name"] == f"synthetic-{profile.interface.name}"


def test_a_detector_whose_outputs_differ_from_the_interface_fails_naming_them(
    suite: pytest.Pytester, tmp_path: Path
) -> None:
    profile = PROFILES["ssd_resnet34"]
    renamed = Interface(**{**profile.interface.__dict__, "outputs": ("boxes_xyxy", "scores", "labels")})
    model = build_detector_standin(renamed, MAX_DETECTIONS)
    model_path = tmp_path / "other.onnx"
    model_path.write_bytes(model)
    run = suite.runpytest(
        "-k", profile.test, "--mlperf-offline", f"--mlperf-manifest={_manifest(tmp_path, profile.model_entry, model)}",
        f"--mlperf-asset={profile.model_entry}={model_path}", f"--mlperf-cache-dir={tmp_path / 'c'}",
        "--mlperf-scenarios=Offline", "--mlperf-mode=performance", *ANY_SPEED,
    )  # fmt: skip

    run.assert_outcomes(failed=1)
    run.stdout.fnmatch_lines(["*the detector has no boxes output 'bboxes'; its outputs are 'boxes_xyxy', 'scores', "
                              "'labels'. Name the right one with Detection(boxes=...)*"])  # fmt: skip


def readme_detection_example() -> str:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = text.split("### Benchmark your own ONNX detector on your COCO-format data", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README lost its detector example"
    return match.group(1)


def test_the_readme_detector_example_scores_a_detector_of_its_own_interface(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    # The example's detector: 640x640 float32 NCHW in 0..1, boxes xyxy in input pixels, the file's own category ids.
    mine = Interface("mine", "images", 640, "NCHW", "float32", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0),
                     ("boxes", "scores", "labels"), "xyxy", "pixels", True)  # fmt: skip
    sizes = ((640, 640), (1280, 640)) * 4
    profile = Profile("test_my_detector", "", "openimages-mlperf", mine, sizes, (5, 200), "own")
    plan = write_dataset(tmp_path / "data", profile)
    (pytester.path / "my_detector.onnx").write_bytes(build_detector_standin(mine, MAX_DETECTIONS))
    example = readme_detection_example()
    example = example.replace("/data/mine/images", str(tmp_path / "data" / "validation" / "data"))
    annotations = tmp_path / "data" / "annotations" / "openimages-mlperf.json"
    example = example.replace("/data/mine/annotations.json", str(annotations))
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_mine=example)
    run = pytester.runpytest(
        "--mlperf-scenarios=Offline", "--mlperf-mode=accuracy", "--mlperf-accuracy-target=0.01",
        f"--mlperf-cache-dir={tmp_path / 'c'}", *QUIET,
    )  # fmt: skip
    run.assert_outcomes(passed=1)
    (record,) = json.loads((pytester.path / "mlperf-results" / "results.json").read_text())["runs"]
    assert record["dataset"]["name"] == "my-data"
    assert record["metrics"]["accuracy"]["mAP"] == pytest.approx(plan.expected["mAP"], abs=1e-9)


def test_every_scenario_scores_the_same_map_on_a_declared_subset(suite: pytest.Pytester, tmp_path: Path) -> None:
    profile = PROFILES["ssd_mobilenet"]
    plan = write_dataset(tmp_path / "data", profile)
    # One other annotation file in annotations/ declares a subset, which the results name.
    annotations = plan.root / "annotations"
    (annotations / "instances_val2017.json").rename(annotations / "val_subset.json")
    model = build_detector_standin(profile.interface, MAX_DETECTIONS)
    model_path = tmp_path / "standin.onnx"
    model_path.write_bytes(model)
    results = tmp_path / "results.json"
    run = suite.runpytest(
        "-k", profile.test, "--mlperf-offline", f"--mlperf-manifest={_manifest(tmp_path, profile.model_entry, model)}",
        f"--mlperf-asset={profile.model_entry}={model_path}", f"--mlperf-asset={profile.dataset_entry}={plan.root}",
        f"--mlperf-cache-dir={tmp_path / 'c'}", "--mlperf-mode=accuracy", "--mlperf-accuracy-target=0.01",
        f"--mlperf-results={results}", *QUIET,
    )  # fmt: skip
    run.assert_outcomes(passed=4)
    runs = json.loads(results.read_text())["runs"]
    assert sorted(r["scenario"] for r in runs) == ["MultiStream", "Offline", "Server", "SingleStream"]
    for record in runs:
        assert record["metrics"]["accuracy"]["mAP"] == pytest.approx(plan.expected["mAP"], abs=1e-9)
        assert record["dataset"]["name"] == "coco-2017-val[val_subset]"


def _zip(root: Path, top: str) -> bytes:
    """The directory *root*/*top* as a zip whose members start with *top*/, like COCO's public zips."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted((root / top).rglob("*")):
            archive.write(path, str(path.relative_to(root)))
    return buffer.getvalue()


def test_coco_is_provisioned_from_the_public_zip_layout(
    suite: pytest.Pytester, httpserver: HTTPServer, tmp_path: Path
) -> None:
    profile = PROFILES["ssd_mobilenet"]
    plan = write_dataset(tmp_path / "data", profile)
    images, annotations = _zip(plan.root, "val2017"), _zip(plan.root, "annotations")
    httpserver.expect_request("/zips/val2017.zip").respond_with_data(images)
    httpserver.expect_request("/annotations/annotations_trainval2017.zip").respond_with_data(annotations)
    model = build_detector_standin(profile.interface, MAX_DETECTIONS)
    model_path = tmp_path / "standin.onnx"
    model_path.write_bytes(model)
    entries = [
        {"name": profile.model_entry, "kind": "model", "url": "http://127.0.0.1:9/standin.onnx",
         "filename": "standin.onnx", "sha256": hashlib.sha256(model).hexdigest(), "description": "stand-in"},
        {"name": "coco-2017-val", "kind": "dataset", "url": httpserver.url_for("/zips/val2017.zip"),
         "filename": "val2017.zip", "sha256": hashlib.sha256(images).hexdigest(), "archive": "zip",
         "extract_root": "val2017", "description": "COCO images (tests)",
         "layout": {"format": "coco-images", "annotations": "coco-2017-annotations"}},
        {"name": "coco-2017-annotations", "kind": "dataset",
         "url": httpserver.url_for("/annotations/annotations_trainval2017.zip"),
         "filename": "annotations_trainval2017.zip", "sha256": hashlib.sha256(annotations).hexdigest(),
         "archive": "zip", "required_files": ["annotations/instances_val2017.json"], "description": "COCO (tests)",
         "layout": {"format": "coco-annotations", "instances": "annotations/instances_val2017.json"}},
    ]  # fmt: skip
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump({"schema_version": 1, "assets": entries}), encoding="utf-8")
    results = tmp_path / "results.json"
    run = suite.runpytest(
        "-k", profile.test, f"--mlperf-manifest={manifest}", f"--mlperf-asset={profile.model_entry}={model_path}",
        f"--mlperf-cache-dir={tmp_path / 'c'}", "--mlperf-scenarios=Offline", "--mlperf-mode=accuracy",
        "--mlperf-accuracy-target=0.01", f"--mlperf-results={results}", *QUIET,
    )  # fmt: skip
    run.assert_outcomes(passed=1)
    (record,) = json.loads(results.read_text())["runs"]
    assert record["metrics"]["accuracy"]["mAP"] == pytest.approx(plan.expected["mAP"], abs=1e-9)
    assert (record["dataset"]["name"], record["dataset"]["count"]) == ("coco-2017-val", len(profile.sizes))
