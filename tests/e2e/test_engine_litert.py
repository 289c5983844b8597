"""LiteRT engine: the .tflite written from the numpy weights agrees with ONNX Runtime, runs the digits suite, and
records its options; one interpreter per inference thread."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

import onnxruntime as ort

from pytest_mlperf.backends.base import BackendOptions
from pytest_mlperf.backends.litert import LiteRtBackend
from pytest_mlperf.config import RunConfig
from pytest_mlperf.errors import ModelError
from pytest_mlperf.harness import Harness
from pytest_mlperf.models.digits import build_digits_onnx, digits_logits
from pytest_mlperf.models.digits_formats import digits_model_for
from pytest_mlperf.models.digits_tflite import build_digits_tflite, ensure_digits_tflite
from tests.e2e.engine_checks import run_digits_suite, runs_of, top1_by_engine

# fp32 logits of a few units; the engines sum in different orders, so they agree to ~1e-5, not bit for bit.
ATOL = 1e-4


@pytest.fixture(scope="module")
def tflite(engine_cache: Path) -> Path:
    return ensure_digits_tflite(engine_cache)


def litert(model: Path, **extra: str) -> LiteRtBackend:
    return LiteRtBackend(model, BackendOptions(extra=tuple(extra.items())))


def ops(backend: LiteRtBackend) -> list[str]:
    # The interpreter's execution plan: a DELEGATE node stands for the ops a delegate took over.
    details: list[dict[str, Any]] = backend._interpreter._get_ops_details()
    return [str(op["op_name"]) for op in details]


@pytest.mark.parametrize("delegate", ["xnnpack", "none"])
def test_logits_match_onnxruntime_and_the_numpy_reference(
    digits_weights: dict[str, np.ndarray], digits_images: np.ndarray, tflite: Path, delegate: str
) -> None:
    session = ort.InferenceSession(build_digits_onnx(digits_weights), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": digits_images})[0]
    backend = litert(tflite, delegate=delegate)
    got = backend.run(digits_images)["logits"]
    assert got.shape == (len(digits_images), 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    np.testing.assert_allclose(got, digits_logits(digits_weights, digits_images), rtol=0, atol=ATOL)
    # The logits are not all alike: a graph that ignored its input would fail here.
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert len(np.unique(got.argmax(axis=1))) == 10


def test_the_batch_axis_is_resized_to_each_batch(
    digits_weights: dict[str, np.ndarray], digits_images: np.ndarray, tflite: Path
) -> None:
    backend = litert(tflite)
    assert backend.max_batch is None and backend.describe()["batch_axis"] == "dynamic"
    reference = digits_logits(digits_weights, digits_images[:41])
    start = 0
    for size in (1, 7, 32, 1):  # grows, shrinks and grows again: each resize must reallocate correctly
        out = backend.run(digits_images[start : start + size])["logits"]
        np.testing.assert_allclose(out, reference[start : start + size], rtol=0, atol=ATOL)
        start += size


def test_a_fixed_batch_model_is_cut_and_padded(
    digits_weights: dict[str, np.ndarray], digits_images: np.ndarray, tmp_path: Path
) -> None:
    model = tmp_path / "digits-b4.tflite"
    model.write_bytes(build_digits_tflite(digits_weights, batch=4))
    backend = litert(model)
    assert backend.max_batch == 4 and backend.describe()["batch_axis"] == 4
    for n in (1, 4, 10):
        expected = digits_logits(digits_weights, digits_images[:n])
        np.testing.assert_allclose(backend.run(digits_images[:n])["logits"], expected, rtol=0, atol=ATOL)
    harness = Harness(RunConfig(backend="litert", batch_size=32), tmp_path)
    assert harness.batch_size(backend) == 4


def test_xnnpack_is_on_by_default_and_off_with_delegate_none(tflite: Path) -> None:
    default, off = litert(tflite), litert(tflite, delegate="none")
    assert "DELEGATE" in ops(default)
    assert "DELEGATE" not in ops(off)
    assert {"CONV_2D", "FULLY_CONNECTED"} <= set(ops(off))
    assert default.describe()["delegate"] == "xnnpack"
    assert off.describe() == default.describe() | {"delegate": "none", "options": {"delegate": "none"}}


def test_options_are_recorded(tflite: Path) -> None:
    backend = litert(tflite, threads="1", delegate="none")
    described = backend.describe()
    assert described["threads"] == 1 and described["delegate"] == "none"
    assert described["version"] and described["options"] == {"threads": "1", "delegate": "none"}
    # Without the option the interpreter follows --mlperf-threads (BackendOptions.intra_op_threads).
    assert LiteRtBackend(tflite, BackendOptions(intra_op_threads=2)).describe()["threads"] == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"threads": "two"}, "threads=two: the litert backend needs a whole number >= 0"),
        ({"threads": "-1"}, "threads=-1: the litert backend needs a whole number >= 0"),
        ({"delegate": "gpu"}, "delegate=gpu: not xnnpack or none, and no delegate library exists at that path"),
        ({"providers": "x"}, "the litert backend has no option 'providers'; it reads: threads=N"),
    ],
)
def test_a_bad_option_is_a_clear_error(tflite: Path, extra: dict[str, str], message: str) -> None:
    with pytest.raises(ModelError, match=message.replace("(", r"\(")):
        litert(tflite, **extra)


# LiteRT's Delegate.__del__ reads an attribute its failed constructor never set; that noise is LiteRT's, not ours.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_file_that_is_not_a_delegate_library_is_refused(tflite: Path, tmp_path: Path) -> None:
    fake = tmp_path / "libfake_delegate.so"
    fake.write_bytes(b"not an ELF file")
    with pytest.raises(ModelError, match=r"delegate=.*libfake_delegate\.so: LiteRT could not load it as a delegate"):
        litert(tflite, delegate=str(fake))


def test_a_broken_model_file_is_a_clear_error(tflite: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(tflite.read_bytes()[:100])
    with pytest.raises(ModelError, match=r"litert could not load .*broken\.tflite.*delete it and provision it again"):
        litert(broken)
    with pytest.raises(ModelError, match="model file not found"):
        litert(tmp_path / "absent.tflite")


def test_wrong_input_shape_or_dtype_is_a_clear_error(tflite: Path, digits_images: np.ndarray) -> None:
    backend = litert(tflite)
    with pytest.raises(ModelError, match=r"input 'input' has shape \[-1, 1, 8, 8\].*cannot take shape \[4, 8, 8, 1\]"):
        backend.run(np.ascontiguousarray(digits_images[:4].transpose(0, 2, 3, 1)))
    with pytest.raises(ModelError, match=r"input 'input' takes float32.*the dataset gave float64"):
        backend.run(digits_images[:4].astype(np.float64))


def test_the_tflite_is_built_once_reproducibly_and_cached(
    digits_weights: dict[str, np.ndarray], tmp_path: Path
) -> None:
    assert build_digits_tflite(digits_weights) == build_digits_tflite(digits_weights)
    first = ensure_digits_tflite(tmp_path)
    stamp = first.stat().st_mtime_ns
    assert digits_model_for("litert", tmp_path) == first
    assert first.stat().st_mtime_ns == stamp
    assert first.read_bytes()[4:8] == b"TFL3"
    assert first.read_bytes() == build_digits_tflite(digits_weights)


def test_each_inference_thread_gets_its_own_interpreter(
    digits_weights: dict[str, np.ndarray], digits_images: np.ndarray, tflite: Path, tmp_path: Path
) -> None:
    harness = Harness(RunConfig(backend="litert", workers=2), tmp_path)
    backends = harness.backends_for(tflite, count=2, engine="litert")
    assert len(backends) == 2
    assert backends[0] is not backends[1]
    assert backends[0]._interpreter is not backends[1]._interpreter  # type: ignore[attr-defined]
    assert harness.backends_for(tflite, count=2, engine="litert") == backends  # made once per session
    reference = digits_logits(digits_weights, digits_images)
    errors: list[str] = []

    def work(backend: Any, size: int) -> None:
        # Different batch sizes per thread: a shared interpreter would be resized under the other thread's feet.
        for start in range(0, len(digits_images) - size, size):
            out = backend.run(digits_images[start : start + size])["logits"]
            if not np.allclose(out, reference[start : start + size], rtol=0, atol=ATOL):
                errors.append(f"batch of {size} at {start}")

    threads = [threading.Thread(target=work, args=(b, size)) for b, size in zip(backends, (3, 17), strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    harness.close()


@pytest.mark.slow
def test_the_digits_suite_runs_on_litert_as_accurately_as_onnxruntime(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    # Two inference threads for Offline and Server: each gets its own interpreter. litert.threads reaches litert
    # alone: onnxruntime refuses keys it does not read, so its cases passing shows the key did not reach it.
    doc = run_digits_suite(
        pytester, tmp_path, "litert", "--mlperf-workers=2", "--mlperf-backend-option=litert.threads=1"
    )
    top1 = top1_by_engine(doc)
    assert abs(top1["litert"] - top1["onnxruntime"]) <= 0.001
    assert top1["litert"] >= 0.97
    for run in runs_of(doc, "litert"):
        options = run["backend_options"]
        assert options["delegate"] == "xnnpack" and options["threads"] == 1 and options["version"]
        assert options["options"] == {"threads": "1"}
        assert run["model"] == "digits-cnn" and len(run["model_sha256"]) == 64
        assert run["metrics"]["accuracy"]["count"] == 359
    assert all("options" not in run["backend_options"] for run in runs_of(doc, "onnxruntime"))
