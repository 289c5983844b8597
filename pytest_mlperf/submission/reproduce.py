"""How to reproduce one recorded run: the pinned pip line, the user.conf it applied and the pytest command line."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_mlperf.config import OPTIONS

#: Options the reproduction sets from the run itself (or drops: where the results and logs go is the reader's).
_FROM_RUN = frozenset({"profile", "scenarios", "mode", "user-conf", "backend", "results", "log-dir"})
_BOOL_FLAGS = frozenset(spec.flag for spec in OPTIONS if spec.kind == "bool")
#: A run's engine -> the distributions that may provide it, by normalised name.
_ENGINE_DISTS = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "openvino": ("openvino",),
    "litert": ("ai-edge-litert",),
    "torch": ("torch",),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "tvm": ("apache-tvm",),
    "tensorrt": ("tensorrt",),
}
USER_CONF_NAME = "user.conf"


@dataclass(frozen=True)
class Reproduction:
    """The three steps that rerun a recorded run, as text a user pastes into a shell."""

    pip: str
    user_conf: str | None
    pytest: list[str]
    notes: list[str]

    def render(self) -> str:
        lines = ["# 1. the software it ran with (pinned from the results file)", self.pip]
        if self.user_conf is not None:
            lines += [f"# 2. the user.conf it applied after mlperf.conf, as ./{USER_CONF_NAME}",
                      f"cat > {USER_CONF_NAME} <<'EOF'", self.user_conf.rstrip("\n"), "EOF"]
        lines += ["# 3. the run", shlex.join(self.pytest)]
        lines += [f"# note: {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def pinned(document: Mapping[str, Any], backend: str | None) -> list[str]:
    """``name==version`` for pytest-mlperf, LoadGen, pytest, numpy and the run's engine, from the document."""
    packages: Mapping[str, Any] = document.get("packages") or {}
    versions: Mapping[str, Any] = document.get("versions") or {}
    wanted: list[tuple[str, str | None]] = [
        ("pytest-mlperf", versions.get("plugin") or packages.get("pytest-mlperf")),
        ("mlcommons-loadgen", versions.get("loadgen") or packages.get("mlcommons-loadgen")),
        ("pytest", packages.get("pytest")),
        ("numpy", versions.get("numpy") or packages.get("numpy")),
    ]
    for dist in _ENGINE_DISTS.get(backend or "", ()):
        if dist in packages or (dist == backend and versions.get(dist)):
            wanted.append((dist, packages.get(dist) or versions.get(dist)))
            break
    return [f"{name}=={version}" if isinstance(version, str) and version[:1].isdigit() else name
            for name, version in wanted]


def carried_options(args: Sequence[str]) -> list[str]:
    """The ``--mlperf-*`` options of the recorded command line, less those the run itself determines."""
    kept: list[str] = []
    position = 0
    while position < len(args):
        arg = args[position]
        position += 1
        if not arg.startswith("--mlperf-"):
            continue
        flag, has_value, _ = arg.partition("=")
        takes_value = not has_value and flag not in _BOOL_FLAGS
        value = [args[position]] if takes_value and position < len(args) else []
        position += len(value)
        if flag[len("--mlperf-"):] in _FROM_RUN:
            continue
        kept += [arg, *value]
    return kept


def reproduce(document: Mapping[str, Any], run: Mapping[str, Any], results_name: str) -> Reproduction:
    """The reproduction of *run* (one entry of ``document["runs"]``)."""
    invocation: Mapping[str, Any] = document.get("invocation") or {}
    conf: Mapping[str, Any] = run.get("conf") or {}
    user: Mapping[str, Any] | None = conf.get("user_conf")
    notes: list[str] = []
    node = str(run.get("id", ""))
    if node.startswith("::"):
        notes.append("the case's file lay outside pytest's rootdir, so its id has no path: give the file before ::")
    command = ["python", "-m", "pytest", node,
               f"--mlperf-profile={run.get('profile')}", f"--mlperf-scenarios={run.get('scenario')}",
               f"--mlperf-mode={run.get('mode')}"]
    args = [str(a) for a in invocation.get("args") or []]
    carried = carried_options(args)
    if not any(a.startswith("--mlperf-backends") for a in carried):
        command.append(f"--mlperf-backend={run.get('backend')}")
    if user is not None:
        command.append(f"--mlperf-user-conf={USER_CONF_NAME}")
    command += carried
    if run.get("profile") == "smoke" and run.get("mode") == "performance" and run.get("scenario") in (
        "Server", "Offline"
    ) and not any(a.startswith("--mlperf-reuse-load") for a in carried):
        # The smoke profile calibrates the load; reusing the recorded target puts the rerun under the same load.
        command.append(f"--mlperf-reuse-load={results_name}")
    if not invocation:
        notes.append("this results file predates recorded command lines: options beyond the run's own (engine "
                     "options, thresholds) are not known")
    else:
        notes.append(f"run it in {invocation.get('dir')} (pytest's rootdir was {invocation.get('rootdir')})")
        if invocation.get("inifile"):
            notes.append(f"the session also read the ini file {invocation.get('inifile')}: use the same one")
    commit = document.get("commit")
    if isinstance(commit, Mapping) and commit.get("sha"):
        dirty = " (its working tree had uncommitted changes)" if commit.get("dirty") else ""
        notes.append(f"the suite was at commit {commit.get('sha')}{dirty}: git checkout {commit.get('sha')}")
    python = (document.get("versions") or {}).get("python")
    if python:
        notes.append(f"it ran on Python {python}")
    applied = conf.get("applied_user_conf")
    user_text = user.get("text") if user is not None else None
    if isinstance(applied, str) and applied.strip() and applied != (user_text or ""):
        notes.append("the options above also set these settings after the user.conf: "
                     + "; ".join(line for line in applied.splitlines()
                                 if line and not line.startswith("#") and line not in (user_text or "")))
    pip = "pip install " + " ".join(shlex.quote(p) for p in pinned(document, run.get("backend")))
    return Reproduction(pip=pip, user_conf=user_text if isinstance(user_text, str) else None, pytest=command,
                        notes=notes)


def select_runs(document: Mapping[str, Any], case: str | None) -> list[Mapping[str, Any]]:
    """The runs of *case* (a node id, or the part after ``::``), or every run; ValueError naming the choices."""
    runs = [run for run in document.get("runs") or [] if isinstance(run, Mapping)]
    if case is None:
        return runs
    chosen = [run for run in runs if run.get("id") == case or str(run.get("id", "")).split("::")[-1] == case]
    if not chosen:
        ids = sorted({str(run.get("id")) for run in runs})
        shown = ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else "")
        raise ValueError(f"no run with id {case!r}; the file has: {shown or 'no runs'}")
    return chosen
