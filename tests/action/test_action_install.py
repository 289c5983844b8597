"""The private virtualenv: which one, what goes in, and reuse between jobs on a self-hosted runner."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import yaml

from action.__main__ import main
from action.inputs import InputError, env_name, read_setup_inputs
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


@pytest.mark.parametrize(
    ("package", "expected"),
    [
        ("", "{src}[embedded,gpu]"),
        ("pytest-mlperf==0.1.0", "pytest-mlperf[embedded,gpu]==0.1.0"),
        ("pytest-mlperf", "pytest-mlperf[embedded,gpu]"),
        ("pytest-mlperf @ https://example.org/p.whl", "pytest-mlperf[embedded,gpu] @ https://example.org/p.whl"),
        ("dist/pytest_mlperf-0.1.0-py3-none-any.whl", "dist/pytest_mlperf-0.1.0-py3-none-any.whl[embedded,gpu]"),
    ],
)
def test_extras_go_where_pip_reads_them(tmp_path: Path, package: str, expected: str) -> None:
    spec = package_spec({"INPUT_PACKAGE": package}, tmp_path, ("embedded", "gpu"))
    assert spec == expected.format(src=tmp_path)


def test_an_edited_requirements_file_gets_a_fresh_virtualenv(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("onnxruntime-gpu==1.20.0\n")
    first = venv_dir(tmp_path, "spec", [requirements])
    assert venv_dir(tmp_path, "spec", [requirements]) == first
    assert venv_dir(tmp_path, "spec") != first
    requirements.write_text("onnxruntime-gpu==1.21.0\n")
    assert venv_dir(tmp_path, "spec", [requirements]) != first


def test_setup_inputs_resolve_requirements_in_the_workspace(tmp_path: Path) -> None:
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "gpu.txt").write_text("onnxruntime-gpu\n")
    (tmp_path / "model.txt").write_text("my-model\n")
    chosen = read_setup_inputs(
        {env_name("extras"): "embedded, gpu", env_name("requirements"): "ci/gpu.txt model.txt"}, tmp_path
    )
    assert chosen.environment == "private"
    assert chosen.extras == ("embedded", "gpu")
    assert chosen.requirements == (tmp_path / "ci" / "gpu.txt", tmp_path / "model.txt")


AS_IT_IS = "input `environment: job` runs the job's Python as it is"


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"environment": "system"}, "input `environment`: 'system' is not one of private, job"),
        ({"extras": "embedded,[gpu]"}, "input `extras`: '[gpu]' is not an extra's name"),
        ({"requirements": "missing.txt"}, "input `requirements`: no such file {ws}/missing.txt"),
        ({"environment": "job", "extras": "embedded"}, f"{AS_IT_IS}, so `extras`"),
        ({"environment": "job", "package": "pytest-mlperf==1"}, f"{AS_IT_IS}, so `package`"),
        ({"extras": "gpu", "package": "pytest-mlperf[embedded]"}, "input `extras` and a `package` with [extras]"),
    ],
)
def test_bad_setup_inputs_name_the_input_and_the_fix(tmp_path: Path, inputs: dict[str, str], expected: str) -> None:
    with pytest.raises(InputError) as info:
        read_setup_inputs({env_name(k): v for k, v in inputs.items()}, tmp_path)
    assert str(info.value).startswith(expected.format(ws=tmp_path))


def test_every_input_reaches_python_as_an_environment_variable() -> None:
    doc = yaml.safe_load((REPO_ROOT / "action.yml").read_text(encoding="utf-8"))
    passed = {name for step in doc["runs"]["steps"] for name in (step.get("env") or {})}
    # Read by the composite steps themselves, never by Python.
    by_yaml = {"upload-artifact"}
    assert {env_name(name) for name in doc["inputs"] if name not in by_yaml} <= passed


def make_wheel(folder: Path, name: str, module: str) -> Path:
    """A minimal pure-Python wheel built by hand, so that pip installs it with no index and no build backend."""
    files = {
        f"{module}.py": f"NAME = {name!r}\n",
        f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{name}-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{name}-1.0.dist-info/RECORD,,")
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
        zf.writestr(f"{name}-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel


def test_private_environment_installs_the_package_and_the_requirements(runner: Runner, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    plugin = make_wheel(tmp_path / "wheels", "stand_in_plugin", "stand_in_plugin")
    make_wheel(workspace / "vendor", "model_dep", "model_dep")
    # A path relative to the workspace: pip must run there to find it.
    (workspace / "requirements.txt").write_text("./vendor/model_dep-1.0-py3-none-any.whl\n")
    runner.monkeypatch.setenv("GITHUB_WORKSPACE", str(workspace))
    runner.monkeypatch.setenv("PIP_NO_INDEX", "1")  # a real pip install, but never of anything from the network
    runner.inputs(venv_dir=str(tmp_path / "venvs"), package=str(plugin), requirements="requirements.txt")
    assert main(["setup"]) == 0
    python = runner.outputs()["python"]
    assert Path(python).parent.parent.parent == tmp_path / "venvs"
    out = subprocess.run(
        [python, "-c", "import stand_in_plugin, model_dep; print(stand_in_plugin.NAME, model_dep.NAME)"],
        capture_output=True, text=True, check=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert out.stdout.split() == ["stand_in_plugin", "model_dep"]


def test_job_environment_uses_the_jobs_python_as_it_is(runner: Runner, tmp_path: Path) -> None:
    runner.monkeypatch.setenv("GITHUB_WORKSPACE", str(REPO_ROOT))
    runner.monkeypatch.setenv("RUNNER_TOOL_CACHE", str(tmp_path / "toolcache"))
    runner.inputs(environment="job")
    assert main(["setup"]) == 0
    assert runner.outputs() == {"python": sys.executable}
    assert not (tmp_path / "toolcache").exists()  # no virtualenv made, nothing installed


@pytest.mark.skipif(os.name == "nt", reason="the bare virtualenv's layout is POSIX")
def test_job_environment_without_the_plugin_fails_with_the_fix(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    venv.EnvBuilder(with_pip=False).create(bare)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_", "PYTHON"))}
    env.update(INPUT_ENVIRONMENT="job", GITHUB_WORKSPACE=str(workspace), GITHUB_OUTPUT=str(tmp_path / "out"))
    # The Action's folder is the working directory, as in action.yml: the check must not be fooled by the plugin
    # source lying there.
    proc = subprocess.run(
        [str(venv_python(bare)), "-m", "action", "setup"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "::error title=pytest-mlperf setup::`environment: job` runs" in proc.stdout
    assert "cannot import pytest-mlperf (ModuleNotFoundError: No module named 'pytest_mlperf')" in proc.stdout
    assert "or use `environment: private`" in proc.stdout
    assert not (tmp_path / "out").exists()
