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

#: Short runs keep the suite fast; LoadGen still decides validity on them.
FAST = ["--mlperf-min-duration-ms=200", "-p", "no:cacheprovider"]


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(TINY_CONFTEST.read_text())
    pytester.makeini("[pytest]\n")
    return pytester
