"""Makes the environment pytest-mlperf runs in (a private virtualenv, or the job's Python) and outputs its Python.

On a self-hosted runner the virtualenv lives in the tool cache and survives between jobs, so a run pays the
install of onnxruntime and LoadGen once per (interpreter, package) pair, not once per job. Standard library only:
this runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from action.github_io import GitHubIO
from action.inputs import read_setup_inputs

COMPLETE = ".pytest-mlperf-complete"
REPORT_REQUIREMENTS = "requests>=2.31"


class SetupError(RuntimeError):
    """The virtualenv could not be made; the message says what to install or change."""


def venv_root(environ: Mapping[str, str]) -> Path:
    """``venv-dir`` if given, else the runner's tool cache (kept between jobs), else the user cache."""
    if environ.get("INPUT_VENV_DIR"):
        return Path(environ["INPUT_VENV_DIR"]).expanduser()
    if environ.get("RUNNER_TOOL_CACHE"):
        return Path(environ["RUNNER_TOOL_CACHE"]) / "pytest-mlperf"
    return Path.home() / ".cache" / "pytest-mlperf" / "action"


def package_spec(environ: Mapping[str, str], action_dir: Path, extras: Sequence[str] = ()) -> str:
    """What pip installs: the reporter needs only requests; run mode needs the plugin (the Action's own source)."""
    if environ.get("INPUT_COMMAND", "run").strip() == "report":
        return REPORT_REQUIREMENTS
    spec = environ.get("INPUT_PACKAGE", "").strip() or str(action_dir)
    if not extras:
        return spec
    # A requirement takes the extras after the project name (`pytest-mlperf[embedded]==1.0`); a path or a file
    # (`./dist/pytest_mlperf-1.0-py3-none-any.whl`) takes them at the end, as pip reads both.
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*(?=\s*(?:[=<>!~;@]|$))", spec)
    end = name.end() if name else len(spec)
    return f"{spec[:end]}[{','.join(extras)}]{spec[end:]}"


def venv_dir(root: Path, spec: str, requirements: Sequence[Path] = ()) -> Path:
    # One virtualenv per interpreter, spec and requirements' content: a new Python, a new Action release or an
    # edited requirements file never reuses a stale one.
    digest = hashlib.sha256(f"{sys.version}\n{sys.executable}\n{spec}".encode())
    for path in requirements:
        digest.update(b"\n" + path.read_bytes())
    return root / f"venv-{digest.hexdigest()[:16]}"


def venv_python(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serializes setup across jobs of several runners that share one tool cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            import fcntl
        except ImportError:  # Windows: runners there rarely share a tool cache; go unlocked
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _is_local(spec: str) -> bool:
    return Path(re.sub(r"\[[^\]]*\]$", "", spec)).is_dir()


def ensure_venv(
    io: GitHubIO, root: Path, spec: str, requirements: Sequence[Path] = (), *, cwd: Path | None = None
) -> Path:
    """The Python of a virtualenv with ``spec`` and the ``requirements`` files installed, reusing a complete one.

    pip runs in ``cwd`` (the workspace), where a requirements file's relative paths (``./my-model``) point.
    """
    target = venv_dir(root, spec, requirements)
    python = venv_python(target)
    # A local source tree may have changed under the same path, and a requirements file may name local paths or
    # loose versions, so those are reinstalled every time (pip is quick when the dependencies are already there);
    # a released package alone is trusted once installed.
    reinstall = _is_local(spec) or bool(requirements)
    with _locked(target.with_suffix(".lock")):
        complete = (target / COMPLETE).is_file() and python.is_file()
        if complete and not reinstall:
            io.log(f"Reusing {target} ({spec})")
            return python
        if not complete:
            shutil.rmtree(target, ignore_errors=True)
            io.log(f"Creating {target}")
            try:
                venv.EnvBuilder(with_pip=True, clear=True).create(target)
            except (OSError, subprocess.CalledProcessError) as exc:
                raise SetupError(
                    f"cannot create a virtualenv at {target} with {sys.executable} ({exc}); install the venv "
                    "module (Debian: python3-venv) or point the `python` input at another interpreter"
                ) from None
        (target / COMPLETE).unlink(missing_ok=True)
        # One pip call, so that one resolver sees the plugin's and the user's requirements together.
        args = [spec, *(arg for path in requirements for arg in ("-r", str(path)))]
        with io.group(f"pip install {' '.join(args)}"):
            proc = subprocess.run(
                [str(python), "-m", "pip", "install", "--disable-pip-version-check", *args],
                stdin=subprocess.DEVNULL, check=False, cwd=cwd,
            )
        if proc.returncode != 0:
            raise SetupError(
                f"`pip install {' '.join(args)}` failed in {target} (exit {proc.returncode}); see the log group "
                "above. On an offline runner, set PIP_INDEX_URL or PIP_FIND_LINKS in the job's env"
            )
        (target / COMPLETE).write_text(spec + "\n", encoding="utf-8")
    return python


def check_job_python(io: GitHubIO, workspace: Path) -> Path:
    """``environment: job``: this interpreter, as it is, once it is known to import pytest and the plugin."""
    python = Path(sys.executable)
    # A child in the workspace, not this process: `-m action` put the Action's own folder first on sys.path,
    # where pytest_mlperf would be found even when the job never installed it.
    proc = subprocess.run(
        [str(python), "-c", "import pytest_mlperf, pytest; print(pytest_mlperf.__file__)"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, cwd=workspace,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SetupError(
            f"`environment: job` runs {python} as it is, but it cannot import pytest-mlperf ({last}); install it "
            "in an earlier step (`pip install pytest-mlperf` or `pip install -e .`), or point the `python` input "
            "at the interpreter that has it, or use `environment: private`"
        )
    io.log(f"Using the job's Python as it is: {python} (pytest-mlperf from {proc.stdout.strip()})")
    return python


def setup_main(io: GitHubIO, environ: Mapping[str, str], action_dir: Path) -> int:
    workspace = io.context.workspace
    try:
        if environ.get("INPUT_COMMAND", "run").strip() == "report":
            # The reporter never runs the user's code: its own small environment, whatever the inputs say.
            python = ensure_venv(io, venv_root(environ), REPORT_REQUIREMENTS)
        else:
            chosen = read_setup_inputs(environ, workspace)
            if chosen.environment == "job":
                python = check_job_python(io, workspace)
            else:
                spec = package_spec(environ, action_dir, chosen.extras)
                python = ensure_venv(io, venv_root(environ), spec, chosen.requirements, cwd=workspace)
    except SetupError as exc:
        io.error(str(exc), title="pytest-mlperf setup")
        return 1
    io.set_output("python", str(python))
    return 0
