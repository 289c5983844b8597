"""The plugin loads in every pytest run of an environment that has it: it must not drag in the heavy stack."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pytest_mlperf


def test_loading_the_plugin_imports_no_numerical_stack() -> None:
    code = (
        "import sys, pytest_mlperf.plugin\n"
        "print(','.join(m for m in ('numpy', 'mlperf_loadgen', 'onnxruntime', 'onnx', 'yaml', 'requests', 'scipy')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_public_names_resolve() -> None:
    assert sorted(pytest_mlperf.__all__) == sorted(pytest_mlperf._EXPORTS)
    for name in pytest_mlperf.__all__:
        assert getattr(pytest_mlperf, name) is not None
    with pytest.raises(AttributeError, match="NotAThing"):
        pytest_mlperf.NotAThing  # noqa: B018
