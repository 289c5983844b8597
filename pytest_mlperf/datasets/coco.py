"""COCO-format detection datasets (COCO 2017 val, the MLPerf OpenImages subset): reference preprocessing, cached.

Layouts: COCO 2017 val is ``val2017/`` plus ``annotations/instances_val2017.json``; the MLPerf OpenImages subset
is ``validation/data/`` plus ``annotations/openimages-mlperf.json``. The QSL order is the order of the annotation
file's ``images`` list, as MLCommons' ``accuracy-coco.py`` assumes. A smaller annotation file in the same format
declares a subset; the dataset is then named after it (``coco-2017-val[my_subset]``) in the results.

Preprocessing (:class:`DetectionPreprocessing`) is the reference's (``dataset.py``: ``maybe_resize`` then
``pre_process_coco_mobilenet`` / ``pre_process_coco_resnet34`` / ``pre_process_openimages_retinanet``): decode to
RGB (greyscale replicated to three channels), convert to float32, resize with OpenCV's ``INTER_LINEAR`` rule
(:func:`linear_resize`, re-implemented in numpy: half-pixel centres, edge clamping, float32 weights), then per
model: uint8 by truncation (SSD-MobileNet, NHWC), ``(x / 255 - mean) / std`` (SSD-ResNet34, NCHW) or ``x / 255``
(RetinaNet, NCHW). The float pixels agree with an independent float64 evaluation of OpenCV's bilinear formula
(its float32 source positions included) to within 1e-4 on the 0..255 scale (measured: 3e-5; float32 rounding of
the sums), so a truncated uint8 pixel can differ by one only where the value is within 1e-4 of an integer. This
was not checked against cv2 itself (not installed here); OpenCV is not a dependency. The finished tensors are
cached once per image under ``<cache>/preprocessed/<profile>-<key>/`` like ImageNet's; missing or unreadable
images are one error that lists them all, never a smaller dataset.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pytest_mlperf.datasets import imagecache
from pytest_mlperf.datasets.base import ArrayDataset, PreloadedSamples
from pytest_mlperf.datasets.imagenet import decode_rgb
from pytest_mlperf.errors import ProvisioningError
from pytest_mlperf.tasks.detection import RETINANET, SSD_MOBILENET, SSD_RESNET34, CocoGroundTruth, Detection

__all__ = [
    "PROFILES",
    "CocoDataset",
    "CocoError",
    "DetectionPreprocessing",
    "linear_resize",
    "preprocess_image",
    "synthetic_detection",
]

#: Bump whenever the code changes the tensors it produces: it is part of the cache key.
PREPROCESS_VERSION = 1


class CocoError(ProvisioningError):
    """The detection data is not usable as given: a malformed annotation file, missing or unreadable images."""


@dataclass(frozen=True)
class DetectionPreprocessing:
    """One detector's input: size, layout, dtype and normalisation; every field is part of the cache key."""

    name: str
    size: int
    layout: str  # NHWC or NCHW
    dtype: str  # uint8 (truncated, as np.asarray(float, uint8)) or float32
    divisor: float = 1.0  # pixels are divided by this (255) before the mean and std, as the reference does
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def key(self) -> str:
        fields = {**asdict(self), "version": PREPROCESS_VERSION}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    def shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, 3) if self.layout == "NHWC" else (3, self.size, self.size)


PROFILES: dict[str, tuple[DetectionPreprocessing, Detection]] = {
    "ssd-mobilenet": (DetectionPreprocessing("ssd-mobilenet", 300, "NHWC", "uint8"), SSD_MOBILENET),
    "ssd-resnet34": (
        DetectionPreprocessing("ssd-resnet34", 1200, "NCHW", "float32", 255.0, (0.485, 0.456, 0.406),
                               (0.229, 0.224, 0.225)),
        SSD_RESNET34,
    ),
    "retinanet": (DetectionPreprocessing("retinanet", 800, "NCHW", "float32", 255.0), RETINANET),
}


# -- resizing --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _linear_taps(src: int, dst: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    """OpenCV's INTER_LINEAR taps: first and second source index and the float32 weight of the second."""
    scale = src / dst
    first = np.empty(dst, np.intp)
    weight = np.empty(dst, np.float32)
    for d in range(dst):
        f = float(np.float32((d + 0.5) * scale - 0.5))  # OpenCV computes the position as float
        s = math.floor(f)
        frac = f - s
        if s < 0:
            s, frac = 0, 0.0
        if s >= src - 1:
            s, frac = src - 1, 0.0
        first[d], weight[d] = s, frac
    return first, np.minimum(first + 1, src - 1), weight


def linear_resize(image: npt.NDArray[np.float32], width: int, height: int) -> npt.NDArray[np.float32]:
    """``cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)`` for an HxWxC float32 image."""
    src_h, src_w = image.shape[:2]
    if (src_w, src_h) == (width, height):
        return image.copy()
    x0, x1, wx = _linear_taps(src_w, width)
    y0, y1, wy = _linear_taps(src_h, height)
    one = np.float32(1.0)
    ax, bx = (one - wx)[None, :, None], wx[None, :, None]
    rows = image[:, x0] * ax + image[:, x1] * bx
    ay, by = (one - wy)[:, None, None], wy[:, None, None]
    out: npt.NDArray[np.float32] = rows[y0] * ay + rows[y1] * by
    return out


