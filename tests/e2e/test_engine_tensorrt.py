"""The TensorRT engine on a GPU: parity with ONNX Runtime, the engine cache, per-thread contexts, the digits suite.

Skips without tensorrt or without a CUDA device (CI has neither); tests/unit/test_tensorrt_options.py covers what
needs no GPU.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorrt")

from pytest_mlperf.backends import BackendOptions, create_backend
from pytest_mlperf.backends.tensorrt import TensorRtBackend, cuda_device_count
from pytest_mlperf.models.digits import (
    digits_logits,
    digits_weights_from_onnx,
)
from pytest_mlperf.models.digits_formats import digits_model_for

if cuda_device_count() == 0:
    pytest.skip("TensorRT needs a CUDA device, and this machine has none", allow_module_level=True)

SUITES = Path(__file__).resolve().parents[2] / "suites"


def make(engine_cache: Path, *extra: tuple[str, str]) -> TensorRtBackend:
    model = digits_model_for("tensorrt", engine_cache)
    backend = create_backend("tensorrt", model, BackendOptions(extra=tuple(extra), cache_dir=engine_cache))
    assert isinstance(backend, TensorRtBackend)
    return backend


def test_fp32_logits_match_onnxruntime_and_the_numpy_reference(engine_cache: Path, digits_images: np.ndarray) -> None:
    onnx_path = digits_model_for("onnxruntime", engine_cache)
    ort = create_backend("onnxruntime", onnx_path, BackendOptions()).run(digits_images)["logits"]
    backend = make(engine_cache, ("precision", "fp32"))
    logits = backend.run(digits_images)["logits"]  # 359 samples: chunks of the profile's 32
    np.testing.assert_allclose(logits, ort, rtol=0, atol=1e-4)
    reference = digits_logits(digits_weights_from_onnx(onnx_path), digits_images)
    np.testing.assert_allclose(logits, reference, rtol=0, atol=1e-4)
    described = backend.describe()
    assert (described["precision"], described["tf32"], described["max_batch"]) == ("fp32", False, 32)
    assert described["version"] and described["gpu"]


def test_fp16_keeps_the_top1_and_the_workspace_is_recorded(engine_cache: Path, digits_images: np.ndarray) -> None:
    fp32 = make(engine_cache).run(digits_images)["logits"]
    backend = make(engine_cache, ("precision", "fp16"), ("workspace_mib", "256"))
    fp16 = backend.run(digits_images)["logits"]
    assert np.mean(fp16.argmax(1) == fp32.argmax(1)) >= 0.99
    assert (backend.describe()["precision"], backend.describe()["workspace_mib"]) == ("fp16", 256)


def test_the_built_engine_is_cached_and_reused(engine_cache: Path) -> None:
    first = make(engine_cache, ("workspace_mib", "128"))
    stamp = first.engine_path.stat().st_mtime_ns
    again = make(engine_cache, ("workspace_mib", "128"))
    assert again.engine_path == first.engine_path and again.engine_path.stat().st_mtime_ns == stamp
    assert first.engine_path.parent.name == "tensorrt"
    other = make(engine_cache, ("workspace_mib", "64"))
    assert other.engine_path != first.engine_path


def test_each_thread_runs_its_own_execution_context(engine_cache: Path, digits_images: np.ndarray) -> None:
    backend = make(engine_cache)
    batches = [digits_images[i : i + 13] for i in range(0, len(digits_images), 13)]
    serial = [backend.run(b)["logits"] for b in batches]
    contexts: dict[int, int] = {}
    got: dict[tuple[int, int], np.ndarray] = {}
    start = threading.Barrier(3)

    def worker(t: int) -> None:
        start.wait()
        for i, batch in enumerate(batches):
            got[(t, i)] = backend.run(batch)["logits"]
        contexts[t] = id(backend._local.state.context)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(contexts.values())) == 3 and len(backend._states) == 4  # the main thread's and three
    for (_, i), out in got.items():
        np.testing.assert_allclose(out, serial[i], rtol=0, atol=1e-6)
    backend.close()
    assert backend._states == []


@pytest.mark.slow
def test_digits_suite_on_onnxruntime_and_tensorrt_agree(pytester: pytest.Pytester, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    result = pytester.runpytest_subprocess(
        str(SUITES / "test_digits.py"), "--mlperf-backends=onnxruntime,tensorrt", f"--mlperf-results={results}",
        f"--mlperf-log-dir={tmp_path / 'logs'}", f"--mlperf-cache-dir={tmp_path / 'cache'}",
        "--mlperf-min-duration-ms=300", "-p", "no:cacheprovider", timeout=600,
    )
    result.assert_outcomes(passed=16)
    runs = json.loads(results.read_text())["runs"]
    top1 = {r["backend"]: r["metrics"]["accuracy"]["top1"] for r in runs if r["mode"] == "accuracy"}
    assert set(top1) == {"onnxruntime", "tensorrt"}
    assert abs(top1["tensorrt"] - top1["onnxruntime"]) <= 0.001
    assert any((tmp_path / "cache" / "tensorrt").glob("*.engine"))
