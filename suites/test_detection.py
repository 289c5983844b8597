"""MLPerf object detection: ``pytest suites/ -k ssd_mobilenet`` / ``-k ssd_resnet34`` / ``-k retinanet``.

Four scenarios each, performance and accuracy, like the ResNet50 suite. Assets come from the manifests:

* models: ``ssd-mobilenet-v1-onnx`` (COCO, 300x300), ``ssd-resnet34-onnx`` (COCO, 1200x1200),
  ``retinanet-onnx`` (OpenImages MLPerf subset, 800x800); downloaded once and checked, or a local copy
  (``--mlperf-asset NAME=PATH``);
* COCO 2017 val: a directory in the standard layout (``val2017/`` and ``annotations/instances_val2017.json``) given
  as ``--mlperf-asset coco-2017-val=DIR``, else the public zips (``coco-2017-val`` + ``coco-2017-annotations``).
  A directory whose ``annotations/`` holds one other ``*.json`` instead is a declared subset, named after it;
* OpenImages: ``--mlperf-asset openimages-mlperf=DIR`` (``validation/data/`` + ``annotations/openimages-mlperf.json``).

Accuracy is COCO bbox mAP from ``mlperf_log_accuracy.json`` (``accuracy.txt``: ``mAP=NN.NNN%``). The marker
holds the official target (99 % of the reference mAP); on a subset, where that number is noise, the target is
``SUBSET_MAP`` of the profile; ``--mlperf-accuracy-target`` overrides both. Without the dataset, performance runs on
synthetic inputs of the model's shape (marked ``synthetic_inputs``) and accuracy is skipped, saying how to provide
the data; without the model every case is skipped with the ways to provide it (``--mlperf-strict-assets``: failures).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_mlperf import ArrayDataset
from pytest_mlperf.datasets.coco import CocoDataset, CocoError, synthetic_detection
from pytest_mlperf.provisioning.assets import MLPerfAssets
from pytest_mlperf.provisioning.provision import AssetUnavailable
from pytest_mlperf.runner import CaseRunner


@dataclass(frozen=True)
class Suite:
    """One detector: its model entry, dataset, preprocessing profile and targets (mAP as a fraction)."""

    model: str
    profile: str
    dataset: str  # coco-2017-val or openimages-mlperf
    full_count: int
    full_annotations: str  # the annotation file of the full set; any other is a declared subset
    official_map: float
    #: On a subset: the official target less about three standard errors of a few-hundred-image estimate, so
    #: sampling alone does not fail a correct model. Change it here, or with --mlperf-accuracy-target.
    subset_map: float


COCO_FULL = "instances_val2017.json"
SSD_MOBILENET = Suite("ssd-mobilenet-v1-onnx", "ssd-mobilenet", "coco-2017-val", 5000, COCO_FULL, 0.22, 0.18)
SSD_RESNET34 = Suite("ssd-resnet34-onnx", "ssd-resnet34", "coco-2017-val", 5000, COCO_FULL, 0.198, 0.16)
RETINANET = Suite("retinanet-onnx", "retinanet", "openimages-mlperf", 24781, "openimages-mlperf.json", 0.371745, 0.33)


def find_detection_data(assets: MLPerfAssets, suite: Suite) -> tuple[Path, Path, str]:
    """Images directory, annotation file and dataset name; AssetUnavailable saying how to provide them."""
    if suite.dataset == "openimages-mlperf":
        found = assets.optional("openimages-mlperf")
        if found is None:
            raise AssetUnavailable(
                "openimages-mlperf",
                "No OpenImages MLPerf validation data is available (it has no public single download).",
                f"[openimages-mlperf] {assets.why_unavailable('openimages-mlperf')}",
            )
        return found.path / "validation" / "data", found.path / "annotations" / "openimages-mlperf.json", suite.dataset
    images = assets.optional("coco-2017-val")
    if images is None:
        raise AssetUnavailable(
            "coco-2017-val",
            "No COCO 2017 validation data is available: give a directory with val2017/ and "
            "annotations/instances_val2017.json (--mlperf-asset coco-2017-val=DIR), or allow the download.",
            f"[coco-2017-val] {assets.why_unavailable('coco-2017-val')}",
        )
    root = images.path
    local = root / "annotations"
    if local.is_dir():  # the standard layout in one directory: val2017/ and annotations/
        full = local / "instances_val2017.json"
        if full.is_file():
            return root / "val2017", full, suite.dataset
        declared = sorted(local.glob("*.json"))
        if len(declared) != 1:
            raise CocoError(
                f"{local}: expected instances_val2017.json, or exactly one other *.json (a declared subset); "
                f"found {', '.join(p.name for p in declared) or 'none'}"
            )
        return root / "val2017", declared[0], suite.dataset
    annotations = assets.optional("coco-2017-annotations")
    if annotations is None:
        raise AssetUnavailable(
            "coco-2017-annotations",
            "The COCO 2017 images are there but not their annotations.",
            f"[coco-2017-annotations] {assets.why_unavailable('coco-2017-annotations')}",
        )
    layout = assets.asset("coco-2017-annotations").layout
    if (root / "val2017").is_dir():  # a directory above the images, without annotations/
        root = root / "val2017"
    return root, annotations.path / str(layout.get("instances", "annotations/instances_val2017.json")), suite.dataset


def detection_dataset(
    suite: Suite, mode: str, assets: MLPerfAssets, cache_dir: Path
) -> CocoDataset | ArrayDataset:
    """The suite's QSL; synthetic inputs for performance, and a skip (with the how-to) for accuracy, without data."""
    try:
        images, annotations, name = find_detection_data(assets, suite)
    except AssetUnavailable as exc:
        if mode == "accuracy":
            assets.unavailable(str(exc))
        return synthetic_detection(suite.profile)
    try:
        dataset = CocoDataset(images, annotations, cache_dir, profile=suite.profile, name=name,
                              full_annotations=suite.full_annotations)  # fmt: skip
        dataset.prepare()
    except CocoError as exc:
        pytest.fail(str(exc), pytrace=False)
    return dataset


