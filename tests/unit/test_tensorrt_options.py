"""The TensorRT backend's parts that need no GPU: lazy import, option errors, engine cache key, chunked runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_mlperf.backends.base import BackendOptions, run_in_chunks
from pytest_mlperf.backends.tensorrt import BuildOptions, TensorRtBackend, engine_cache_key
from pytest_mlperf.errors import ModelError


def test_the_module_imports_without_importing_tensorrt() -> None:
    code = "import sys, pytest_mlperf.backends.tensorrt; assert 'tensorrt' not in sys.modules, 'imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((("precision", "fp8"),), r"tensorrt\.precision=fp8: use one of fp32, fp16, int8"),
        ((("workspace_mib", "0"),), r"tensorrt\.workspace_mib=0: give a whole number of MiB"),
        ((("workspace_mib", "lots"),), r"tensorrt\.workspace_mib=lots: give a whole number of MiB"),
        ((("device", "-1"),), r"tensorrt\.device=-1: give a CUDA device index"),
        ((("threads", "2"),), r"no option 'threads'; it reads: precision=fp32\|fp16\|int8"),
    ],
)
def test_a_bad_option_is_a_clear_error_even_without_tensorrt(
    tmp_path: Path, extra: tuple[tuple[str, str], ...], message: str
) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    with pytest.raises(ModelError, match=message):
        TensorRtBackend(model, BackendOptions(extra=extra))


def test_a_model_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m.pt"
    model.write_bytes(b"torch")
    with pytest.raises(ModelError, match=r"builds its engine from an ONNX file; .*m\.pt is not one"):
        TensorRtBackend(model, BackendOptions())


def test_build_options_read_the_batch_ceiling_and_defaults() -> None:
    build = BuildOptions.parse(BackendOptions(batch_size=8, extra=(("precision", "fp16"), ("workspace_mib", "512"))))
    assert build == BuildOptions(precision="fp16", workspace_mib=512, max_batch=8, device=0)
    assert BuildOptions.parse(BackendOptions()) == BuildOptions()


def test_the_engine_cache_key_changes_with_everything_that_changes_the_engine() -> None:
    base = engine_cache_key("a" * 64, BuildOptions(), "10.9.0", "NVIDIA H200 sm_90")
    assert base == engine_cache_key("a" * 64, BuildOptions(), "10.9.0", "NVIDIA H200 sm_90")
    others = {
        engine_cache_key("b" * 64, BuildOptions(), "10.9.0", "NVIDIA H200 sm_90"),
        engine_cache_key("a" * 64, BuildOptions(precision="fp16"), "10.9.0", "NVIDIA H200 sm_90"),
        engine_cache_key("a" * 64, BuildOptions(workspace_mib=256), "10.9.0", "NVIDIA H200 sm_90"),
        engine_cache_key("a" * 64, BuildOptions(max_batch=64), "10.9.0", "NVIDIA H200 sm_90"),
        engine_cache_key("a" * 64, BuildOptions(), "10.10.0", "NVIDIA H200 sm_90"),
        engine_cache_key("a" * 64, BuildOptions(), "10.9.0", "NVIDIA L4 sm_89"),
    }
    assert base not in others and len(others) == 6


@pytest.mark.parametrize("pad", [False, True])
def test_run_in_chunks_splits_pads_and_trims(pad: bool) -> None:
    seen: list[int] = []

    def double(batch: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert isinstance(batch, np.ndarray)
        seen.append(len(batch))
        return {"y": batch * 2}

    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    out = run_in_chunks(double, x, 4, pad=pad)
    np.testing.assert_array_equal(out["y"], x * 2)
    assert seen == ([4, 4, 4] if pad else [4, 4, 2])
