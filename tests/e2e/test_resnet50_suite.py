"""End to end: the ResNet50 suite, with its model and ImageNet provisioned from a real HTTP server on 127.0.0.1.

The server hands out a ResNet50-shaped stand-in (random weights, channels divided by 16, the MLPerf file's
interface) and an ImageNet-layout tar of a few generated JPEGs whose labels are the stand-in's own predictions
(less the background class), so accuracy runs must score 100 % through the whole chain: download, checksum,
extraction, preprocessing, LoadGen, the label offset. An extra manifest (--mlperf-manifest) points the packaged
resnet50 and imagenet-val entries at the server, with their real sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import yaml
from pytest_httpserver import HTTPServer

from pytest_mlperf.datasets.imagenet import preprocess_resnet50
from pytest_mlperf.models.standin import build_resnet50_standin
from pytest_mlperf.results import schema

PIL = pytest.importorskip("PIL", reason="ImageNet preprocessing needs Pillow: pip install pillow")

SUITES = Path(__file__).resolve().parents[2] / "suites"
SUITE_FILE = SUITES / "test_resnet50.py"
MODEL = "resnet50-v1.5-onnx"
IMAGES = 6
#: Short runs on one thread (steadier on a shared two-core runner); a generous latency bound, because this test
#: is about provisioning and the suite's wiring, not about this machine's tail latency.
QUIET = ["--mlperf-threads=1", "--mlperf-latency-bound-ms=500", "-p", "no:cacheprovider"]
FAST = ["--mlperf-min-duration-ms=200", *QUIET]


@dataclass(frozen=True)
class Served:
    model: bytes
    imagenet_dir: Path  # the same images and val_map.txt as the tar, unpacked
    imagenet_tar: bytes
    labels: list[int]

    @property
    def model_sha256(self) -> str:
        return hashlib.sha256(self.model).hexdigest()

    @property
    def tar_sha256(self) -> str:
        return hashlib.sha256(self.imagenet_tar).hexdigest()


def _jpegs(directory: Path) -> list[str]:
    """JPEGs of several shapes (portrait, landscape, square, smaller than 256, grayscale) with some structure."""
    from PIL import Image

    rng = np.random.default_rng(11)
    names = []
    shapes = [(375, 500), (500, 333), (256, 256), (180, 240), (300, 300), (240, 320)]
    for i, (h, w) in enumerate(shapes[:IMAGES]):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * (i + 1)) % 256, (yy * 3) % 256, ((xx + yy) * (i + 2)) % 256], axis=-1)
        noisy = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        image = Image.fromarray(noisy)
        if i == 4:
            image = image.convert("L")  # ImageNet has grayscale JPEGs; they must become RGB
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        image.save(directory / name, quality=90)
        names.append(name)
    return names


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    import onnxruntime as ort

    model = build_resnet50_standin(16)
    root = tmp_path_factory.mktemp("imagenet")
    names = _jpegs(root)
    # Label each image with the stand-in's prediction less 1 (its class 0 is "background"), as val_map.txt does.
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    batch = np.stack([preprocess_resnet50(root / name) for name in names])
    predictions = session.run(["ArgMax:0"], {"input_tensor:0": batch})[0]
    labels = [int(p) - 1 for p in predictions]
    assert all(0 <= label < 1000 for label in labels)
    (root / "val_map.txt").write_text("".join(f"{n} {lbl}\n" for n, lbl in zip(names, labels, strict=True)))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ["val_map.txt", *names]:
            tar.add(root / name, arcname=name)
    return Served(model, root, buf.getvalue(), labels)


@pytest.fixture(autouse=True)
def _no_asset_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own PYTEST_MLPERF_* settings must not leak into these runs (nor into subprocesses)."""
    import os

    for var in [v for v in os.environ if v.startswith("PYTEST_MLPERF_")]:
        monkeypatch.delenv(var)


def _manifest(path: Path, *entries: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"schema_version": 1, "assets": list(entries)}), encoding="utf-8")
    return path


