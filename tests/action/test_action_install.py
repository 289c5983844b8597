"""The private virtualenv: which one, what goes in, and reuse between jobs on a self-hosted runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from action.__main__ import main
from action.install import COMPLETE, REPORT_REQUIREMENTS, package_spec, venv_dir, venv_python, venv_root

from .conftest import REPO_ROOT, Runner


def test_root_prefers_the_input_then_the_tool_cache(tmp_path: Path) -> None:
    assert venv_root({"INPUT_VENV_DIR": str(tmp_path / "v"), "RUNNER_TOOL_CACHE": "/opt/tc"}) == tmp_path / "v"
    assert venv_root({"RUNNER_TOOL_CACHE": "/opt/tc"}) == Path("/opt/tc/pytest-mlperf")
    assert venv_root({}) == Path.home() / ".cache" / "pytest-mlperf" / "action"


def test_spec_is_the_actions_source_unless_a_package_is_named(tmp_path: Path) -> None:
    assert package_spec({}, tmp_path) == str(tmp_path)
    assert package_spec({"INPUT_PACKAGE": "pytest-mlperf==0.1.0"}, tmp_path) == "pytest-mlperf==0.1.0"
    # The reporter never installs the plugin (nor onnxruntime): it only talks to the API.
    assert package_spec({"INPUT_COMMAND": "report", "INPUT_PACKAGE": "x"}, tmp_path) == REPORT_REQUIREMENTS


def test_each_spec_gets_its_own_virtualenv(tmp_path: Path) -> None:
    a, b = venv_dir(tmp_path, "pytest-mlperf==0.1.0"), venv_dir(tmp_path, "pytest-mlperf==0.2.0")
    assert a != b and a.parent == b.parent == tmp_path
    assert venv_dir(tmp_path, "pytest-mlperf==0.1.0") == a


@pytest.mark.skipif(os.name == "nt", reason="a shell script stands in for the interpreter")
def test_complete_virtualenv_is_reused_without_running_pip(runner: Runner, tmp_path: Path) -> None:
    spec = "pytest-mlperf==0.1.0"
    target = venv_dir(tmp_path / "venvs", spec)
    python = venv_python(target)
    python.parent.mkdir(parents=True)
    # Any call of this interpreter (pip included) would fail the setup: reuse must not call it.
    python.write_text("#!/bin/sh\nexit 1\n")
    python.chmod(0o755)
    (target / COMPLETE).write_text(spec + "\n")
    runner.monkeypatch.chdir(REPO_ROOT)
    runner.inputs(venv_dir=str(tmp_path / "venvs"), package=spec)
    assert main(["setup"]) == 0
    assert runner.outputs() == {"python": str(python)}
