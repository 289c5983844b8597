"""Shared test fixtures: a pytester project pre-loaded with the tiny model conftest."""

from __future__ import annotations

from pathlib import Path

# pytester's in-process runs restore sys.modules afterwards; a pybind11 extension such as onnx aborts the
# interpreter when imported a second time, so import the native modules here, before any snapshot is taken.
import mlperf_loadgen  # noqa: F401
import onnx  # noqa: F401
import onnxruntime  # noqa: F401
import pytest

TINY_CONFTEST = Path(__file__).with_name("tiny_conftest.py")


def _load_tiny_module() -> None:
    """Expose tiny_conftest.py as ``tiny_conftest_module`` so tests can build models outside pytester."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("tiny_conftest_module", TINY_CONFTEST)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tiny_conftest_module"] = module
    spec.loader.exec_module(module)


_load_tiny_module()

#: Short runs keep the suite fast; LoadGen still decides validity on them.
FAST = ["--mlperf-min-duration-ms=200", "-p", "no:cacheprovider"]


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(TINY_CONFTEST.read_text())
    pytester.makeini("[pytest]\n")
    return pytester