def _model_entry(url: str, sha256: str) -> dict[str, Any]:
    return {
        "name": MODEL, "kind": "model", "url": url, "filename": "resnet50_standin.onnx", "sha256": sha256,
        "description": "ResNet50-shaped stand-in (tests)", "layout": {"num_classes": 1001, "label_offset": -1},
    }  # fmt: skip


def _imagenet_entry(url: str, sha256: str) -> dict[str, Any]:
    return {
        "name": "imagenet-val", "kind": "dataset", "url": url, "filename": "imagenet-tiny.tar", "sha256": sha256,
        "archive": "tar", "required_files": ["val_map.txt"],
        "layout": {"format": "imagenet-val-map", "map_file": "val_map.txt", "count": IMAGES},
    }  # fmt: skip


@pytest.fixture
def server(httpserver: HTTPServer, served: Served, tmp_path: Path) -> Iterator[Path]:
    """Serve both files; yield the extra manifest that points the packaged entries at them."""
    httpserver.expect_request("/models/resnet50_standin.onnx").respond_with_data(served.model)
    httpserver.expect_request("/data/imagenet-tiny.tar").respond_with_data(served.imagenet_tar)
    yield _manifest(
        tmp_path / "local.yaml",
        _model_entry(httpserver.url_for("/models/resnet50_standin.onnx"), served.model_sha256),
        _imagenet_entry(httpserver.url_for("/data/imagenet-tiny.tar"), served.tar_sha256),
    )


