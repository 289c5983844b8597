"""Convert a results document into other tools' formats: github-action-benchmark, Bencher BMF, pytest-benchmark.

Pure functions from the results JSON (docs/contracts.md) to JSON-ready objects. Repeats of a case are pooled into
one entry. Formats, as their documentation describes them:

- github-action-benchmark ``customSmallerIsBetter`` / ``customBiggerIsBetter``: a JSON array of
  ``{"name", "unit", "value"}`` with optional string ``range`` and ``extra``.
- Bencher Metric Format: ``{benchmark: {measure_slug: {"value", "lower_value"?, "upper_value"?}}}``; ``latency``
  (nanoseconds) and ``throughput`` (operations/s) are Bencher's built-in measures, ``accuracy`` is custom.
- pytest-benchmark ``--benchmark-json``: ``machine_info``, ``commit_info``, ``benchmarks[]`` (``name``,
  ``fullname``, ``params``, ``param``, ``group``, ``extra_info``, ``options``, ``stats`` in seconds),
  ``datetime``, ``version``.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pytest_mlperf.results import failed_run, higher_is_better, primary_metric
from pytest_mlperf.rules import LATENCY_PERCENTILE, QPS_SCENARIOS

FORMATS = ("gab-smaller", "gab-bigger", "bmf", "pytest-benchmark")
# The pytest-benchmark JSON layout this exporter follows (stable since pytest-benchmark 3.x).
PYTEST_BENCHMARK_VERSION = "4.0.0"

#: Every measure an export holds, with the unit github-action-benchmark shows and whether bigger is better, as
#: the MLPerf metric it stands for: ``latency`` is the scenario's percentile (p90 SingleStream, p99 per query of
#: MultiStream, the p99 bound of Server); ``throughput`` is samples per second (Server's completed samples/s,
#: Offline's samples/s), never queries per second; ``accuracy`` is the task's score in percent, bigger is better
#: unless the run's task says otherwise (``task.higher_is_better``, an error rate for instance).
MEASURES: dict[str, tuple[str, bool]] = {
    "latency": ("ms", False),
    "throughput": ("samples/s", True),
    "accuracy": ("%", True),
}


def _cases(document: Mapping[str, Any]) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """Runs grouped by (id, mode) in first-seen order; keyed by id alone when a case has one mode.

    A failed run (its inference raised) measured nothing, so it is never exported.
    """
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for run in document.get("runs") or []:
        if failed_run(run):
            continue
        groups.setdefault((run["id"], run["mode"]), []).append(run)
    modes_per_id: dict[str, int] = {}
    for case_id, _ in groups:
        modes_per_id[case_id] = modes_per_id.get(case_id, 0) + 1
    return [
        (case_id if modes_per_id[case_id] == 1 else f"{case_id} ({mode})", runs)
        for (case_id, mode), runs in groups.items()
    ]


def _values(runs: Sequence[Mapping[str, Any]], get: Callable[[Mapping[str, Any]], Any]) -> list[float]:
    out = []
    for run in runs:
        value = get(run.get("metrics") or {})
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append(float(value))
    return out


def _statistic(runs: Sequence[Mapping[str, Any]]) -> str | None:
    for run in runs:
        chosen = (run.get("thresholds") or {}).get("latency_percentile")
        if isinstance(chosen, str):
            return chosen
    return LATENCY_PERCENTILE.get(str(runs[0].get("scenario")))


def _latencies(runs: Sequence[Mapping[str, Any]]) -> tuple[str, list[float]] | None:
    statistic = _statistic(runs)
    if statistic is None:
        return None
    values = _values(runs, lambda m: (m.get("latency_ns") or {}).get(statistic))
    return (statistic, values) if values else None


def _qps(runs: Sequence[Mapping[str, Any]]) -> list[float]:
    if runs[0].get("scenario") not in QPS_SCENARIOS:
        return []
    return _values(runs, lambda m: m.get("qps"))


def _accuracy_key(runs: Sequence[Mapping[str, Any]]) -> str | None:
    """The primary accuracy metric the runs' task names, if any run measured accuracy."""
    for run in runs:
        if isinstance((run.get("metrics") or {}).get("accuracy"), Mapping):
            return primary_metric(run)
    return None


