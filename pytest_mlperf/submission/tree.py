"""The submission tree ``{division}/{submitter}/...`` planned from a results file, then written atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_mlperf.errors import MLPerfError
from pytest_mlperf.submission import checks, system
from pytest_mlperf.submission.reproduce import reproduce

PERFORMANCE_FILES = ("mlperf_log_detail.txt", "mlperf_log_summary.txt")
ACCURACY_FILES = ("accuracy.txt", "mlperf_log_accuracy.json", "mlperf_log_detail.txt", "mlperf_log_summary.txt")
#: Compliance folders carry everything the verification wrote except LoadGen's trace (not part of a submission).
_LEFT_OUT = frozenset({"mlperf_log_trace.json", "audit.config"})
#: The checker's folder for the code per version: ``code`` up to v5.1, ``src`` since v6.0.
CODE_DIRS = {"v5.0": "code", "v5.1": "code", "v6.0": "src", "v6.1": "src"}


class SubmissionRefused(MLPerfError):
    """The results cannot make a tree the checker accepts; ``problems`` names each reason."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Request:
    """What the user asked for on the command line."""

    results: Path
    division: str
    submitter: str
    system_yaml: Path
    out: Path
    version: str = "v6.1"
    model_map: Mapping[str, str] = field(default_factory=dict)
    allow_short_runs: bool = False


@dataclass
class Plan:
    """Every file of the tree: its path under ``out`` and either the file it copies or its text."""

    root: Path  # out/{division}/{submitter}
    files: dict[str, Path | str] = field(default_factory=dict)
    missing_fields: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"submission tree {self.root} ({len(self.files)} files):"]
        for rel, source in sorted(self.files.items()):
            origin = f"copy of {source}" if isinstance(source, Path) else f"written ({len(source.encode())} bytes)"
            lines.append(f"  {rel}  <- {origin}")
        lines += [f"still to fill in: {field}" for field in self.missing_fields]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def _log_dir(run: Mapping[str, Any], results: Path) -> Path:
    path = Path(str(run.get("log_dir")))
    return path if path.is_absolute() else results.parent / path


def _copy(plan: Plan, problems: list[str], target: str, source: Path, run_id: Any) -> None:
    if source.is_file() and not source.is_symlink():
        plan.files[target] = source
    else:
        problems.append(f"{run_id}: {source} is missing; the LoadGen logs must stay next to the results file "
                        "(log_dir is relative to it)")


def _readme(document: Mapping[str, Any], entry: checks.Entry, results: Path) -> str:
    lines = [f"# {entry.benchmark} {entry.scenario}: how to reproduce", "",
             f"Model `{entry.model}`, measured with pytest-mlperf. mlperf.conf is the one built into LoadGen "
             f"{(document.get('versions') or {}).get('loadgen', '')}; `user.conf` here holds every setting applied "
             "after it.", ""]
    for label, run in (("Performance run", entry.performance), ("Accuracy run", entry.accuracy)):
        if run is not None:
            lines += [f"## {label}", "", "```sh", reproduce(document, run, results.name).render().rstrip("\n"),
                      "```", ""]
    return "\n".join(lines)


def _code_readme(document: Mapping[str, Any], items: Sequence[checks.Entry], results: Path) -> str:
    first = next(run for e in items for run in (e.performance, e.accuracy) if run is not None)
    rep = reproduce(document, first, results.name)
    lines = [f"# {items[0].benchmark}: the code", "",
             "The benchmark ran as pytest cases of [pytest-mlperf](https://pypi.org/project/pytest-mlperf/), which "
             "drives MLCommons LoadGen. Install the same software:", "", "```sh", rep.pip, "```", "",
             "Each scenario's folder under `results/` has a README.md with the exact command of each run:", ""]
    lines += [f"- {e.scenario}: `{' '.join(reproduce(document, e.performance, results.name).pytest)}`"
              for e in items if e.performance is not None]
    return "\n".join(lines) + "\n"