def test_suite_provisions_from_the_server_and_passes_every_scenario(
    pytester: pytest.Pytester, httpserver: HTTPServer, server: Path, served: Served, tmp_path: Path
) -> None:
    cache, results = tmp_path / "cache", tmp_path / "out" / "results.json"
    common = [f"--mlperf-manifest={server}", f"--mlperf-cache-dir={cache}", f"--mlperf-results={results}",
              f"--mlperf-log-dir={tmp_path / 'out' / 'logs'}", *QUIET]  # fmt: skip

    run = pytester.runpytest_subprocess(str(SUITES), "-k", "resnet50", "--mlperf-mode=performance",
                                        "--mlperf-min-duration-ms=200", *common, timeout=300)  # fmt: skip

    run.assert_outcomes(passed=4)
    out = run.stdout.str()
    # Not a terminal: one line per downloaded file, no progress bar redrawn with carriage returns.
    assert out.count("pytest-mlperf: resnet50-v1.5-onnx: downloaded") == 1
    assert out.count("pytest-mlperf: imagenet-val: downloaded") == 1
    assert httpserver.url_for("/models/resnet50_standin.onnx") in out
    assert "\r" not in out
    doc = json.loads(results.read_text())
    jsonschema.validate(doc, schema())
    assert doc["status"] == "complete"
    assert sorted(r["scenario"] for r in doc["runs"]) == ["MultiStream", "Offline", "Server", "SingleStream"]
    for r in doc["runs"]:
        assert r["mode"] == "performance" and r["valid"] is True and r["passed"] is True
        assert r["model"] == "resnet50"
        assert r["model_sha256"] == served.model_sha256
        assert r["dataset"] == {"name": "imagenet-val", "count": IMAGES, "digest": doc["runs"][0]["dataset"]["digest"]}
        assert r["dataset"]["digest"].startswith("sha256:")  # the same images in every scenario
        assert r["synthetic_inputs"] is False
    tensors = sorted((cache / "preprocessed").rglob("*.npy"))
    assert len(tensors) == IMAGES
    stamps = [t.stat().st_mtime_ns for t in tensors]

    # A second session on the same cache: no download, no preprocessing; accuracy scores the labels through the
    # model's ArgMax output and the label offset.
    requests_before = len(httpserver.log)
    run = pytester.runpytest_subprocess(str(SUITE_FILE), "--mlperf-mode=accuracy", "--mlperf-scenarios=Offline",
                                        *common, timeout=300)  # fmt: skip
    run.assert_outcomes(passed=1)
    assert len(httpserver.log) == requests_before
    assert "downloaded" not in run.stdout.str()
    assert [t.stat().st_mtime_ns for t in sorted((cache / "preprocessed").rglob("*.npy"))] == stamps
    (accuracy,) = json.loads(results.read_text())["runs"]
    assert accuracy["metrics"]["accuracy"] == {"top1": 1.0, "count": float(IMAGES)}
    assert accuracy["dataset"]["name"] == "imagenet-val" and accuracy["dataset"]["count"] == IMAGES
    assert accuracy["dataset"]["digest"].startswith("sha256:")
    assert accuracy["thresholds"]["accuracy"] == pytest.approx(0.70)  # the subset target from the marker


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """The suite file in an isolated pytester project (in-process runs: quicker than a subprocess)."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_resnet50=SUITE_FILE.read_text())
    return pytester


def test_offline_without_the_model_skips_every_case_saying_how_to_provide_it(
    suite: pytest.Pytester, tmp_path: Path
) -> None:
    run = suite.runpytest("--mlperf-offline", f"--mlperf-cache-dir={tmp_path / 'empty'}", "-rs")

    run.assert_outcomes(skipped=8)
    run.stdout.fnmatch_lines([
        f"SKIPPED ?8? test_resnet50.py:*: model '{MODEL}' is not in the cache {tmp_path / 'empty'} and offline mode*",
        f"To provide model '{MODEL}' (MLPerf ResNet50 v1.5, ONNX opset 11 (fp32)):",
        f"  - a local copy: --mlperf-asset {MODEL}=PATH, or PYTEST_MLPERF_ASSET_RESNET50_V1_5_ONNX=PATH",
        "    expected: the file resnet50_v1.onnx (md5 f6a4da60cd5f084d97efc2c1ddb10beb)",
        "  - a mirror: --mlperf-mirror URL or PYTEST_MLPERF_MIRROR=URL, serving URL/resnet50_v1.onnx",
        "  - the network: it downloads from https://zenodo.org/record/4735647/files/resnet50_v1.onnx unless offline*",
    ])  # fmt: skip


def test_strict_assets_turns_the_skip_into_a_failure(suite: pytest.Pytester, tmp_path: Path) -> None:
    run = suite.runpytest("--mlperf-offline", "--mlperf-strict-assets", f"--mlperf-cache-dir={tmp_path / 'c'}",
                          "--mlperf-scenarios=Offline")  # fmt: skip

    run.assert_outcomes(errors=2)
    run.stdout.fnmatch_lines([
        f"*model '{MODEL}' is not in the cache * and offline mode is on*",
        "*--mlperf-asset resnet50-v1.5-onnx=PATH*",
        "(--mlperf-strict-assets turns this skip into a failure)",
    ])  # fmt: skip


def test_local_paths_override_both_assets_with_no_network(
    suite: pytest.Pytester, served: Served, tmp_path: Path
) -> None:
    model = tmp_path / "my-resnet.onnx"
    model.write_bytes(served.model)
    # The override must match the entry's checksum, so the user's manifest declares the stand-in's sha256; its URL
    # is never used (offline).
    manifest = _manifest(tmp_path / "mine.yaml", _model_entry("http://127.0.0.1:9/nowhere.onnx", served.model_sha256))
    results = tmp_path / "results.json"

    run = suite.runpytest(
        "--mlperf-offline", f"--mlperf-manifest={manifest}", f"--mlperf-asset={MODEL}={model}",
        f"--mlperf-asset=imagenet-val={served.imagenet_dir}", f"--mlperf-cache-dir={tmp_path / 'c'}",
        "--mlperf-scenarios=Offline", f"--mlperf-results={results}", *FAST,
    )  # fmt: skip

    run.assert_outcomes(passed=2)
    runs = {r["mode"]: r for r in json.loads(results.read_text())["runs"]}
    assert runs["accuracy"]["metrics"]["accuracy"]["top1"] == 1.0
    assert runs["performance"]["dataset"]["name"] == "imagenet-val"
    assert runs["performance"]["dataset"]["count"] == IMAGES
    assert runs["performance"]["dataset"]["digest"] == runs["accuracy"]["dataset"]["digest"]
    assert runs["performance"]["model_sha256"] == served.model_sha256


def test_without_imagenet_performance_runs_synthetic_and_accuracy_skips(
    suite: pytest.Pytester, served: Served, tmp_path: Path
) -> None:
    model = tmp_path / "resnet.onnx"
    model.write_bytes(served.model)
    manifest = _manifest(tmp_path / "mine.yaml", _model_entry("http://127.0.0.1:9/x.onnx", served.model_sha256))
    results = tmp_path / "results.json"

    run = suite.runpytest(
        "--mlperf-offline", f"--mlperf-manifest={manifest}", f"--mlperf-asset={MODEL}={model}", "-rs",
        f"--mlperf-cache-dir={tmp_path / 'c'}", "--mlperf-scenarios=Offline", f"--mlperf-results={results}", *FAST,
    )  # fmt: skip

    run.assert_outcomes(passed=1, skipped=1)
    run.stdout.fnmatch_lines([
        "test_resnet50?Offline-performance? (synthetic inputs)*VALID*PASS",
        "SKIPPED ?1? test_resnet50.py:*: No ImageNet validation data is available*",
        "*--mlperf-asset imagenet-val=PATH*",
        "*a directory holding val_map.txt*",
        "*imagenet-val-500*offline mode is on*",
    ])  # fmt: skip
    (perf,) = json.loads(results.read_text())["runs"]
    assert perf["synthetic_inputs"] is True
    assert perf["dataset"]["name"] == "synthetic-imagenet"


def test_missing_and_unreadable_images_fail_with_one_list(
    suite: pytest.Pytester, served: Served, tmp_path: Path
) -> None:
    data = tmp_path / "imagenet"
    data.mkdir()
    for path in served.imagenet_dir.iterdir():
        (data / path.name).write_bytes(path.read_bytes())
    (data / "ILSVRC2012_val_00000002.JPEG").unlink()
    (data / "ILSVRC2012_val_00000003.JPEG").write_bytes(b"not a jpeg")
    model = tmp_path / "resnet.onnx"
    model.write_bytes(served.model)
    manifest = _manifest(tmp_path / "mine.yaml", _model_entry("http://127.0.0.1:9/x.onnx", served.model_sha256))

    run = suite.runpytest(
        "--mlperf-offline", f"--mlperf-manifest={manifest}", f"--mlperf-asset={MODEL}={model}",
        f"--mlperf-asset=imagenet-val={data}", f"--mlperf-cache-dir={tmp_path / 'c'}", "--mlperf-scenarios=Offline",
    )  # fmt: skip

    run.assert_outcomes(errors=2)
    run.stdout.fnmatch_lines([
        f"*ImageNet 'imagenet-val' ({data / 'val_map.txt'}): 2 of {IMAGES} listed images cannot be used*",
        "1 missing:",
        f"  {data / 'ILSVRC2012_val_00000002.JPEG'} (No such file or directory)",
        "1 unreadable:",
        f"  {data / 'ILSVRC2012_val_00000003.JPEG'} (UnidentifiedImageError: *",
    ])  # fmt: skip


# -- options and the mlperf_assets fixture ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mlperf-mirror=ftp://x"], "--mlperf-mirror: 'ftp://x' is not an http:// or https:// base URL*"),
        (["--mlperf-asset=resnet"], "--mlperf-asset: 'resnet' is not NAME=PATH; e.g. --mlperf-asset imagenet-val=*"),
        (["--mlperf-asset=nosuch=/x"], "--mlperf-asset nosuch=/x: no manifest entry is named 'nosuch'; known: *"),
        (["--mlperf-manifest=missing.yaml"], "--mlperf-manifest: manifest file not found: *missing.yaml*"),
    ],
)
def test_bad_provisioning_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makeini("[pytest]\n")
    run = pytester.runpytest(*args)
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_malformed_manifest_names_file_entry_and_field(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    bad = _manifest(pytester.path / "bad.yaml", {"name": "mine", "kind": "model", "url": "http://x/m.onnx",
                                                 "sha256": "abc"})  # fmt: skip
    run = pytester.runpytest(f"--mlperf-manifest={bad}")
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines([f"ERROR: --mlperf-manifest: manifest {bad}, entry 'mine': field 'sha256' must be 64*"])


def test_ini_manifests_and_assets_resolve_from_the_rootdir_and_the_fixture_serves_them(
    pytester: pytest.Pytester, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = b"weights" * 100
    httpserver.expect_request("/w.bin").respond_with_data(payload)
    sub = pytester.mkdir("conf")
    _manifest(sub / "extra.yaml",
              {"name": "remote", "kind": "model", "url": httpserver.url_for("/w.bin"),
               "sha256": hashlib.sha256(payload).hexdigest()},
              {"name": "local", "kind": "dataset", "source": "user", "required_files": ["a.txt"]},
              {"name": "gone", "kind": "model", "url": "http://127.0.0.1:9/gone.bin", "md5": "0" * 32})  # fmt: skip
    (sub / "data").mkdir()
    (sub / "data" / "a.txt").write_text("x")
    pytester.makeini(
        "[pytest]\nmlperf_manifest =\n    conf/extra.yaml\nmlperf_asset =\n    local=conf/data\n"
        f"mlperf_cache_dir = {pytester.path / 'cache'}\n"
    )
    pytester.makepyfile(
        """
        def test_get(mlperf_assets):
            assert mlperf_assets.get("remote").read_bytes() == b"weights" * 100
            assert mlperf_assets.provision("remote").origin == "download"
            assert (mlperf_assets.get("local") / "a.txt").read_text() == "x"

        def test_optional_and_unavailable(mlperf_assets):
            assert mlperf_assets.optional("gone") is None
            assert "could not be downloaded" in mlperf_assets.why_unavailable("gone")
            mlperf_assets.get("gone")
        """
    )
    monkeypatch.chdir(pytester.mkdir("elsewhere"))  # ini paths are the rootdir's, not the cwd's
    run = pytester.runpytest("-rs", str(pytester.path))
    run.assert_outcomes(passed=1, skipped=1)
    run.stdout.fnmatch_lines(["*model 'gone' is not in the cache * and could not be downloaded: no source was*"])


def test_a_failed_download_is_an_error_naming_asset_url_and_remedy(
    pytester: pytest.Pytester, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/gone.onnx").respond_with_data("not here", status=404)
    url = httpserver.url_for("/gone.onnx")
    manifest = _manifest(pytester.path / "m.yaml", {"name": "gone", "kind": "model", "url": url, "md5": "0" * 32})
    pytester.makeini(f"[pytest]\nmlperf_cache_dir = {pytester.path / 'cache'}\n")
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def model(mlperf_assets):
            return mlperf_assets.get("gone")
        """
    )
    pytester.makepyfile("def test_a(model): pass\n\ndef test_b(model): pass\n")
    run = pytester.runpytest(f"--mlperf-manifest={manifest}")
    run.assert_outcomes(errors=2)  # a setup error, not a skip: the asset exists but something is wrong
    run.stdout.fnmatch_lines([
        f"*pytest-mlperf could not download model 'gone' (declared in {manifest}):",
        f"*  - {url}: HTTP 404 NOT FOUND: the file is not at that URL",
        "*How to fix: the file is not at that URL: fix 'url' in *m.yaml*--mlperf-asset gone=PATH*",
    ])  # fmt: skip
    assert len(httpserver.log) == 1  # the session fixture keeps the outcome: no second request for test_b
