"""Apache TVM as a backend: logits match onnxruntime's, the digits suite agrees with it, the library is cached."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from pytest_mlperf.backends import BackendOptions, create_backend  # noqa: E402
from pytest_mlperf.backends.tvm import TvmBackend  # noqa: E402
from pytest_mlperf.errors import ModelError  # noqa: E402
from pytest_mlperf.models.digits import digits_logits, ensure_digits_model, load_digits, train_digits_cnn  # noqa: E402
from tests.e2e.engine_checks import run_digits_suite, runs_of, top1_by_engine  # noqa: E402


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_digits_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One compile cache for the module: the first backend compiles, the others reuse its library."""
    return tmp_path_factory.mktemp("cache")


def make_tvm(model: Path, cache_dir: Path, **options: str) -> TvmBackend:
    backend = create_backend("tvm", model, BackendOptions(extra=tuple(options.items()), cache_dir=cache_dir))
    assert isinstance(backend, TvmBackend)
    return backend


def test_logits_match_onnxruntime_and_the_numpy_reference(digits_onnx: Path, cache_dir: Path) -> None:
    import onnxruntime as ort

    images = load_digits()[0]
    expected = ort.InferenceSession(str(digits_onnx)).run(None, {"input": images})[0]
    reference = digits_logits(train_digits_cnn(), images)
    backend = make_tvm(digits_onnx, cache_dir)
    # The batch axis stays symbolic: a whole batch, one sample and an odd batch run on the same library.
    for rows in (slice(None), slice(0, 1), slice(5, 12)):
        got = backend.run(images[rows])["logits"]
        assert got.shape == expected[rows].shape
        np.testing.assert_allclose(got, expected[rows], rtol=0, atol=1e-4)
        np.testing.assert_allclose(got, reference[rows], rtol=0, atol=1e-4)
    backend.close()


def test_library_is_compiled_once_then_reused(digits_onnx: Path, tmp_path: Path) -> None:
    first = make_tvm(digits_onnx, tmp_path)
    assert first.built is True
    library = first.library
    assert library.is_file() and library.is_relative_to(tmp_path / "tvm")
    stamp = library.stat().st_mtime_ns
    # Keyed by model digest, target and TVM version: a second instance (another inference thread) loads it.
    second = make_tvm(digits_onnx, tmp_path)
    assert second.built is False
    assert second.library == library and library.stat().st_mtime_ns == stamp
    assert f"tvm{tvm.__version__}" in library.name
    # Another target is another library.
    other = make_tvm(digits_onnx, tmp_path, target='{"kind": "llvm", "mcpu": "x86-64"}')
    assert other.built is True and other.library != library
    # cache=off compiles every time and writes nothing into the cache.
    uncached = make_tvm(digits_onnx, tmp_path, cache="off")
    assert uncached.built is True and not uncached.library.is_relative_to(tmp_path)
    images = load_digits()[0][:16]
    np.testing.assert_array_equal(first.run(images)["logits"], second.run(images)["logits"])
    for backend in (first, second, other, uncached):
        backend.close()


def test_a_corrupt_cached_library_is_rebuilt(digits_onnx: Path, tmp_path: Path) -> None:
    library = make_tvm(digits_onnx, tmp_path).library
    # A new file, not an in-place write: this process has the old one mapped, and truncating it would crash it.
    library.unlink()
    library.write_bytes(b"truncated")
    again = make_tvm(digits_onnx, tmp_path)
    assert again.built is True and again.library == library
    assert again.run(load_digits()[0][:2])["logits"].shape == (2, 10)


def test_options_are_recorded(digits_onnx: Path, cache_dir: Path) -> None:
    backend = make_tvm(digits_onnx, cache_dir, target="llvm")
    assert backend.thread_safe is False  # the harness gives each inference thread its own VM
    described = backend.describe()
    assert described["version"] == tvm.__version__
    assert described["target"] == str(tvm.target.Target("llvm"))
    assert described["library"] == backend.library.name
    assert described["options"] == {"target": "llvm"}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("target", "nosuchtarget", "target=nosuchtarget: TVM * does not know this target*use llvm*"),
        ("cache", "sometimes", "tvm.cache=sometimes: use one of on, off*"),
        ("device", "CPU", "*has no option 'device'; it reads: target=llvm|cuda|*, cache=on|off"),
    ],
)
def test_bad_option_is_a_clear_error(digits_onnx: Path, cache_dir: Path, key: str, value: str, message: str) -> None:
    with pytest.raises(ModelError) as info:
        make_tvm(digits_onnx, cache_dir, **{key: value})
    assert fnmatch.fnmatch(str(info.value), f"*{message}"), str(info.value)


def test_unreadable_model_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"could not read .*junk\.onnx.*provision it again"):
        make_tvm(junk, tmp_path)


@pytest.mark.slow
def test_digits_suite_on_tvm_matches_onnxruntime(pytester: pytest.Pytester, tmp_path: Path) -> None:
    # Two inference threads for Offline and Server: each gets its own VM, all on the one cached library.
    doc = run_digits_suite(pytester, tmp_path, "tvm", "--mlperf-workers=2")
    top1 = top1_by_engine(doc)
    assert abs(top1["tvm"] - top1["onnxruntime"]) <= 0.001
    libraries = {run["backend_options"]["library"] for run in runs_of(doc, "tvm")}
    # One library for the whole session, and it sits in the session's cache directory.
    assert len(libraries) == 1
    assert (tmp_path / "cache" / "tvm" / libraries.pop()).is_file()
    for run in runs_of(doc, "tvm"):
        assert run["metrics"]["accuracy"]["count"] == 359