def plan(request: Request, document: Mapping[str, Any]) -> Plan:
    """The tree for *request*, or SubmissionRefused listing every problem the checker would have."""
    if request.division not in checks.DIVISIONS:
        raise SubmissionRefused([f"--division {request.division!r}: use closed or open"])
    code_dir = CODE_DIRS.get(request.version)
    if code_dir is None:
        raise SubmissionRefused([f"--version {request.version!r}: use one of {', '.join(CODE_DIRS)}"])
    user = system.read_system_yaml(request.system_yaml)
    runs = [r for r in document.get("runs") or [] if isinstance(r, Mapping)]
    problems: list[str] = []
    if not runs:
        problems.append(f"{request.results}: no runs")
    system_type = user.get("system_type")
    if system_type not in checks.SYSTEM_TYPES:
        problems.append(f"{request.system_yaml}: system_type is {system_type!r}; give one of "
                        f"{', '.join(checks.SYSTEM_TYPES)} (it decides the scenarios the checker requires)")
    mapping = dict(request.model_map)
    if request.division == "closed" and mapping:
        problems.append("--model-map is for the open division; the closed division runs the benchmarks' own models")
    items, found = checks.entries(runs, mapping)
    problems += found
    problems += checks.problems(items, request.division, system_type if isinstance(system_type, str) else None,
                                version=request.version, allow_short=request.allow_short_runs)
    system_id = request.system_yaml.stem
    plan = Plan(root=request.out / request.division / request.submitter)
    described, plan.missing_fields = system.system_json(document, runs, user, request.division, request.submitter)
    plan.files[f"systems/{system_id}.json"] = json.dumps(described, indent=2) + "\n"
    for benchmark in sorted({e.benchmark for e in items}):
        mine = [e for e in items if e.benchmark == benchmark]
        plan.files[f"{code_dir}/{benchmark}/README.md"] = _code_readme(document, mine, request.results)
    for entry in items:
        base = f"results/{system_id}/{entry.benchmark}/{entry.scenario}"
        if entry.performance is not None:
            logs = _log_dir(entry.performance, request.results)
            for name in PERFORMANCE_FILES:
                _copy(plan, problems, f"{base}/performance/run_1/{name}", logs / name, entry.performance.get("id"))
            conf = entry.performance.get("conf") or {}
            applied = conf.get("applied_user_conf")
            plan.files[f"{base}/user.conf"] = (
                applied if isinstance(applied, str) and applied.strip()
                else "# no setting beyond LoadGen's built-in mlperf.conf\n"
            )
            for test, result in sorted((entry.performance.get("compliance") or {}).items()):
                folder = logs / str(result.get("log_dir")) if isinstance(result, Mapping) else None
                if folder is None or not folder.is_dir():
                    problems.append(f"{entry.performance.get('id')}: the {test} folder {folder} is missing")
                    continue
                for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in _LEFT_OUT):
                    rel = path.relative_to(folder).as_posix()
                    if rel.startswith("performance/") and path.name not in PERFORMANCE_FILES:
                        continue  # as the official scripts copy them: the two logs of the run
                    plan.files[f"{base}/{test}/{rel}"] = path
        if entry.accuracy is not None:
            logs = _log_dir(entry.accuracy, request.results)
            for name in ACCURACY_FILES:
                _copy(plan, problems, f"{base}/accuracy/{name}", logs / name, entry.accuracy.get("id"))
        values, missing = system.measurements(user, entry.model)
        plan.missing_fields += [f"{base}/measurements.json: {key} (SYSTEM.yaml `measurements:`)" for key in missing]
        plan.files[f"{base}/measurements.json"] = json.dumps(values, indent=2) + "\n"
        plan.files[f"{base}/README.md"] = _readme(document, entry, request.results)
        if entry.extra:
            plan.notes.append(f"{entry.benchmark} {entry.scenario}: the first repeat is submitted; left out "
                              f"{len(entry.extra)} more run(s)")
    if request.division == "open":
        renamed = {e.model: e.benchmark for e in items if e.model != e.benchmark}
        if renamed:
            plan.files["model_mapping.json"] = json.dumps(renamed, indent=2, sort_keys=True) + "\n"
    if problems:
        raise SubmissionRefused(problems)
    truncate_accuracy_logs(plan)
    return plan


#: The official truncate_accuracy_log.py keeps this much of each end of an accuracy log.
VIEWABLE_BYTES = 4096


def truncate_accuracy_logs(plan: Plan) -> None:
    """What the mandatory ``truncate_accuracy_log.py`` does, done here: each accuracy folder's
    ``mlperf_log_accuracy.json`` (the scenario's, and TEST01's sampled one) keeps its first and last 4 KiB, and its
    ``accuracy.txt`` gains ``hash=<sha256>`` of the whole log. The whole logs stay in the session's log folder,
    which each README names."""
    import hashlib

    for rel in sorted(plan.files):
        # The tool walks the scenario's accuracy folder and TEST01's; other compliance tests keep no accuracy log.
        if not rel.endswith("/accuracy/mlperf_log_accuracy.json"):
            continue
        owner = rel.split("/")[-3]
        if owner.startswith("TEST") and owner != "TEST01":
            continue
        source = plan.files[rel]
        data = source.read_bytes() if isinstance(source, Path) else source.encode("utf-8")
        if len(data) >= VIEWABLE_BYTES:
            data = data[:VIEWABLE_BYTES] + b"\n\n...\n\n" + data[-VIEWABLE_BYTES:]
        txt = rel.rsplit("/", 1)[0] + "/accuracy.txt"
        whole = source.read_bytes() if isinstance(source, Path) else source.encode("utf-8")
        line = f"hash={hashlib.sha256(whole).hexdigest()}\n"
        existing = plan.files.get(txt)
        text = existing.read_text(encoding="utf-8") if isinstance(existing, Path) else (existing or "")
        plan.files[txt] = (text + "\n" + line) if text else line
        plan.files[rel] = data.decode("utf-8", errors="replace")


def write(plan: Plan) -> None:
    """Write the tree into a new folder next to its place and move it there whole: never a half tree, never over
    an existing one."""
    if plan.root.exists():
        raise MLPerfError(f"{plan.root} already exists; remove it or give another --out")
    plan.root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{plan.root.name}.", dir=plan.root.parent))
    try:
        for rel, source in plan.files.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, Path):
                shutil.copyfile(source, target)
            else:
                target.write_text(source, encoding="utf-8")
        os.rename(staging, plan.root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
