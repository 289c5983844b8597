"""ImageNet validation images for ResNet50: the ``val_map.txt`` layout, reference preprocessing, a tensor cache.

Where the images come from (:func:`find_imagenet`): the manifest entry ``imagenet-val`` (a directory the user
supplies, holding ``val_map.txt`` and the images it lists), else the public 500-image subset ``imagenet-val-500``
with its labels from the first 500 lines of the Caffe ``val.txt`` (``imagenet-caffe-labels``).

Preprocessing (:func:`preprocess_resnet50`) follows the MLPerf reference (``pre_process_vgg``): decode to RGB,
resize so that the short side is 256 with OpenCV's ``INTER_AREA`` rule, centre crop 224, subtract the per-channel
mean [123.68, 116.78, 103.94], NCHW float32. The choices this module makes where the reference leaves a library
default:

* Decoding is Pillow's (libjpeg-turbo, like OpenCV's wheels), with the EXIF orientation applied as
  ``cv2.imread`` does; grayscale and CMYK files are converted with ``Image.convert("RGB")``.
* The resize is OpenCV's ``INTER_AREA`` re-implemented in numpy (:func:`area_resize`), not Pillow's ``BOX``
  filter (which gives edge pixels all-or-nothing weights where OpenCV weighs them by the area they cover). It
  follows OpenCV's arithmetic, float32 area weights when shrinking and its fixed-point "area" interpolation when
  enlarging, and produces the same uint8 pixels as ``cv2.resize(..., interpolation=cv2.INTER_AREA)`` (checked
  against opencv-python 5.0 on hundreds of sizes, and the whole pipeline against the reference code on real
  photos), so OpenCV is not a dependency.

Because the resized crop is uint8, the cache stores it as uint8 (3x224x224, a quarter of the float32 size) and the
mean is subtracted when samples are loaded: the tensors the model sees are exactly the reference's. The cache sits
under ``<cache>/preprocessed/imagenet-<key>/``: the key hashes the preprocessing parameters and
:data:`PREPROCESS_VERSION`, and each tensor's file name hashes its image's identity (absolute path, size, mtime), so
a changed image or a changed parameter is never served from an old tensor. Writes are atomic (temporary file, then
rename), and a lock makes parallel workers preprocess each image once.

Missing or unreadable images are never skipped: :meth:`ImageNetDataset.prepare` raises one
:class:`ImageNetError` that lists them all.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from pytest_mlperf.datasets import imagecache
from pytest_mlperf.datasets.base import ArrayDataset, Classification, PreloadedSamples
from pytest_mlperf.errors import ProvisioningError

__all__ = [
    "FULL_COUNT",
    "IMAGENET_FULL",
    "IMAGENET_LABELS",
    "IMAGENET_SUBSET",
    "PREPROCESS_VERSION",
    "RESNET50_PREPROCESSING",
    "ImageList",
    "ImageNetClassification",
    "ImageNetDataset",
    "ImageNetError",
    "Preprocessing",
    "area_resize",
    "find_imagenet",
    "imagenet_from_dir",
    "imagenet_from_images",
    "preprocess_resnet50",
    "read_val_map",
    "synthetic_imagenet",
]

#: Manifest entries: the user's full validation set, the public subset, and the labels of the subset.
IMAGENET_FULL = "imagenet-val"
IMAGENET_SUBSET = "imagenet-val-500"
IMAGENET_LABELS = "imagenet-caffe-labels"
#: Images in the full ImageNet 2012 validation set; accuracy targets for the full set apply only at this count.
FULL_COUNT = 50_000
NUM_LABELS = 1000
#: Bump whenever the code changes the pixels it produces: it is part of the cache key.
PREPROCESS_VERSION = 1


class ImageNetError(ProvisioningError):
    """The ImageNet data is not usable as given: a malformed label file, missing or unreadable images."""


@dataclass(frozen=True)
class Preprocessing:
    """The parameters of the reference ResNet50 preprocessing; every field is part of the cache key."""

    resize_short_side: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (123.68, 116.78, 103.94)
    interpolation: str = "opencv-inter-area"
    color: str = "RGB"
    exif_orientation: bool = True

    def key(self) -> str:
        """Hex digest of what determines the cached uint8 pixels (the mean is applied at load, so it is not in)."""
        fields = asdict(self)
        fields.pop("mean")
        fields["version"] = PREPROCESS_VERSION
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


RESNET50_PREPROCESSING = Preprocessing()


# -- resizing ------------------------------------------------------------------------------------------------
# OpenCV's INTER_AREA for uint8 images (imgproc/src/resize.cpp), step by step, so that the pixels match cv2's:
# * same size: a copy;
# * shrinking by whole factors on both axes: block sums, rounded half up for 2x2 (its SIMD path) and by
#   float32 multiplication and round-half-even otherwise;
# * shrinking on both axes otherwise: float32 "area" weights (fractional at the edges), rows first, then columns;
# * enlarging on either axis: two-tap "area" interpolation in 11-bit fixed point, with the SIMD vertical pass's
#   intermediate shifts (>> 4, high half of the 16-bit product, then (x + 2) >> 2).


@functools.lru_cache(maxsize=256)
def _area_taps(src: int, dst: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """``computeResizeAreaTab``: source indices and float32 weights per output pixel, (dst, K), zero-padded."""
    scale = 1.0 / (dst / src)  # as OpenCV: scale = 1 / inv_scale
    rows: list[list[tuple[int, float]]] = []
    for dx in range(dst):
        fsx1 = dx * scale
        fsx2 = fsx1 + scale
        cell = min(scale, src - fsx1)
        sx1, sx2 = math.ceil(fsx1), math.floor(fsx2)
        sx2 = min(sx2, src - 1)
        sx1 = min(sx1, sx2)
        taps: list[tuple[int, float]] = []
        if sx1 - fsx1 > 1e-3:
            taps.append((sx1 - 1, (sx1 - fsx1) / cell))
        taps.extend((sx, 1.0 / cell) for sx in range(sx1, sx2))
        if fsx2 - sx2 > 1e-3:
            taps.append((sx2, min(fsx2 - sx2, 1.0, cell) / cell))
        rows.append(taps)
    return _pack(rows)


@functools.lru_cache(maxsize=256)
def _linear_area_taps(src: int, dst: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """INTER_AREA when enlarging: two neighbours per output pixel with "area" weights, as 11-bit fixed point."""
    inv_scale = dst / src
    scale = 1.0 / inv_scale
    index = np.zeros((dst, 2), np.int64)
    weight = np.zeros((dst, 2), np.int64)
    one = np.float32(1.0)
    for dx in range(dst):
        sx = math.floor(dx * scale)
        fx = np.float32((dx + 1) - (sx + 1) * inv_scale)
        fx = np.float32(0.0) if fx <= 0 else np.float32(fx - np.floor(fx))
        if sx < 0:
            sx, fx = 0, np.float32(0.0)
        if sx >= src - 1:
            sx, fx = src - 1, np.float32(0.0)
        index[dx] = (sx, min(sx + 1, src - 1))
        weight[dx] = (int(np.rint((one - fx) * 2048)), int(np.rint(fx * 2048)))
    return index, weight


def _pack(rows: list[list[tuple[int, float]]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    width = max(len(r) for r in rows)
    index = np.zeros((len(rows), width), np.int64)
    weight = np.zeros((len(rows), width), np.float32)
    for i, taps in enumerate(rows):
        for k, (src_index, w) in enumerate(taps):
            index[i, k], weight[i, k] = src_index, w
    return index, weight


def area_resize(image: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    """``cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)`` for an HxWxC uint8 image, in numpy.

    Bit-exact with OpenCV 4/5 on x86 in the cases ResNet50 preprocessing meets (checked against cv2 when it is
    installed); OpenCV is not needed.
    """
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"area_resize: expected an HxWxC uint8 image, got {image.shape} {image.dtype}")
    src_h, src_w, channels = image.shape
    out: npt.NDArray[np.uint8]
    if width < 1 or height < 1:
        raise ValueError(f"area_resize: target size {width}x{height} must be at least 1x1")
    if (src_w, src_h) == (width, height):
        return image.copy()
    if src_w >= width and src_h >= height:
        if src_w % width == 0 and src_h % height == 0:
            fy, fx = src_h // height, src_w // width
            sums = image.astype(np.int64).reshape(height, fy, width, fx, channels).sum(axis=(1, 3))
            if (fy, fx) == (2, 2):
                out = ((sums + 2) >> 2).astype(np.uint8)
                return out
            scaled = sums.astype(np.float32) * np.float32(1.0 / (fy * fx))
            out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
            return out
        iy, wy = _area_taps(src_h, height)
        ix, wx = _area_taps(src_w, width)
        pixels = image.astype(np.float32)
        rows = np.zeros((src_h, width, channels), np.float32)
        for k in range(ix.shape[1]):
            rows += pixels[:, ix[:, k]] * wx[None, :, k, None]
        acc = np.zeros((height, width, channels), np.float32)
        for k in range(iy.shape[1]):
            acc += wy[:, k, None, None] * rows[iy[:, k]]
        out = np.clip(np.rint(acc), 0, 255).astype(np.uint8)
        return out
    iy2, by = _linear_area_taps(src_h, height)
    ix2, ax = _linear_area_taps(src_w, width)
    wide = image.astype(np.int64)
    rows_i = wide[:, ix2[:, 0]] * ax[None, :, 0, None] + wide[:, ix2[:, 1]] * ax[None, :, 1, None]
    top, bottom = rows_i[iy2[:, 0]] >> 4, rows_i[iy2[:, 1]] >> 4
    mixed = ((top * by[:, 0, None, None]) >> 16) + ((bottom * by[:, 1, None, None]) >> 16)
    out = np.clip((mixed + 2) >> 2, 0, 255).astype(np.uint8)
    return out


# -- one image -------------------------------------------------------------------------------------------------


def decode_rgb(path: Path, params: Preprocessing = RESNET50_PREPROCESSING) -> npt.NDArray[np.uint8]:
    """Decode an image file to HxWx3 uint8 RGB (EXIF orientation applied, like ``cv2.imread``)."""
    from PIL import Image, ImageOps  # deferred: only suites that preprocess images need Pillow

    with Image.open(path) as img:
        img.load()  # a truncated or corrupt file raises here, not later
        oriented = ImageOps.exif_transpose(img) if params.exif_orientation else img
        return np.asarray(oriented.convert("RGB"), dtype=np.uint8)


def resize_and_crop(
    rgb: npt.NDArray[np.uint8], params: Preprocessing = RESNET50_PREPROCESSING
) -> npt.NDArray[np.uint8]:
    """The reference's ``resize_with_aspectratio`` then ``center_crop``, integer arithmetic included: CHW uint8."""
    height, width = rgb.shape[:2]
    short = params.resize_short_side
    # The reference truncates (int()) the long side and the crop offsets; so does this.
    if height > width:
        new_w, new_h = short, int(short * height / width)
    else:
        new_w, new_h = int(short * width / height), short
    resized = area_resize(rgb, new_w, new_h)
    crop = params.crop
    left, top = int((new_w - crop) / 2), int((new_h - crop) / 2)
    cropped = resized[top : top + crop, left : left + crop]
    if cropped.shape[:2] != (crop, crop):
        raise ValueError(f"image of {width}x{height} resized to {new_w}x{new_h} is smaller than the {crop} crop")
    return np.ascontiguousarray(cropped.transpose(2, 0, 1))