def _accuracy(runs: Sequence[Mapping[str, Any]]) -> tuple[str, list[float]] | None:
    key = _accuracy_key(runs)
    if key is None:
        return None
    return key, _values(runs, lambda metrics: (metrics.get("accuracy") or {}).get(key))


def _extra(runs: Sequence[Mapping[str, Any]], count: int) -> str:
    first = runs[0]
    lines = [f"scenario: {first.get('scenario')}", f"profile: {first.get('profile')}", f"runs: {count}"]
    if first.get("synthetic_inputs"):
        lines.append("synthetic inputs: speed only")
    return "\n".join(lines)


def _gab_entry(name: str, unit: str, values: Sequence[float], runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "unit": unit, "value": statistics.median(values)}
    if len(values) > 1:
        entry["range"] = f"± {statistics.stdev(values):.4g}"
    entry["extra"] = _extra(runs, len(values))
    return entry


def _figures(runs: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, list[float], bool]]:
    """A case's exported ``(measure, label, values, bigger_is_better)``: latency in ns, throughput in samples/s,
    accuracy in %."""
    figures: list[tuple[str, str, list[float], bool]] = []
    latency = _latencies(runs)
    if latency is not None:
        statistic, values = latency
        figures.append(("latency", f"{statistic} latency", values, MEASURES["latency"][1]))
    qps = _qps(runs)
    if qps:
        figures.append(("throughput", "throughput", qps, MEASURES["throughput"][1]))
    accuracy = _accuracy(runs)
    if accuracy is not None and accuracy[1]:
        key, values = accuracy
        figures.append(("accuracy", f"{key} accuracy", [v * 100 for v in values], higher_is_better(runs[0])))
    return figures


def github_action_benchmark(document: Mapping[str, Any], *, bigger_is_better: bool) -> list[dict[str, Any]]:
    """customSmallerIsBetter (latency, ms) or customBiggerIsBetter (samples/s, accuracy %) entries.

    A figure's unit comes from ``MEASURES``, and its list from there too, except accuracy, which follows the
    direction of its task's metric (``task.higher_is_better``). The value is the median over a case's
    repeats and ``range`` their standard deviation, both in ``unit``.
    """
    entries: list[dict[str, Any]] = []
    for name, runs in _cases(document):
        for measure, label, values, bigger in _figures(runs):
            unit = MEASURES[measure][0]
            if bigger == bigger_is_better:
                in_unit = [v / 1e6 for v in values] if measure == "latency" else values
                entries.append(_gab_entry(f"{name} {label}", unit, in_unit, runs))
    return entries


def _bmf_metric(values: Sequence[float]) -> dict[str, float]:
    metric = {"value": statistics.median(values)}
    if len(values) > 1:
        metric["lower_value"], metric["upper_value"] = min(values), max(values)
    return metric


