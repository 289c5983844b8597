"""Creates, or reuses, the Action's private virtualenv with pytest-mlperf installed, and outputs its Python.

On a self-hosted runner the virtualenv lives in the tool cache and survives between jobs, so a run pays the
install of onnxruntime and LoadGen once per (interpreter, package) pair, not once per job. Standard library only:
this runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from action.github_io import GitHubIO

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


def package_spec(environ: Mapping[str, str], action_dir: Path) -> str:
    """What pip installs: the reporter needs only requests; run mode needs the plugin (the Action's own source)."""
    if environ.get("INPUT_COMMAND", "run").strip() == "report":
        return REPORT_REQUIREMENTS
    return environ.get("INPUT_PACKAGE", "").strip() or str(action_dir)


def venv_dir(root: Path, spec: str) -> Path:
    # One virtualenv per interpreter and spec: a new Python or a new Action release never reuses a stale one.
    key = hashlib.sha256(f"{sys.version}\n{sys.executable}\n{spec}".encode()).hexdigest()[:16]
    return root / f"venv-{key}"


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


def ensure_venv(io: GitHubIO, root: Path, spec: str) -> Path:
    """The Python of a virtualenv with ``spec`` installed, reusing a complete one."""
    target = venv_dir(root, spec)
    python = venv_python(target)
    # A local source tree may have changed under the same path, so it is reinstalled every time (pip is quick
    # when the dependencies are already there); a released package is trusted once installed.
    local = Path(spec).is_dir()
    with _locked(target.with_suffix(".lock")):
        complete = (target / COMPLETE).is_file() and python.is_file()
        if complete and not local:
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
        with io.group(f"pip install {spec}"):
            proc = subprocess.run(
                [str(python), "-m", "pip", "install", "--disable-pip-version-check", spec],
                stdin=subprocess.DEVNULL, check=False,
            )
        if proc.returncode != 0:
            raise SetupError(
                f"`pip install {spec}` failed in {target} (exit {proc.returncode}); see the log group above. "
                "On an offline runner, set PIP_INDEX_URL or PIP_FIND_LINKS in the job's env"
            )
        (target / COMPLETE).write_text(spec + "\n", encoding="utf-8")
    return python


def setup_main(io: GitHubIO, environ: Mapping[str, str], action_dir: Path) -> int:
    try:
        python = ensure_venv(io, venv_root(environ), package_spec(environ, action_dir))
    except SetupError as exc:
        io.error(str(exc), title="pytest-mlperf setup")
        return 1
    io.set_output("python", str(python))
    return 0