def preprocess_image(path: Path, params: DetectionPreprocessing) -> np.ndarray:
    """One image file -> the tensor the reference feeds this detector (no batch axis)."""
    rgb = decode_rgb(path).astype(np.float32)  # greyscale and CMYK become three channels
    resized = linear_resize(rgb, params.size, params.size)
    if params.dtype == "uint8":
        pixels: np.ndarray = resized.astype(np.uint8)  # truncation, as np.asarray(img, dtype=np.uint8)
    else:
        pixels = resized / np.float32(params.divisor) if params.divisor != 1.0 else resized
        if params.mean != (0.0, 0.0, 0.0) or params.std != (1.0, 1.0, 1.0):
            pixels = (pixels - np.asarray(params.mean, np.float32)) / np.asarray(params.std, np.float32)
        pixels = pixels.astype(np.float32, copy=False)
    if params.layout == "NCHW":
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels)


# -- the annotations -------------------------------------------------------------------------------------------


def read_annotations(path: Path) -> CocoGroundTruth:
    """A COCO-format annotation file -> ground truth; CocoError naming the file and what is wrong."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CocoError(f"annotation file {path} cannot be read as JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise CocoError(f"{path} is not a COCO-format annotation file: it needs an 'images' list")
    document.setdefault("annotations", [])
    document.setdefault("categories", [])
    for n, image in enumerate(document["images"]):
        missing = [k for k in ("id", "file_name", "height", "width") if k not in image]
        if missing:
            raise CocoError(f"{path}: images[{n}] lacks {', '.join(missing)}; each image needs id, file_name, "
                            "height and width")
    if not document["images"]:
        raise CocoError(f"{path} lists no images")
    return CocoGroundTruth(document, str(path))


# -- the QSL ---------------------------------------------------------------------------------------------------


class CocoDataset(PreloadedSamples):
    """A LoadGen QSL over the images of a COCO-format annotation file, preprocessed once into the cache."""

    synthetic_inputs = False

    def __init__(
        self,
        images: Path | str,
        annotations: Path | str,
        cache_dir: Path,
        *,
        profile: str | DetectionPreprocessing = "ssd-mobilenet",
        task: Detection | None = None,
        name: str = "coco-2017-val",
        full_annotations: str | None = None,
        performance_count: int = 64,
        workers: int | None = None,
    ) -> None:
        if isinstance(profile, str):
            self.params, default_task = PROFILES[profile]
        else:
            self.params, default_task = profile, SSD_MOBILENET
        self.task = task or default_task
        self.images = Path(images).expanduser()
        self.annotation_file = Path(annotations).expanduser()
        self.ground_truth = read_annotations(self.annotation_file)
        # Another file than the full set's (*full_annotations*) is a declared subset: the results name it.
        subset = full_annotations is not None and self.annotation_file.name != full_annotations
        self.name = f"{name}[{self.annotation_file.stem}]" if subset else name
        self.files = tuple(str(i["file_name"]) for i in self.ground_truth.annotations["images"])
        self.total_count = len(self.files)
        self.performance_count = min(performance_count, self.total_count)
        self.cache_root = Path(cache_dir) / "preprocessed" / f"{self.params.name}-{self.params.key()}"
        from pytest_mlperf.provenance import usable_cpus

        self.workers = workers or len(usable_cpus())
        self._tensors: list[Path] | None = None
        self.preprocessed = 0
        self._init_block(self.params.shape(), np.dtype(self.params.dtype))

    @cached_property
    def digest(self) -> str:
        """sha256 of the preprocessing, the annotation file and each image file's size."""
        prefix = f"{self.params.key()}\0{hashlib.sha256(self.annotation_file.read_bytes()).hexdigest()}"
        return imagecache.files_digest(prefix, self.images, ((rel, "") for rel in self.files))

    def prepare(self) -> None:
        """Make sure every image has a cached tensor; one CocoError lists every missing or unreadable image."""
        if self._tensors is not None:
            return
        tensors, missing = imagecache.tensor_paths(self.images, self.files, self.cache_root)
        todo = [i for i, t in enumerate(tensors) if t != Path() and not t.is_file()]
        unreadable: list[str] = []
        if todo:
            unreadable, done = imagecache.fill(
                todo, tensors, [self.images / rel for rel in self.files],
                lambda path: preprocess_image(path, self.params), cache_root=self.cache_root,
                workers=self.workers, what=f"{self.name} preprocessing",
            )
            self.preprocessed += done
        if missing or unreadable:
            raise CocoError(imagecache.unusable(
                f"{self.name} ({self.annotation_file}): {len(missing) + len(unreadable)} of {self.total_count} "
                "listed images cannot be used, and the dataset is never shrunk silently. Restore them, or remove "
                "them from the annotation file's 'images' to benchmark a declared subset.",
                missing, unreadable,
            ))
        self._tensors = tensors

    def load(self, indices: Sequence[int]) -> None:
        self.prepare()
        assert self._tensors is not None
        idx = np.unique(np.asarray(indices, dtype=np.int64))  # LoadGen may repeat indices; keep each image once
        block = np.empty((len(idx), *self.params.shape()), np.dtype(self.params.dtype))
        for row, i in enumerate(idx):
            block[row] = np.load(self._tensors[int(i)], allow_pickle=False)
        self.store(idx, block)


def synthetic_detection(profile: str, count: int = 8, seed: int = 0) -> ArrayDataset:
    """Random inputs of a detector's shape and dtype, for performance runs when no dataset can be had."""
    params, task = PROFILES[profile]
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (count, *params.shape()), dtype=np.uint8)
    inputs: np.ndarray = pixels
    if params.dtype != "uint8":
        inputs = pixels.astype(np.float32) / np.float32(params.divisor)
    return ArrayDataset(inputs, None, name=f"synthetic-{profile}", synthetic_inputs=True, task=task)


def dataset_layout(root: Path, layout: dict[str, Any]) -> tuple[Path, Path]:
    """The images directory and the annotation file of a manifest entry's directory."""
    return root / str(layout.get("images", "val2017")), root / str(
        layout.get("annotations", "annotations/instances_val2017.json")
    )