def preprocess_resnet50(path: Path, params: Preprocessing = RESNET50_PREPROCESSING) -> npt.NDArray[np.float32]:
    """One image file -> the (3, 224, 224) float32 tensor the MLPerf ResNet50 reference feeds the model."""
    tensor: npt.NDArray[np.float32] = normalize(resize_and_crop(decode_rgb(path, params), params)[None], params)[0]
    return tensor


def normalize(pixels: npt.NDArray[np.uint8], params: Preprocessing = RESNET50_PREPROCESSING) -> npt.NDArray[np.float32]:
    """NCHW uint8 -> float32 minus the per-channel mean (one float32 subtraction, as in the reference)."""
    mean = np.asarray(params.mean, dtype=np.float32).reshape(1, 3, 1, 1)
    out: npt.NDArray[np.float32] = np.subtract(pixels, mean, dtype=np.float32)
    return out


# -- which images, with which labels ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageList:
    """Image files (relative to ``root``) and their labels 0..999, in QSL order."""

    name: str
    root: Path
    files: tuple[str, ...]
    labels: tuple[int, ...]
    source: str  # where the list came from, for messages

    def __len__(self) -> int:
        return len(self.files)


def read_val_map(path: Path, limit: int | None = None) -> list[tuple[str, int]]:
    """Lines ``ILSVRC2012_val_00000001.JPEG 65`` -> (file, label); ImageNetError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImageNetError(f"ImageNet label file {path} cannot be read: {exc}") from None
    entries: list[tuple[str, int]] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split()
        where = f"{path}:{lineno}"
        if len(parts) != 2:
            raise ImageNetError(f"{where}: expected '<image file> <label>', e.g. 'ILSVRC2012_val_00000001.JPEG 65', "
                                f"got {raw.strip()!r}")
        name, label_text = parts
        try:
            label = int(label_text)
        except ValueError:
            raise ImageNetError(f"{where}: label {label_text!r} is not an integer 0..{NUM_LABELS - 1}") from None
        if not 0 <= label < NUM_LABELS:
            raise ImageNetError(f"{where}: label {label} is outside 0..{NUM_LABELS - 1}")
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts or "\\" in name:
            raise ImageNetError(f"{where}: image {name!r} must be a path relative to the directory, without '..'")
        if name in seen:
            raise ImageNetError(f"{where}: image {name!r} is listed twice")
        seen.add(name)
        entries.append((name, label))
        if limit is not None and len(entries) == limit:
            break
    if not entries:
        raise ImageNetError(f"ImageNet label file {path} lists no images")
    return entries


def imagenet_from_dir(root: Path | str, name: str = IMAGENET_FULL, map_file: str = "val_map.txt") -> ImageList:
    """A directory in the ``val_map.txt`` layout (the file lists images relative to the directory)."""
    root = Path(root).expanduser()
    path = root / map_file
    if not path.is_file():
        raise ImageNetError(
            f"{root} is not an ImageNet directory in the val_map.txt layout: {map_file} is missing. Expected "
            f"{map_file} with one line per image, e.g. 'ILSVRC2012_val_00000001.JPEG 65', and the images it lists."
        )
    entries = read_val_map(path)
    return ImageList(name, root, tuple(f for f, _ in entries), tuple(lbl for _, lbl in entries), str(path))


def imagenet_from_images(
    images: Path | str, labels_file: Path | str, count: int, name: str = IMAGENET_SUBSET
) -> ImageList:
    """Images without a map file (the public subset) labelled by the first ``count`` lines of a ``val.txt``."""
    images, labels_file = Path(images).expanduser(), Path(labels_file).expanduser()
    entries = read_val_map(labels_file, limit=count)
    if len(entries) < count:
        raise ImageNetError(f"{labels_file} has labels for {len(entries)} images; {name} needs {count}")
    root = images
    first = entries[0][0]
    if not (root / first).exists():
        # Archives often wrap the images in one folder; look one level down before reporting them missing.
        below = [d for d in sorted(images.iterdir()) if d.is_dir() and (d / first).exists()] if images.is_dir() else []
        if len(below) == 1:
            root = below[0]
    return ImageList(name, root, tuple(f for f, _ in entries), tuple(lbl for _, lbl in entries),
                     f"{images} with the first {count} labels of {labels_file}")


class AssetSource(Protocol):
    """What :func:`find_imagenet` needs from the ``mlperf_assets`` fixture."""

    def optional(self, name: str) -> Any: ...

    def why_unavailable(self, name: str) -> str | None: ...

    def asset(self, name: str) -> Any: ...


def find_imagenet(assets: AssetSource) -> ImageList:
    """The user's ``imagenet-val`` directory, else the 500-image subset with its labels.

    Raises ``AssetUnavailable`` (a skip, or a failure in strict mode) saying how to provide either, when neither
    can be had; ImageNetError when the data is there but malformed.
    """
    from pytest_mlperf.provisioning.provision import AssetUnavailable

    full = assets.optional(IMAGENET_FULL)
    if full is not None:
        layout: Mapping[str, Any] = assets.asset(IMAGENET_FULL).layout
        return imagenet_from_dir(full.path, IMAGENET_FULL, str(layout.get("map_file", "val_map.txt")))
    reasons = [f"[{IMAGENET_FULL}] {assets.why_unavailable(IMAGENET_FULL)}"]
    subset = assets.optional(IMAGENET_SUBSET)
    if subset is not None:
        layout = assets.asset(IMAGENET_SUBSET).layout
        labels_name = str(layout.get("labels_from", IMAGENET_LABELS))
        labels = assets.optional(labels_name)
        if labels is not None:
            count = int(layout.get("count", 500))
            labels_file = labels.path / str(layout.get("labels_file", "val.txt"))
            return imagenet_from_images(subset.path, labels_file, count, IMAGENET_SUBSET)
        reasons.append(f"[{labels_name}] {assets.why_unavailable(labels_name)}")
    else:
        reasons.append(f"[{IMAGENET_SUBSET}] {assets.why_unavailable(IMAGENET_SUBSET)}")
    raise AssetUnavailable(
        IMAGENET_FULL,
        "No ImageNet validation data is available: neither your own copy (imagenet-val) nor the public "
        "500-image subset (imagenet-val-500 with imagenet-caffe-labels).",
        "\n".join(reasons),
    )


# -- the QSL -----------------------------------------------------------------------------------------------------


#: The ImageNet flavour of classification is plain classification: integer outputs (the MLPerf ONNX's ``ArgMax:0``)
#: are handled by :class:`Classification` itself. Kept as a name for suites written against it.
ImageNetClassification = Classification


class ImageNetDataset(PreloadedSamples):
    """A LoadGen QSL over ImageNet images: preprocessed once into the cache, loaded as float32 NCHW blocks."""

    synthetic_inputs = False

    def __init__(
        self,
        images: ImageList,
        cache_dir: Path,
        *,
        params: Preprocessing = RESNET50_PREPROCESSING,
        label_offset: int = 1,
        performance_count: int = 1024,
        workers: int | None = None,
        preprocess: Callable[[Path, Preprocessing], npt.NDArray[np.uint8]] | None = None,
    ) -> None:
        self.images = images
        self.name = images.name
        self.total_count = len(images)
        self.performance_count = min(performance_count, self.total_count)
        self.params = params
        self.labels = np.asarray(images.labels, dtype=np.int64)
        # The MLPerf ResNet50 convention: one float32 label per sample, which accuracy-imagenet.py decodes.
        self.task = ImageNetClassification(topk=1, label_offset=label_offset)
        self.cache_root = Path(cache_dir) / "preprocessed" / f"imagenet-{params.key()}"
        from pytest_mlperf.provenance import usable_cpus

        self.workers = workers or len(usable_cpus())
        self._preprocess = preprocess or (lambda path, p: resize_and_crop(decode_rgb(path, p), p))
        self._tensors: list[Path] | None = None
        self.preprocessed = 0  # images preprocessed by this object (0 when everything came from the cache)
        self._init_block((3, params.crop, params.crop), np.float32)

    @cached_property
    def digest(self) -> str:
        """sha256 of the preprocessing, the sample list, the labels and each image file's size."""
        rows = zip(self.images.files, (str(label) for label in self.images.labels), strict=True)
        return imagecache.files_digest(self.params.key(), self.images.root, rows)

    # -- preparation ------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Make sure every image has a cached tensor; one ImageNetError lists every missing or unreadable image."""
        if self._tensors is not None:
            return
        tensors, missing = imagecache.tensor_paths(self.images.root, self.images.files, self.cache_root)
        todo = [i for i, t in enumerate(tensors) if t != Path() and not t.is_file()]
        unreadable: list[str] = []
        if todo:
            params_file = self.cache_root / "params.json"

            def describe() -> None:
                if not params_file.exists():
                    params_file.write_text(
                        json.dumps({**asdict(self.params), "version": PREPROCESS_VERSION}, indent=1)
                    )

            unreadable, done = imagecache.fill(
                todo, tensors, [self.images.root / rel for rel in self.images.files],
                lambda path: self._preprocess(path, self.params), cache_root=self.cache_root,
                workers=self.workers, what=f"ImageNet {self.name!r} preprocessing", before=describe,
            )
            self.preprocessed += done
        if missing or unreadable:
            raise ImageNetError(imagecache.unusable(
                f"ImageNet {self.name!r} ({self.images.source}): {len(missing) + len(unreadable)} of "
                f"{self.total_count} listed images cannot be used, and the dataset is never shrunk silently. "
                "Restore them, or remove their lines from the label file to benchmark a declared subset.",
                missing, unreadable,
            ))
        self._tensors = tensors

    # -- the QSL ----------------------------------------------------------------------------------------------

    def load(self, indices: Sequence[int]) -> None:
        self.prepare()
        assert self._tensors is not None
        # LoadGen repeats indices when its performance sample count exceeds the dataset (1024 for resnet50 in
        # mlperf.conf, against 500 images in the public subset): keep each image once.
        idx = np.unique(np.asarray(indices, dtype=np.int64))
        crop = self.params.crop
        pixels = np.empty((len(idx), 3, crop, crop), np.uint8)
        for row, i in enumerate(idx):
            pixels[row] = np.load(self._tensors[int(i)], allow_pickle=False)
        self.store(idx, normalize(pixels, self.params))


def synthetic_imagenet(count: int = 64, params: Preprocessing = RESNET50_PREPROCESSING, seed: int = 0) -> ArrayDataset:
    """Random images of the model's input shape, for performance runs when no ImageNet data can be had.

    Marked ``synthetic_inputs`` (shown in the terminal table and the results JSON); they have no labels, so
    accuracy mode refuses them.
    """
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (count, 3, params.crop, params.crop), dtype=np.uint8)
    return ArrayDataset(
        normalize(pixels, params),
        None,
        name="synthetic-imagenet",
        synthetic_inputs=True,
        task=ImageNetClassification(topk=1, label_offset=1),
    )