def run_detection(mlperf: CaseRunner, mode: str, model: Path, dataset: CocoDataset | ArrayDataset,
                  suite: Suite) -> None:  # fmt: skip
    if not dataset.synthetic_inputs and dataset.total_count != suite.full_count:
        result = mlperf.run(model, dataset, accuracy=suite.subset_map)  # the stated subset target
    else:
        result = mlperf.run(model, dataset)  # the marker's official target
    if mode == "accuracy":
        assert result.metrics.accuracy is not None
        assert result.metrics.accuracy["images"] == dataset.total_count
    else:
        assert result.valid is True
        assert result.synthetic_inputs is dataset.synthetic_inputs


@pytest.fixture(scope="session")
def detection_datasets() -> dict[str, CocoDataset | ArrayDataset]:
    return {}  # one prepared dataset per suite and mode kind, shared by the scenarios


def _dataset_for(suite: Suite, mode: str, assets: MLPerfAssets, cache_dir: Path,
                 memo: dict[str, CocoDataset | ArrayDataset]) -> CocoDataset | ArrayDataset:  # fmt: skip
    key = f"{suite.profile}:{mode}"
    if key not in memo:
        memo[key] = detection_dataset(suite, mode, assets, cache_dir)
    return memo[key]


@pytest.mark.mlperf(model_name="ssd-mobilenet", accuracy=SSD_MOBILENET.official_map)
def test_ssd_mobilenet(
    mlperf: CaseRunner, mlperf_scenario: str, mlperf_mode: str, mlperf_assets: MLPerfAssets, mlperf_cache_dir: Path,
    detection_datasets: dict[str, CocoDataset | ArrayDataset],
) -> None:
    model = mlperf_assets.get(SSD_MOBILENET.model)
    dataset = _dataset_for(SSD_MOBILENET, mlperf_mode, mlperf_assets, mlperf_cache_dir, detection_datasets)
    run_detection(mlperf, mlperf_mode, model, dataset, SSD_MOBILENET)


@pytest.mark.mlperf(model_name="ssd-resnet34", accuracy=SSD_RESNET34.official_map)
def test_ssd_resnet34(
    mlperf: CaseRunner, mlperf_scenario: str, mlperf_mode: str, mlperf_assets: MLPerfAssets, mlperf_cache_dir: Path,
    detection_datasets: dict[str, CocoDataset | ArrayDataset],
) -> None:
    model = mlperf_assets.get(SSD_RESNET34.model)
    dataset = _dataset_for(SSD_RESNET34, mlperf_mode, mlperf_assets, mlperf_cache_dir, detection_datasets)
    run_detection(mlperf, mlperf_mode, model, dataset, SSD_RESNET34)


@pytest.mark.mlperf(model_name="retinanet", accuracy=RETINANET.official_map, latency_ms={"Server": 100.0})
def test_retinanet(
    mlperf: CaseRunner, mlperf_scenario: str, mlperf_mode: str, mlperf_assets: MLPerfAssets, mlperf_cache_dir: Path,
    detection_datasets: dict[str, CocoDataset | ArrayDataset],
) -> None:
    model = mlperf_assets.get(RETINANET.model)
    dataset = _dataset_for(RETINANET, mlperf_mode, mlperf_assets, mlperf_cache_dir, detection_datasets)
    run_detection(mlperf, mlperf_mode, model, dataset, RETINANET)
