"""OpenVINO as a backend: logits match onnxruntime's, the digits suite agrees with it, options are recorded."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

ov = pytest.importorskip("openvino")

from pytest_mlperf.backends import BackendOptions, create_backend  # noqa: E402
from pytest_mlperf.backends.openvino import OpenVinoBackend  # noqa: E402
from pytest_mlperf.errors import ModelError  # noqa: E402
from pytest_mlperf.models.digits import digits_logits, ensure_digits_model, load_digits, train_digits_cnn  # noqa: E402
from tests.e2e.engine_checks import run_digits_suite, runs_of, top1_by_engine  # noqa: E402


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_digits_model(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return load_digits()[0]


@pytest.fixture(scope="module")
def reference(images: np.ndarray) -> np.ndarray:
    """The float64 numpy forward pass of the same weights."""
    return digits_logits(train_digits_cnn(), images)


def openvino(model: Path, **options: str) -> OpenVinoBackend:
    backend = create_backend("openvino", model, BackendOptions(extra=tuple(options.items())))
    assert isinstance(backend, OpenVinoBackend)
    return backend


@pytest.mark.parametrize("hint", ["auto", "LATENCY", "THROUGHPUT"])
def test_logits_match_onnxruntime_and_the_numpy_reference(
    digits_onnx: Path, images: np.ndarray, reference: np.ndarray, hint: str
) -> None:
    import onnxruntime as ort

    expected = ort.InferenceSession(str(digits_onnx)).run(None, {"input": images})[0]
    backend = openvino(digits_onnx, hint=hint)
    try:
        # A whole batch (split over the queue's requests), one sample, and an odd batch that splits unevenly.
        for rows in (slice(None), slice(0, 1), slice(5, 12)):
            got = backend.run(images[rows])["logits"]
            assert got.shape == expected[rows].shape
            np.testing.assert_allclose(got, expected[rows], rtol=0, atol=1e-4)
            np.testing.assert_allclose(got, reference[rows], rtol=0, atol=1e-4)
    finally:
        backend.close()


def test_concurrent_callers_each_get_their_own_rows(
    digits_onnx: Path, images: np.ndarray, reference: np.ndarray
) -> None:
    # thread_safe=True means one instance serves every harness thread: results must never cross between callers.
    backend = openvino(digits_onnx)
    expected = reference
    failures: list[str] = []

    def work(start: int) -> None:
        for size in (1, 9, 32, 1, 40):
            rows = slice(start, start + size)
            got = backend.run(images[rows])["logits"]
            if got.shape != expected[rows].shape or not np.allclose(got, expected[rows], rtol=0, atol=1e-4):
                failures.append(f"rows {rows}")

    threads = [threading.Thread(target=work, args=(start,)) for start in range(0, 1600, 200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    backend.close()
    assert backend.thread_safe is True
    assert failures == []


def test_options_are_recorded_as_compiled(digits_onnx: Path) -> None:
    backend = openvino(digits_onnx)
    described = backend.describe()
    assert described["version"] == ov.__version__
    assert described["device"] == "CPU"
    # f32 by default, read back from the compiled model, even on CPUs whose own default is bf16.
    assert described["precision"] == "f32"
    assert described["hint"] == "auto"
    assert set(described["compiled"]) == {"LATENCY", "THROUGHPUT"}
    for compiled in described["compiled"].values():
        assert compiled["requests"] >= 1 and compiled["threads"] >= 1
    backend.close()

    native = openvino(digits_onnx, precision="default", hint="throughput")
    described = native.describe()
    # What the device chose for itself is recorded, whatever it is (bf16 on CPUs that have it).
    own = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    assert described["precision"] == own
    assert described["hint"] == "THROUGHPUT"
    assert set(described["compiled"]) == {"THROUGHPUT"}
    assert described["options"] == {"precision": "default", "hint": "throughput"}
    native.close()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("device", "NOSUCHDEVICE", "device=NOSUCHDEVICE: OpenVINO * has no such device here; available: *CPU*"),
        ("precision", "f64", "precision=f64: use one of f32, bf16, f16, default*"),
        ("hint", "fastest", "hint=fastest: use one of auto, LATENCY, THROUGHPUT*"),
        ("threads", "4", "*has no option 'threads'; it reads: device=CPU*, precision=f32|bf16|f16|default, hint=*"),
    ],
)
def test_bad_option_is_a_clear_error(digits_onnx: Path, key: str, value: str, message: str) -> None:
    import fnmatch

    with pytest.raises(ModelError) as info:
        openvino(digits_onnx, **{key: value})
    assert fnmatch.fnmatch(str(info.value), f"*{message}"), str(info.value)


def test_unreadable_model_and_wrong_inputs_are_clear_errors(
    digits_onnx: Path, images: np.ndarray, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"OpenVINO could not read .*junk\.onnx.*provision it again"):
        openvino(junk)
    with pytest.raises(ModelError, match="model file not found"):
        openvino(tmp_path / "absent.onnx")
    backend = openvino(digits_onnx)
    with pytest.raises(ModelError, match=r"input 'input' takes float32 \[\?,1,8,8\], the dataset gave float64"):
        backend.run(images[:4].astype(np.float64))
    # The refused batch never reached the queue: the backend still answers.
    assert backend.run(images[:4])["logits"].shape == (4, 10)
    backend.close()


@pytest.mark.slow
def test_digits_suite_on_openvino_matches_onnxruntime(pytester: pytest.Pytester, tmp_path: Path) -> None:
    # Two inference threads for Offline and Server share the one instance (thread_safe).
    doc = run_digits_suite(pytester, tmp_path, "openvino", "--mlperf-workers=2")
    top1 = top1_by_engine(doc)
    assert abs(top1["openvino"] - top1["onnxruntime"]) <= 0.001
    for run in runs_of(doc, "openvino"):
        assert run["backend_options"]["precision"] == "f32"
        assert run["backend_options"]["version"] == ov.__version__
        assert run["metrics"]["accuracy"]["count"] == 359
