"""Result dataclasses and the atomic, versioned results JSON: its schema, writer and reader."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
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


def new_document(cwd: Path) -> dict[str, Any]:
    """The envelope of a session's results, without runs."""
    from pytest_mlperf.provenance import commit_info, machine_info, versions

    return {
        "schema_version": SCHEMA_VERSION,
        "datetime": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "partial",
        "versions": versions(),
        "machine": machine_info(),
        "commit": commit_info(cwd),
        "runs": [],
    }


def write_json_atomic(path: Path, document: Mapping[str, Any]) -> None:
    """Serialise first, then write atomically: a document that cannot be serialised leaves the old file intact."""
    from pytest_mlperf.fileio import atomic_write

    atomic_write(path, (json.dumps(document, indent=2) + "\n").encode("utf-8"))


def load_document(path: Path) -> dict[str, Any]:
    """Read a results JSON, refusing other schema versions with a message that names the file."""
    try:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"results file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); was the run interrupted while writing it?") from None
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{path} has schema_version {doc.get('schema_version')!r}; this pytest-mlperf reads {SCHEMA_VERSION}"
        )
    return doc


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
