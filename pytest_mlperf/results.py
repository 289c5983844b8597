"""Result dataclasses and the atomic, versioned results JSON: its schema, writer and reader."""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_mlperf.errors import MLPerfError

SCHEMA_VERSION = 2
SCHEMA_RESOURCE = "results.schema.json"


@dataclass
class Metrics:
    """What a run measured; latencies in ns at the standard percentiles, accuracy as fractions."""

    qps: float | None = None
    latency_ns: dict[str, int] | None = None
    accuracy: dict[str, float] | None = None


@dataclass
class RunResult:
    """One LoadGen run of one case; ``to_dict`` is its entry in ``runs[]``."""

    id: str
    model: str
    model_sha256: str | None
    dataset: dict[str, Any]
    backend: str
    backend_options: dict[str, Any]
    scenario: str
    mode: str
    profile: str
    settings: dict[str, Any]
    overrides: dict[str, Any]
    metrics: Metrics
    thresholds: dict[str, Any]
    valid: bool | None
    passed: bool
    reasons: list[str]
    log_dir: str
    duration_s: float
    repeat: int = 0
    #: The task that scored the run: ``{"name", "metric", "higher_is_better"}``; ``metric`` names the primary
    #: key of ``metrics.accuracy``.
    task: dict[str, Any] = field(default_factory=lambda: {"name": "classification", "metric": "top1",
                                                          "higher_is_better": True})
    #: A model that is not a local file (a server URL) is identified by what its backend reports.
    model_identity: str | None = None
    synthetic_inputs: bool = False
    latency_samples_ns: list[int] | None = None
    validity_reasons: list[str] = field(default_factory=list)
    recommendation: str | None = None
    #: How the SUT batched: Server's ``{"batch_size", "policy", "reason", "samples_per_s"}``; None otherwise.
    sut: dict[str, Any] | None = None
    #: Why the run did not do all of its work (``"RuntimeError: ..."``: its inference, warm-up or sample loading
    #: raised); None for a run that did. Such a run has no figures and is never compared or exported.
    error: str | None = None
    #: ``--mlperf-find-peak``: the peak found, the latency bound it held to and every point tried
    #: (:mod:`pytest_mlperf.findpeak`); None otherwise.
    find_peak: dict[str, Any] | None = None
    #: ``--mlperf-sweep``: the configuration this run used, key -> value as given; None without a sweep.
    sweep: dict[str, str] | None = None
    #: What configured LoadGen: ``{"mlperf_conf": {source, loadgen, model_name}, "user_conf": {path, sha256, text}
    #: or None, "applied_user_conf": text}`` (the user.conf reproducing every setting applied after mlperf.conf).
    conf: dict[str, Any] | None = None
    #: --mlperf-compliance: ``{"TEST01": {"passed", "reasons", "log_dir"}, ...}`` (log_dir relative to the run's).
    compliance: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def primary_latency_ns(self) -> float | None:
        """The latency the scenario is judged by (p90 SingleStream, p99 MultiStream/Server)."""
        from pytest_mlperf.rules import LATENCY_PERCENTILE

        key = LATENCY_PERCENTILE.get(self.scenario)
        if key is None or not self.metrics.latency_ns:
            return None
        return self.metrics.latency_ns.get(key)

    def explain(self) -> str:
        """Every unmet condition, one per line, for assertion messages."""
        head = f"{self.id}: {self.scenario} {self.mode} run"
        if self.passed:
            return f"{head} passed"
        return head + " failed:\n" + "\n".join(f"  - {reason}" for reason in self.reasons)


