"""The plugin loads in every pytest run of an environment that has it: it must not drag in the heavy stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


HEAVY = ("numpy", "mlperf_loadgen", "onnxruntime", "onnx", "scipy", "requests", "yaml", "urllib3", "filelock")

RECORD_MODULES = """
import json, os, sys

def pytest_sessionfinish(session):
    with open(os.environ["MODULES_OUT"], "w") as fh:
        json.dump(sorted(sys.modules), fh)
"""


def test_a_plain_pytest_run_with_the_plugin_installed_imports_no_heavy_stack(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What every pytest run in an environment with pytest-mlperf pays: the entry point loads the plugin, its
    pytest_configure builds the run configuration, and a test unrelated to MLPerf runs."""
    out = tmp_path / "modules.json"
    monkeypatch.setenv("MODULES_OUT", str(out))
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("PYTEST_PLUGINS", raising=False)
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    pytester.makeconftest(RECORD_MODULES)
    pytester.makepyfile("def test_unrelated():\n    assert 1 + 1 == 2\n")
    # A subprocess: this process has the heavy stack loaded already. PYTHONPATH (set by the test command) makes
    # the checkout under test win over the installed copy.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    modules = set(json.loads(out.read_text()))
    assert "pytest_mlperf.plugin" in modules, "the plugin must have been loaded through its pytest11 entry point"
    assert "pytest_mlperf.config" in modules, "its pytest_configure must have run"
    loaded = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert loaded == []


def test_public_names_resolve() -> None:
    assert sorted(pytest_mlperf.__all__) == sorted(pytest_mlperf._EXPORTS)
    for name in pytest_mlperf.__all__:
        assert getattr(pytest_mlperf, name) is not None
    with pytest.raises(AttributeError, match="NotAThing"):
        pytest_mlperf.NotAThing  # noqa: B018
