"""ImageNet for ResNet50: val_map.txt parsing, OpenCV-exact area resizing, the tensor cache, scoring, the stand-in."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from pytest_mlperf.config import ListValue, OptionSpec, UsageProblem, build_run_config
from pytest_mlperf.datasets.base import ArrayDataset
from pytest_mlperf.datasets.imagenet import (
    RESNET50_PREPROCESSING,
    ImageList,
    ImageNetClassification,
    ImageNetDataset,
    ImageNetError,
    Preprocessing,
    area_resize,
    decode_rgb,
    find_imagenet,
    imagenet_from_dir,
    imagenet_from_images,
    preprocess_resnet50,
    read_val_map,
    resize_and_crop,
    synthetic_imagenet,
)
from pytest_mlperf.models.standin import NUM_CLASSES, build_resnet50_standin
from pytest_mlperf.provisioning.provision import AssetUnavailable, Provisioned

Image = pytest.importorskip("PIL.Image", reason="ImageNet preprocessing needs Pillow: pip install pillow")


def pattern(h: int, w: int) -> npt.NDArray[np.uint8]:
    """A deterministic HxWx3 image with edges and gradients (no RNG, so goldens never drift)."""
    y, x, c = np.mgrid[0:h, 0:w, 0:3]
    return ((x * 7 + y * 13 + c * 50 + (x * y) % 31) % 256).astype(np.uint8)


# -- area resize ----------------------------------------------------------------------------------------------

# sha256 prefixes of cv2.resize(pattern(h, w), (width, height), interpolation=cv2.INTER_AREA), opencv-python 5.0.0.
CV2_GOLDEN = [
    ((375, 500), (341, 256), "f0b71d53263c48962d3d"),  # shrink, fractional (the commonest ImageNet case)
    ((512, 512), (256, 256), "b33dd19fae3284c8e55e"),  # shrink by exactly 2: OpenCV rounds ties up
    ((768, 1023), (341, 256), "44ad1069ac8c700d4e81"),  # shrink, ~3x
    ((180, 240), (341, 256), "ddaec0b1fd61dfcfef6e"),  # enlarge: fixed-point two-tap "area" interpolation
    ((300, 200), (260, 250), "b2d9b7e265d82e5a51a7"),  # enlarge one axis, shrink the other
    ((333, 500), (384, 256), "c19ecf4b381311bd3283"),
]


@pytest.mark.parametrize(("src", "dst", "digest"), CV2_GOLDEN)
def test_area_resize_is_bit_exact_with_opencv(src: tuple[int, int], dst: tuple[int, int], digest: str) -> None:
    out = area_resize(pattern(*src), *dst)
    assert out.shape == (dst[1], dst[0], 3)
    assert hashlib.sha256(out.tobytes()).hexdigest()[:20] == digest


def test_area_resize_matches_installed_opencv_on_random_sizes() -> None:
    cv2 = pytest.importorskip("cv2", reason="compares with OpenCV only where it is installed")
    rng = np.random.default_rng(5)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(30, 700, 2))
        nw, nh = (256, int(256 * h / w)) if h > w else (int(256 * w / h), 256)
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        assert np.array_equal(area_resize(image, nw, nh), expected), (h, w, nh, nw)


def test_area_resize_averages_whole_blocks_and_weighs_partial_pixels() -> None:
    image = np.array([[0, 10, 20, 30], [40, 50, 60, 70]], np.uint8)[:, :, None]
    assert area_resize(image, 2, 1)[:, :, 0].tolist() == [[25, 45]]  # 2x2 blocks: (0+10+40+50)/4 = 25
    row = np.array([[0, 90, 180]], np.uint8)[:, :, None]
    # 3 -> 2: each output covers 1.5 source pixels: (0 + 0.5*90)/1.5 = 30, (0.5*90 + 180)/1.5 = 150.
    assert area_resize(row, 2, 1)[:, :, 0].tolist() == [[30, 150]]
    same = pattern(5, 7)
    assert np.array_equal(area_resize(same, 7, 5), same)
    with pytest.raises(ValueError, match="expected an HxWxC uint8 image"):
        area_resize(np.zeros((4, 4), np.uint8), 2, 2)


# -- one image ---------------------------------------------------------------------------------------------------


def save(path: Path, image: npt.NDArray[np.uint8], **kwargs: Any) -> Path:
    Image.fromarray(image).save(path, **kwargs)
    return path


@pytest.mark.parametrize(
    ("h", "w", "resized"), [(375, 500, (256, 341)), (500, 333, (384, 256)), (200, 150, (341, 256))]
)
def test_resize_and_crop_follows_the_reference_sizes_and_offsets(h: int, w: int, resized: tuple[int, int]) -> None:
    image = pattern(h, w)
    out = resize_and_crop(image)
    assert out.shape == (3, 224, 224) and out.dtype == np.uint8
    full = area_resize(image, resized[1], resized[0])
    top, left = int((resized[0] - 224) / 2), int((resized[1] - 224) / 2)
    assert np.array_equal(out, full[top : top + 224, left : left + 224].transpose(2, 0, 1))


def test_preprocess_gives_nchw_float32_minus_the_mean(tmp_path: Path) -> None:
    flat = np.full((300, 400, 3), (200, 100, 50), np.uint8)
    x = preprocess_resnet50(save(tmp_path / "a.png", flat))
    assert x.shape == (3, 224, 224) and x.dtype == np.float32 and x.flags.c_contiguous
    expected = np.float32([200, 100, 50]) - np.float32([123.68, 116.78, 103.94])
    assert np.array_equal(x[:, 100, 100], expected)


def test_grayscale_jpeg_becomes_rgb_and_exif_orientation_is_applied(tmp_path: Path) -> None:
    gray = save(tmp_path / "g.jpg", pattern(64, 80)[:, :, 0], quality=95)
    rgb = decode_rgb(gray)
    assert rgb.shape == (64, 80, 3) and np.array_equal(rgb[..., 0], rgb[..., 2])
    img = Image.fromarray(pattern(40, 60))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed, as cv2.imread does
    img.save(tmp_path / "r.jpg", exif=exif)
    assert decode_rgb(tmp_path / "r.jpg").shape == (60, 40, 3)


def test_reference_pipeline_equals_opencv(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2", reason="compares with OpenCV only where it is installed")
    path = save(tmp_path / "p.jpg", pattern(333, 500), quality=90)
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (int(256 * 500 / 333), 256), interpolation=cv2.INTER_AREA)
    left = int((img.shape[1] - 224) / 2)
    ref = np.asarray(img[16:240, left : left + 224], np.float32) - np.float32([123.68, 116.78, 103.94])
    assert np.array_equal(preprocess_resnet50(path), ref.transpose(2, 0, 1))


def test_cache_key_covers_pixel_parameters_but_not_the_mean() -> None:
    base = RESNET50_PREPROCESSING
    assert Preprocessing(crop=200).key() != base.key()
    assert Preprocessing(resize_short_side=300).key() != base.key()
    assert Preprocessing(mean=(0.0, 0.0, 0.0)).key() == base.key()  # applied at load time, not cached


# -- labels ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.JPEG 1 extra\n", r"val_map.txt:1: expected '<image file> <label>'"),
        ("a.JPEG x\n", r"val_map.txt:1: label 'x' is not an integer 0..999"),
        ("\na.JPEG 1000\n", r"val_map.txt:2: label 1000 is outside 0..999"),
        ("../a.JPEG 1\n", r"val_map.txt:1: image '../a.JPEG' must be a path relative to the directory"),
        ("a.JPEG 1\na.JPEG 2\n", r"val_map.txt:2: image 'a.JPEG' is listed twice"),
        ("\n\n", r"lists no images"),
    ],
)
def test_val_map_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "val_map.txt").write_text(text)
    with pytest.raises(ImageNetError, match=message):
        read_val_map(tmp_path / "val_map.txt")


def test_directory_layout_and_subset_labels(tmp_path: Path) -> None:
    with pytest.raises(ImageNetError, match=r"val_map\.txt is missing\. Expected val_map\.txt with one line per image"):
        imagenet_from_dir(tmp_path)
    (tmp_path / "val_map.txt").write_text("ILSVRC2012_val_00000001.JPEG 65\nsub/b.JPEG 0\n")
    images = imagenet_from_dir(tmp_path)
    assert images.files == ("ILSVRC2012_val_00000001.JPEG", "sub/b.JPEG") and images.labels == (65, 0)
    assert imagenet_from_dir(str(tmp_path)) == images  # a plain string path, as users write it
    # The public subset: images only (here wrapped in one folder), labels from the first N lines of val.txt.
    (tmp_path / "tar" / "ILSVRC2012_img_val_500").mkdir(parents=True)
    (tmp_path / "tar" / "ILSVRC2012_img_val_500" / "x.JPEG").write_bytes(b"")
    (tmp_path / "val.txt").write_text("x.JPEG 3\ny.JPEG 4\nz.JPEG 5\n")
    subset = imagenet_from_images(tmp_path / "tar", tmp_path / "val.txt", 2)
    assert subset.root == tmp_path / "tar" / "ILSVRC2012_img_val_500"
    assert subset.files == ("x.JPEG", "y.JPEG") and subset.labels == (3, 4) and len(subset) == 2
    with pytest.raises(ImageNetError, match="has labels for 3 images; imagenet-val-500 needs 500"):
        imagenet_from_images(tmp_path / "tar", tmp_path / "val.txt", 500)


class FakeAssets:
    def __init__(self, available: dict[str, Path]) -> None:
        self.available = available

    def optional(self, name: str) -> Provisioned | None:
        path = self.available.get(name)
        return Provisioned(name, path, None, None, "override") if path else None

    def why_unavailable(self, name: str) -> str | None:
        return None if name in self.available else f"{name} is not here\nTo provide it: --mlperf-asset {name}=PATH"

    def asset(self, name: str) -> Any:
        layouts = {"imagenet-val-500": {"labels_from": "imagenet-caffe-labels", "labels_file": "val.txt", "count": 1}}
        return SimpleNamespace(layout=layouts.get(name, {}))


def test_find_imagenet_prefers_the_full_set_then_the_subset_then_says_how(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "val_map.txt").write_text("a.JPEG 1\n")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "val.txt").write_text("b.JPEG 2\nc.JPEG 3\n")
    both = FakeAssets({"imagenet-val": tmp_path / "full", "imagenet-val-500": tmp_path, "imagenet-caffe-labels":
                       tmp_path / "labels"})  # fmt: skip
    assert find_imagenet(both).name == "imagenet-val"
    subset = FakeAssets({"imagenet-val-500": tmp_path, "imagenet-caffe-labels": tmp_path / "labels"})
    assert (find_imagenet(subset).name, find_imagenet(subset).files) == ("imagenet-val-500", ("b.JPEG",))
    with pytest.raises(AssetUnavailable) as info:
        find_imagenet(FakeAssets({"imagenet-val-500": tmp_path}))
    text = str(info.value)
    assert text.startswith("No ImageNet validation data is available")
    assert "[imagenet-val] imagenet-val is not here" in text
    assert "[imagenet-caffe-labels] imagenet-caffe-labels is not here" in text
    assert "--mlperf-asset imagenet-val=PATH" in text


# -- the QSL and its cache -------------------------------------------------------------------------------------


def image_dir(tmp_path: Path, sizes: list[tuple[int, int]]) -> ImageList:
    root = tmp_path / "images"
    root.mkdir(exist_ok=True)
    names = []
    for i, (h, w) in enumerate(sizes):
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        save(root / name, np.roll(pattern(h, w), i * 5, axis=1), quality=90)
        names.append(name)
    (root / "val_map.txt").write_text("".join(f"{n} {i * 7}\n" for i, n in enumerate(names)))
    return imagenet_from_dir(root)


def counting() -> tuple[Callable[[Path, Preprocessing], npt.NDArray[np.uint8]], list[Path]]:
    seen: list[Path] = []

    def preprocess(path: Path, params: Preprocessing) -> npt.NDArray[np.uint8]:
        seen.append(path)
        return resize_and_crop(decode_rgb(path, params), params)

    return preprocess, seen


def test_preprocessing_happens_once_and_is_cached_by_image_identity(tmp_path: Path) -> None:
    images = image_dir(tmp_path, [(300, 400), (260, 260), (400, 300)])
    fn, seen = counting()
    first = ImageNetDataset(images, tmp_path / "cache", preprocess=fn)
    first.prepare()
    assert len(seen) == 3 and first.preprocessed == 3
    cached = sorted((tmp_path / "cache" / "preprocessed").rglob("*.npy"))
    assert len(cached) == 3
    assert not [p for p in (tmp_path / "cache").rglob("*.tmp")], "atomic writes leave no temporary files"

    again = ImageNetDataset(images, tmp_path / "cache", preprocess=fn)
    again.load([0, 1, 2])
    assert len(seen) == 3 and again.preprocessed == 0  # a new session: everything from the cache

    # A changed image (new mtime) gets a new tensor; the others are reused.
    changed = images.root / images.files[1]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    third = ImageNetDataset(images, tmp_path / "cache", preprocess=fn)
    third.prepare()
    assert seen[3:] == [changed]

    # Other parameters: another cache directory, so nothing stale is served.
    other = ImageNetDataset(images, tmp_path / "cache", params=Preprocessing(crop=200), preprocess=fn)
    other.load([0])
    assert len(seen) == 7 and other.one(0).shape == (1, 3, 200, 200)


def test_loaded_samples_are_the_reference_tensors(tmp_path: Path) -> None:
    images = image_dir(tmp_path, [(300, 400), (500, 375)])
    ds = ImageNetDataset(images, tmp_path / "cache", performance_count=8)
    assert (ds.name, ds.total_count, ds.performance_count, ds.synthetic_inputs) == ("imagenet-val", 2, 2, False)
    ds.load([1, 0, 1, 1])  # LoadGen repeats indices when its sample count exceeds the dataset's
    assert len(ds._loaded) == 2, "each image is loaded once"
    batch = ds.batch([0, 1])
    assert batch.shape == (2, 3, 224, 224) and batch.dtype == np.float32
    for i in range(2):
        assert np.array_equal(batch[i], preprocess_resnet50(images.root / images.files[i]))
    assert np.array_equal(ds.one(1)[0], batch[1])
    ds.unload([0])
    with pytest.raises(KeyError, match="sample 0 was never loaded"):
        ds.one(0)


def test_missing_and_unreadable_images_are_one_error_listing_them(tmp_path: Path) -> None:
    images = image_dir(tmp_path, [(300, 400), (260, 260), (300, 300), (280, 300)])
    (images.root / images.files[0]).unlink()
    (images.root / images.files[2]).write_bytes(b"\xff\xd8 truncated")
    ds = ImageNetDataset(images, tmp_path / "cache")
    with pytest.raises(ImageNetError) as info:
        ds.prepare()
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"ImageNet 'imagenet-val' ({images.root / 'val_map.txt'}): 2 of 4 listed images")
    assert "never shrunk silently" in lines[0]
    assert lines[1:3] == ["1 missing:", f"  {images.root / images.files[0]} (No such file or directory)"]
    assert lines[3] == "1 unreadable:"
    assert lines[4].startswith(f"  {images.root / images.files[2]} (")
    # The good images were still cached, so fixing the bad ones costs only them.
    assert len(list((tmp_path / "cache" / "preprocessed").rglob("*.npy"))) == 2


def test_scoring_applies_the_label_offset_for_logits_and_argmax_outputs() -> None:
    task = ImageNetClassification(topk=5, label_offset=1)
    labels = np.array([3, 7])
    logits = np.zeros((2, 1001), np.float32)
    logits[0, 4], logits[1, 8] = 5.0, 5.0  # model class = label + 1
    rows = task.postprocess(logits)
    # Responses hold dataset labels (the offset applied) as float32, as MLCommons' accuracy-imagenet.py reads them.
    assert rows.shape == (2, 5) and rows.dtype == np.float32 and rows[:, 0].tolist() == [3.0, 7.0]
    labelled = ArrayDataset(np.zeros((2, 1), np.float32), labels)
    assert task.score({i: rows[i].tobytes() for i in range(2)}, labelled) == {"top1": 1.0, "top5": 1.0, "count": 2.0}
    argmax = task.postprocess(np.array([4, 9], np.int64))  # the MLPerf ONNX's first output, ArgMax:0
    assert argmax.tolist() == [[3.0], [8.0]] and argmax.dtype == np.float32
    # One class per response: top-1 only, no misleading top-5.
    assert task.score({i: argmax[i].tobytes() for i in range(2)}, labelled) == {"top1": 0.5, "count": 2.0}
    assert task.accuracy_line({"top1": 0.5, "count": 2.0}) == "accuracy=50.000%, good=1, total=2"


def test_the_resnet50_dataset_answers_one_float32_label_per_sample(tmp_path: Path) -> None:
    task = synthetic_imagenet(count=2).task
    assert isinstance(task, ImageNetClassification)
    rows = task.postprocess({"ArgMax:0": np.array([[1], [1000]], np.int64), "softmax_tensor:0": np.zeros((2, 1001))})
    assert rows.tolist() == [[0.0], [999.0]] and rows.dtype == np.float32


def test_synthetic_inputs_have_the_model_shape_and_refuse_scoring() -> None:
    ds = synthetic_imagenet(count=4)
    assert ds.synthetic_inputs is True and ds.name == "synthetic-imagenet"
    assert ds.inputs.shape == (4, 3, 224, 224) and ds.inputs.dtype == np.float32
    pixels = ds.inputs + np.float32([123.68, 116.78, 103.94])[:, None, None]  # uint8 images less the mean
    assert np.allclose(pixels, pixels.round(), atol=1e-3) and pixels.min() > -0.01 and pixels.max() < 255.01
    with pytest.raises(ValueError, match="is synthetic"):
        ds.task.score({}, ds)
    unlabelled = ArrayDataset(ds.inputs, None, name="unlabelled")
    with pytest.raises(ValueError, match="no labels"):
        unlabelled.task.score({}, unlabelled)


# -- the stand-in model -----------------------------------------------------------------------------------------


def test_standin_has_the_mlperf_interface_and_never_predicts_background() -> None:
    ort = pytest.importorskip("onnxruntime")
    data = build_resnet50_standin(32)
    assert data == build_resnet50_standin(32)  # deterministic
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_tensor:0"]
    assert [o.name for o in session.get_outputs()] == ["ArgMax:0", "softmax_tensor:0"]
    x = np.random.default_rng(0).normal(0, 60, (3, 3, 224, 224)).astype(np.float32)
    argmax, softmax = session.run(None, {"input_tensor:0": x})
    assert argmax.dtype == np.int64 and softmax.shape == (3, NUM_CLASSES)
    assert (argmax >= 1).all() and np.array_equal(argmax, softmax.argmax(axis=1))
    logits = ort.InferenceSession(build_resnet50_standin(32, interface="logits"), providers=["CPUExecutionProvider"])
    assert [o.name for o in logits.get_outputs()] == ["logits"]
    with pytest.raises(ValueError, match="width must divide 64"):
        build_resnet50_standin(3)


# -- provisioning options ----------------------------------------------------------------------------------------


def getter(values: dict[str, Any]) -> Callable[[OptionSpec], Any]:
    return lambda spec: values.get(spec.name)


def test_list_options_take_ini_paths_from_the_rootdir_and_flags_from_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "root" / "m").mkdir(parents=True)
    (tmp_path / "root" / "m" / "extra.yaml").write_text(
        "schema_version: 1\nassets:\n  - {name: mine, kind: model, url: 'http://h/x.onnx', md5: "
        f"'{'0' * 32}'}}\n"
    )
    monkeypatch.chdir(tmp_path)
    cfg = build_run_config(
        getter({
            "manifest": ListValue(ini=("m/extra.yaml",)),
            "asset": ListValue(ini=("mine=m/x.onnx",), cli=("mine=local.onnx",)),
            "mirror": "https://mirror.example/mlperf/",
            "offline": True,
            "strict-assets": True,
        }),
        tmp_path / "root",
    )  # fmt: skip
    assert cfg.manifests == (tmp_path / "root" / "m" / "extra.yaml",)
    assert cfg.assets == (("mine", tmp_path / "local.onnx"),)  # the flag comes after the ini line, and wins
    assert (cfg.mirror, cfg.offline, cfg.strict_assets) == ("https://mirror.example/mlperf", True, True)
    assert cfg.catalog is not None and "mine" in cfg.catalog and "resnet50-v1.5-onnx" in cfg.catalog
    plain = build_run_config(getter({}))
    assert (plain.mirror, plain.offline, plain.assets, plain.manifests, plain.catalog) == (None, None, (), (), None)


def test_ini_asset_names_are_checked_against_the_manifests(tmp_path: Path) -> None:
    with pytest.raises(UsageProblem, match=r"ini mlperf_asset: 'oops' is not NAME=PATH"):
        build_run_config(getter({"asset": ListValue(ini=("oops",))}), tmp_path)
    with pytest.raises(UsageProblem, match=r"--mlperf-asset typo=.*no manifest entry is named 'typo'; known: .*"
                                           r"imagenet-val"):  # fmt: skip
        build_run_config(getter({"asset": ListValue(cli=("typo=/x",))}), tmp_path)