def schema() -> dict[str, Any]:
    """The packaged JSON Schema of the results document."""
    text = resources.files("pytest_mlperf").joinpath("schema", SCHEMA_RESOURCE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def new_document(
    cwd: Path, update_machine: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """The envelope of a session's results, without runs; *update_machine* may add to the machine section."""
    from pytest_mlperf.provenance import commit_info, installed_packages, machine_info, versions

    machine = machine_info()
    if update_machine is not None:
        update_machine(machine)
    return {
        "schema_version": SCHEMA_VERSION,
        "datetime": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "partial",
        "versions": versions(),
        "packages": installed_packages(),
        "machine": machine,
        "commit": commit_info(cwd),
        "runs": [],
    }


def write_json_atomic(path: Path, document: Mapping[str, Any]) -> None:
    """Serialise first, then write atomically: a document that cannot be serialised leaves the old file intact."""
    from pytest_mlperf.fileio import atomic_write

    atomic_write(path, (json.dumps(document, indent=2) + "\n").encode("utf-8"))


# --- the append-only writer -----------------------------------------------------------------------------------


def runs_journal(path: Path) -> Path:
    """Where a session appends its finished runs: ``results.json`` -> ``results.runs.jsonl``."""
    return path.with_name(path.stem + ".runs.jsonl")


class JournaledDocument:
    """A JSON document that grows by one appended line per item, so the bytes written grow with the items.

    Rewriting a whole document after each run costs the square of the runs. Instead the envelope is written once
    (status ``partial``, ``journal`` naming the sidecar), each item becomes one fsynced JSON line in the sidecar,
    and :meth:`finish` writes the whole document atomically and removes the sidecar. A kill at any point leaves
    every appended item readable: :func:`read_document` rebuilds the document from the envelope and the sidecar.
    Without an envelope (the comparison) the sidecar alone holds the items until :meth:`finish`.
    """

    def __init__(self, path: Path, journal: Path) -> None:
        self.path = path
        self.journal = journal
        self.started = False

    def start(self, envelope: Mapping[str, Any] | None, items_key: str = "runs") -> None:
        """Empty the sidecar (a previous session's leftover) and write the envelope that points at it.

        Without an envelope a previous session's document is removed, so that it is never taken for this one's.
        """
        from pytest_mlperf.fileio import atomic_write

        atomic_write(self.journal, b"")
        if envelope is None:
            self.path.unlink(missing_ok=True)
        else:
            write_json_atomic(
                self.path, {**envelope, "status": "partial", "journal": self.journal.name, items_key: []}
            )
        self.started = True

    def append(self, item: Mapping[str, Any]) -> None:
        """One JSON line, flushed and fsynced: a crash after this returns keeps the item."""
        from pytest_mlperf.fileio import append_durably

        append_durably(self.journal, (json.dumps(item, separators=(",", ":")) + "\n").encode("utf-8"))

    def finish(self, document: Mapping[str, Any]) -> None:
        """The whole document, written atomically; only then is the sidecar dropped."""
        write_json_atomic(self.path, document)
        self.journal.unlink(missing_ok=True)


# --- the one reader -------------------------------------------------------------------------------------------

#: Schema versions :func:`read_document` reads; older ones are upgraded in memory to :data:`SCHEMA_VERSION`.
READABLE_VERSIONS = (1, 2)
#: Version 1 knew only classification, judged by top-1 accuracy.
_V1_TASK = {"name": "classification", "metric": "top1", "higher_is_better": True}


class ResultsFileError(MLPerfError, ValueError):
    """A results file that cannot be read; the message names the file and the fix."""


class ResultsVersionError(ResultsFileError):
    """A results file of a schema version this pytest-mlperf does not read; the message says which it reads."""


#: The largest results file any reader opens unless told otherwise: far beyond what a session writes (at most
#: 20,000 latencies per run), small enough that a mistaken or hostile file cannot exhaust memory.
DEFAULT_MAX_BYTES = 1024 * 2**20
#: The deepest nesting of objects and lists any reader accepts; a results file needs 5.
MAX_DEPTH = 64


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 2**20 else f"{n / 2**20:,.1f} MiB"


def _read_bytes(path: Path, max_bytes: int | None, what: str, follow_symlinks: bool = True) -> bytes:
    if not follow_symlinks and path.is_symlink():
        raise ResultsFileError(f"{path}: {what} is a symbolic link; refusing to follow it")
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ResultsFileError(f"{path}: {what} is a directory; give the path of a JSON file")
        if not stat.S_ISREG(info.st_mode):
            # A FIFO would block the open until a writer comes; a device such as /dev/zero never ends.
            raise ResultsFileError(f"{path}: {what} is not a regular file (a FIFO, device or socket); "
                                   "give the path of a JSON file")
        size = info.st_size
        if max_bytes is not None and size > max_bytes:
            raise ResultsFileError(
                f"{path}: {what} is {_size(size)}, over the {_size(max_bytes)} this reader accepts; is it a "
                "pytest-mlperf results file? (the compare command raises the cap with --max-file-mb)"
            )
        with path.open("rb") as fh:
            # A file that grows while it is read stops at the cap, never at memory's end.
            data = fh.read(max_bytes + 1) if max_bytes is not None else fh.read()
    except FileNotFoundError:
        raise ResultsFileError(f"{path}: no such {what}") from None
    except OSError as exc:
        raise ResultsFileError(f"{path}: cannot be read ({exc.strerror})") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise ResultsFileError(f"{path}: {what} is over the {_size(max_bytes)} this reader accepts")
    return data


def _too_deep(value: Any, limit: int) -> str | None:
    """The JSON path of the first container nested deeper than ``limit``, else None; iterative, never recursing."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, where = stack.pop()
        if depth > limit:
            return where or "(top level)"
        if isinstance(node, dict):
            stack.extend((child, depth + 1, f"{where}.{key}" if where else str(key)) for key, child in node.items()
                         if isinstance(child, dict | list))
        elif isinstance(node, list):
            stack.extend((child, depth + 1, f"{where}[{index}]") for index, child in enumerate(node)
                         if isinstance(child, dict | list))
    return None


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ResultsFileError(f"{name}: not UTF-8 text; is this a pytest-mlperf results file?") from None


def parse_json(raw: bytes | str, name: str, *, object_hook: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """JSON from untrusted input: any failure (bad UTF-8, bad syntax, nesting too deep) is a ResultsFileError.

    Give big input as ``str`` (decoded by the caller, its bytes dropped): bytes would be decoded into a second copy.
    """
    text = _decode(raw, name) if isinstance(raw, bytes) else raw
    try:
        value = json.loads(text, object_hook=object_hook)
    except json.JSONDecodeError as exc:
        raise ResultsFileError(
            f"{name}: not valid JSON ({exc.msg} at line {exc.lineno}); was the run interrupted while writing it?"
        ) from None
    except RecursionError:
        raise ResultsFileError(
            f"{name}: JSON nested too deeply to read (more than {MAX_DEPTH} levels); "
            "this is not a file pytest-mlperf wrote"
        ) from None
    except ValueError as exc:  # an object_hook's refusal, or a number Python cannot hold
        raise ResultsFileError(f"{name}: {exc}") from None
    deep = _too_deep(value, MAX_DEPTH)
    if deep is not None:
        raise ResultsFileError(
            f"{name}: JSON nested more than {MAX_DEPTH} levels deep at {deep}; this is not a file pytest-mlperf wrote"
        )
    return value


def load_json(
    path: Path, *, max_bytes: int | None = DEFAULT_MAX_BYTES, follow_symlinks: bool = True, what: str = "JSON file"
) -> Any:
    """A JSON file read with bounded size and depth; ResultsFileError naming the file for anything unreadable."""
    return parse_json(_read_bytes(path, max_bytes, what, follow_symlinks), str(path))


def _version_refusal(path: Path, document: Mapping[str, Any]) -> str:
    version = document.get("schema_version")
    readable = " and ".join(map(str, READABLE_VERSIONS))
    writer = (document.get("versions") or {}).get("plugin") if isinstance(document.get("versions"), dict) else None
    by = f" (written by pytest-mlperf {writer})" if isinstance(writer, str) else ""
    head = f"{path}: schema_version {version!r}{by}; this pytest-mlperf reads versions {readable}. "
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        return head + (
            "A newer pytest-mlperf wrote it: upgrade pytest-mlperf (pip install -U pytest-mlperf) to read it, "
            "or re-run the session that produced it with this version"
        )
    return head + (
        "No released pytest-mlperf writes that: re-run the session that produced it with this version "
        "(pytest --mlperf-results=FILE)"
    )


def _journal_runs(
    path: Path,
    document: Mapping[str, Any],
    max_bytes: int | None,
    follow_symlinks: bool,
    hook: Callable[[dict[str, Any]], Any] | None,
) -> tuple[list[Any], list[str]]:
    """The runs a session appended to its sidecar, and notes on what could not be read (a torn last line)."""
    name = document.get("journal")
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ResultsFileError(
            f"{path}: 'journal' must name a file next to it, got {name!r}; re-run the session that produced it"
        )
    journal = path.with_name(name)
    if not journal.exists() and not journal.is_symlink():
        return [], [f"{journal} (the runs of this partial session) is missing; no run could be read"]
    lines = _read_bytes(journal, max_bytes, "runs file", follow_symlinks).split(b"\n")
    runs: list[Any] = []
    notes: list[str] = []
    last = len(lines) - 1
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            runs.append(parse_json(line, f"{journal}: line {number}", object_hook=hook))
        except ResultsFileError:
            # Only the last line can be torn (a kill during its write); anything else is damage to report.
            if number - 1 < last:
                raise ResultsFileError(
                    f"{journal}: line {number} is not valid JSON; the file was changed after the session wrote it"
                ) from None
            notes.append(f"{journal}: the last line was cut short (the session was killed while writing it); "
                         f"ignored, {len(runs)} finished run(s) read")
    return runs, notes


def _compact_samples(obj: dict[str, Any]) -> dict[str, Any]:
    """A run's per-query latencies as one float64 array (8 bytes each instead of a 36-byte Python int each).

    Called by the JSON parser on each object as soon as it is complete, so a big file never holds all of its
    latencies as Python numbers at once. Values that are not a flat list of numbers are left for the reader's
    checks to name.
    """
    samples = obj.get("latency_samples_ns")
    if isinstance(samples, list) and "id" in obj:
        import numpy as np

        try:
            array = np.asarray(samples)
        except (TypeError, ValueError, OverflowError):
            return obj
        # Numbers only: numpy would read "2" as 2.0, and a bool is no latency.
        if array.ndim == 1 and array.dtype.kind in "iuf":
            obj["latency_samples_ns"] = array.astype(np.float64, copy=False)
    return obj


def upgrade(document: dict[str, Any]) -> dict[str, Any]:
    """A version-1 document as version 2: each run gets the classification task it implied."""
    if document.get("schema_version") != 1:
        return document
    runs = [
        {**run, "task": dict(_V1_TASK)} if isinstance(run, dict) and "task" not in run else run
        for run in document["runs"]
    ]
    return {**document, "schema_version": SCHEMA_VERSION, "upgraded_from": 1, "runs": runs}


def read_document(
    path: Path,
    *,
    max_bytes: int | None = None,
    follow_symlinks: bool | None = None,
    compact_samples: bool = False,
) -> dict[str, Any]:
    """The results document at *path* in this version's schema: every reader of results files uses this.

    A version-1 file is upgraded in memory (``upgraded_from`` records it); a partial session's file is rebuilt
    from the runs it appended to its sidecar, a torn last line ignored with a note in ``notes``. Anything else
    it cannot read (too big, nested deeper than :data:`MAX_DEPTH`, not JSON) raises ResultsFileError naming the
    file and the fix. ``max_bytes`` caps each file read (:data:`DEFAULT_MAX_BYTES` when None); given, it marks
    the file as untrusted (an artifact) and symbolic links are refused unless ``follow_symlinks`` says
    otherwise. ``compact_samples`` turns each run's ``latency_samples_ns`` into a float64 numpy array while
    parsing (the gate's reader, for big files); nothing then writes the document back as JSON.
    """
    follow = max_bytes is None if follow_symlinks is None else follow_symlinks
    max_bytes = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    # Decoded at once and the bytes dropped: a big file is held once while it is parsed, not twice.
    text = _decode(_read_bytes(path, max_bytes, "results file", follow), str(path))
    hook = _compact_samples if compact_samples else None
    document = parse_json(text, str(path), object_hook=hook)
    del text
    if not isinstance(document, dict):
        raise ResultsFileError(f"{path}: expected a JSON object (a pytest-mlperf results file)")
    no_runs = f"{path}: no 'runs' list; is this a pytest-mlperf results file (--mlperf-results)?"
    if "schema_version" not in document and not isinstance(document.get("runs"), list):
        raise ResultsFileError(no_runs)
    version = document.get("schema_version")
    if type(version) is not int or version not in READABLE_VERSIONS:  # not True, not 1.0
        raise ResultsVersionError(_version_refusal(path, document))
    if not isinstance(document.get("runs"), list):
        raise ResultsFileError(no_runs)
    if "journal" in document:
        appended, notes = _journal_runs(path, document, max_bytes, follow, hook)
        document = {key: value for key, value in document.items() if key != "journal"}
        document["runs"] = [*document["runs"], *appended]
        if notes:
            old_notes = document.get("notes")
            document["notes"] = [*(old_notes if isinstance(old_notes, list) else []), *notes]
    return upgrade(document)


def failed_run(run: Mapping[str, Any]) -> bool:
    """Whether *run* did not do all of its work (its ``error``), so that none of its figures is a measurement.

    Runs written before the ``error`` field say it in a reason: ``inference failed: ...``.
    """
    if run.get("error"):
        return True
    reasons = run.get("reasons")
    return isinstance(reasons, list) and any(isinstance(r, str) and r.startswith(FAILED_REASON) for r in reasons)


#: The reason that heads a failed run's reasons.
FAILED_REASON = "inference failed: "


def primary_metric(run: Mapping[str, Any]) -> str | None:
    """The key of ``metrics.accuracy`` that a run is judged by: its task's metric.

    A run without a task is a schema-1 run, and schema 1 only ever held classification judged on ``top1``.
    """
    task = run.get("task")
    if not isinstance(task, Mapping):
        return "top1"
    metric = task.get("metric")
    return metric if isinstance(metric, str) else None


def higher_is_better(run: Mapping[str, Any]) -> bool:
    """Whether a larger value of the run's primary accuracy metric is better (True unless its task says not)."""
    task = run.get("task")
    return not (isinstance(task, Mapping) and task.get("higher_is_better") is False)


def portable_log_dir(run: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
    """The run with its ``log_dir`` relative to the results file's folder, so the results and logs move
    together as one artifact; unchanged when no relative path exists (another drive)."""
    import os

    log_dir = run.get("log_dir")
    if not isinstance(log_dir, str) or not os.path.isabs(log_dir):
        return dict(run)
    try:
        relative = os.path.relpath(log_dir, results_dir.resolve())
    except ValueError:
        return dict(run)
    return {**run, "log_dir": Path(relative).as_posix()}


def junit_properties(runs: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """A case's figures as short, machine-readable ``--junitxml`` properties (never the latency samples).

    Names carry their unit (``_ms``, ``_percent``, ``samples_per_s``); with several runs (``--mlperf-repeat``)
    each name is prefixed ``mlperf.repeatN.``, otherwise ``mlperf.``.
    """
    from pytest_mlperf.rules import QPS_SCENARIOS

    props: list[tuple[str, str]] = []
    for run in runs:
        prefix = f"mlperf.repeat{run.get('repeat', 0)}." if len(runs) > 1 else "mlperf."
        metrics = run.get("metrics") or {}
        valid = run.get("valid")
        props += [
            (prefix + "scenario", str(run.get("scenario"))),
            (prefix + "mode", str(run.get("mode"))),
            (prefix + "backend", str(run.get("backend"))),
            (prefix + "valid", "none" if valid is None else str(bool(valid)).lower()),
            (prefix + "verdict", "pass" if run.get("passed") else "fail"),
        ]
        qps = metrics.get("qps")
        if isinstance(qps, (int, float)) and run.get("scenario") in QPS_SCENARIOS:
            props.append((prefix + "samples_per_s", f"{qps:.6g}"))
        latency = metrics.get("latency_ns") or {}
        for name, value in latency.items() if isinstance(latency, Mapping) else ():
            if isinstance(value, (int, float)):
                props.append((f"{prefix}latency_{name}_ms", f"{value / 1e6:.6g}"))
        accuracy = metrics.get("accuracy")
        if isinstance(accuracy, Mapping):
            for name, value in accuracy.items():
                if isinstance(value, (int, float)):
                    props.append((f"{prefix}accuracy_{name}_percent", f"{value * 100:.6g}"))
        if run.get("synthetic_inputs"):
            props.append((prefix + "synthetic_inputs", "true"))
    return props


def case_dirname(nodeid: str, repeat: int = 0) -> str:
    """A filesystem-safe, readable, unique-enough directory name for a case's logs."""
    import hashlib

    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid.split("::", 1)[-1]).strip("_")[:80]
    digest = hashlib.sha256(nodeid.encode()).hexdigest()[:8]
    suffix = f"-r{repeat}" if repeat else ""
    return f"{readable}-{digest}{suffix}"


def runs_table(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Compact terminal rows: case, scenario/mode, QPS, primary latency, accuracy, verdict."""
    from pytest_mlperf.rules import LATENCY_PERCENTILE

    rows = [("case", "scenario", "mode", "qps", "latency", "accuracy", "valid", "result")]
    for run in runs:
        metrics = run.get("metrics") or {}
        qps = metrics.get("qps")
        # The percentile the run was judged at (Server: LoadGen's effective one), else the rules'.
        pct = (run.get("thresholds") or {}).get("latency_percentile") or LATENCY_PERCENTILE.get(run["scenario"])
        lat = (metrics.get("latency_ns") or {}).get(pct) if pct else None
        metric = primary_metric(run)
        acc = (metrics.get("accuracy") or {}).get(metric) if metric else None
        name = run["id"].split("::")[-1] + (f" #{run['repeat']}" if run.get("repeat") else "")
        if run.get("synthetic_inputs"):
            name += " (synthetic inputs)"
        valid = run.get("valid")
        rows.append((
            name,
            run["scenario"],
            run["mode"],
            f"{qps:,.1f}" if qps is not None else "-",
            f"{pct} {lat / 1e6:.3f} ms" if lat is not None else "-",
            f"{metric} {acc * 100:.2f} %" if acc is not None else "-",
            "-" if valid is None else ("VALID" if valid else "INVALID"),
            "PASS" if run["passed"] else "FAIL",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