def bencher_metric_format(document: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """BMF: per case, ``latency`` (primary percentile, ns), ``throughput`` (samples/s), ``accuracy`` (percent).

    ``value`` is the median over repeats; ``lower_value``/``upper_value`` their range when there are repeats.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, runs in _cases(document):
        # Bencher's built-in latency measure is in nanoseconds, as the results hold it.
        measures = {measure: _bmf_metric(values) for measure, _, values, _ in _figures(runs)}
        if measures:
            out[name] = measures
    return out


def _stats(seconds: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` block, computed as it does (quartiles, 1.5 IQR fences, 1-sigma outliers)."""
    data = sorted(seconds)
    n = len(data)
    mean = statistics.fmean(data)
    stddev = statistics.stdev(data) if n > 1 else 0.0
    if n > 1:
        q1, _, q3 = statistics.quantiles(data, n=4)
    else:
        q1 = q3 = data[0]
    iqr = q3 - q1
    low_fence, high_fence = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    inside = [v for v in data if low_fence <= v <= high_fence] or data
    iqr_outliers = n - len([v for v in data if low_fence <= v <= high_fence])
    stddev_outliers = len([v for v in data if abs(v - mean) > stddev]) if stddev else 0
    return {
        "min": data[0],
        "max": data[-1],
        "mean": mean,
        "stddev": stddev,
        "rounds": n,
        "median": statistics.median(data),
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": iqr_outliers,
        "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": inside[0],
        "hd15iqr": inside[-1],
        "ops": 1.0 / mean if mean > 0 else 0.0,
        "total": sum(data),
        "iterations": 1,
    }


def _timings(runs: Sequence[Mapping[str, Any]]) -> tuple[list[float], str] | None:
    """Seconds per round and what a round is, so that ``stats`` are lower-is-better and ``ops`` bigger-is-better.

    Server and Offline are judged on samples per second: a round is a run, timed as 1 / its samples/s, so ``ops``
    is samples/s (a query latency's inverse would be a rate of queries, not the MLPerf metric). SingleStream and
    MultiStream are judged on latency: a round is a query (per-query latencies), else a run's percentile latency.
    """
    if runs[0].get("scenario") in QPS_SCENARIOS:
        qps = _qps(runs)
        return ([1.0 / v for v in qps if v > 0], "1 / samples per second of a run") if qps else None
    pooled: list[float] = []
    for run in runs:
        samples = run.get("latency_samples_ns")
        if not samples:
            pooled = []
            break
        pooled.extend(v / 1e9 for v in samples)
    if pooled:
        return pooled, "query latency"
    latency = _latencies(runs)
    if latency is not None:
        return [v / 1e9 for v in latency[1]], f"{latency[0]} latency of a run"
    return None


def pytest_benchmark(document: Mapping[str, Any]) -> dict[str, Any]:
    """A pytest-benchmark-compatible document; accuracy-only cases are left out (they have no timing)."""
    machine = document.get("machine") or {}
    versions = document.get("versions") or {}
    os_name = str(machine.get("os") or "")
    commit = document.get("commit")
    benchmarks = []
    for name, runs in _cases(document):
        timings = _timings(runs)
        if not timings or not timings[0]:
            continue
        seconds, round_is = timings
        first = runs[0]
        match = re.search(r"\[(.*)\]$", str(first["id"]))
        extra: dict[str, Any] = {
            "round": round_is,
            "scenario": first.get("scenario"),
            "mode": first.get("mode"),
            "profile": first.get("profile"),
            "model": first.get("model"),
            "model_sha256": first.get("model_sha256"),
            "backend": first.get("backend"),
            "synthetic_inputs": bool(first.get("synthetic_inputs", False)),
            "repeats": len(runs),
            "valid": [run.get("valid") for run in runs],
        }
        qps = _qps(runs)
        if qps:
            extra["samples_per_second"] = qps
        latency = _latencies(runs)
        if latency is not None:
            extra[f"{latency[0]}_latency_ns"] = latency[1]
        accuracy = _accuracy(runs)
        if accuracy is not None and accuracy[1]:
            extra[accuracy[0]] = accuracy[1]
        benchmarks.append(
            {
                "group": first.get("scenario"),
                "name": name.rsplit("::", 1)[-1],
                "fullname": name,
                "params": None,
                "param": match.group(1) if match else None,
                "extra_info": extra,
                "options": {
                    "disable_gc": False,
                    "timer": "loadgen",
                    "min_rounds": len(seconds),
                    "max_time": None,
                    "min_time": None,
                    "warmup": False,
                },
                "stats": _stats(seconds),
            }
        )
    return {
        "machine_info": {
            "node": "",
            "processor": machine.get("arch", ""),
            "machine": machine.get("arch", ""),
            "python_version": versions.get("python", ""),
            "system": os_name.split("-", 1)[0],
            "release": os_name.split("-", 2)[1] if os_name.count("-") >= 2 else "",
            "cpu": {"brand_raw": machine.get("cpu", ""), "count": machine.get("logical_cpus", machine.get("cores"))},
            "mlperf": dict(machine),
        },
        "commit_info": (
            {"id": commit.get("sha"), "branch": commit.get("branch"), "dirty": commit.get("dirty"), "project": ""}
            if isinstance(commit, Mapping)
            else {"error": "results were not recorded in a git checkout"}
        ),
        "benchmarks": benchmarks,
        "datetime": document.get("datetime", ""),
        "version": PYTEST_BENCHMARK_VERSION,
    }


def export(document: Mapping[str, Any], fmt: str) -> Any:
    """Dispatch on a ``FORMATS`` name; ValueError names the accepted formats."""
    if fmt == "gab-smaller":
        return github_action_benchmark(document, bigger_is_better=False)
    if fmt == "gab-bigger":
        return github_action_benchmark(document, bigger_is_better=True)
    if fmt == "bmf":
        return bencher_metric_format(document)
    if fmt == "pytest-benchmark":
        return pytest_benchmark(document)
    raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
