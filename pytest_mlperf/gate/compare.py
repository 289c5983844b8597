"""Compare base and head results documents case by case, refusing mismatched fingerprints.

The output is the comparison JSON of docs/contracts.md (schema/comparison.schema.json). Each side may hold several
documents (repeats from several sessions, ABAB interleaving): runs with the same id are pooled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pytest_mlperf.errors import MLPerfError
from pytest_mlperf.gate.fingerprint import (
    environment_fingerprint,
    fingerprint_differences,
    run_fingerprint,
)
from pytest_mlperf.gate.limits import MAX_LATENCY_NS, MAX_QPS
from pytest_mlperf.gate.statistics import (
    STATISTICS,
    Decision,
    GatePolicy,
    Look,
    compare_accuracy,
    compare_latency,
    compare_run_values,
    latency_label,
    latency_metric,
)
from pytest_mlperf.results import primary_metric
from pytest_mlperf.rules import LATENCY_PERCENTILE, QPS_SCENARIOS, SCENARIOS

VERDICT_ORDER = ("regression", "improvement", "no-change", "missing-in-base", "missing-in-head")


class ComparisonInputError(MLPerfError):
    """A results document cannot be compared; the message names the file (or case) and the fix."""


@dataclass(frozen=True)
class Source:
    """One results document and the name used for it in messages (usually its path)."""

    name: str
    document: Mapping[str, Any]


# --- validation -----------------------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _printable(text: str, limit: int = 80) -> str:
    """A string from a file, safe to print in one line of a message: control characters shown as '?'."""
    short = text if len(text) <= limit else text[: limit - 3] + "..."
    return "".join(c if c.isprintable() else "?" for c in short)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_number(where: str, value: Any, *, low: float, high: float, low_open: bool = False, what: str) -> None:
    """A finite number in [low, high] (or (low, high] when ``low_open``); ComparisonInputError otherwise."""
    ok = _is_number(value) and math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        raise ComparisonInputError(f"{where} must be a finite number {bound} and <= {high:g} ({what}), "
                                   f"got {_shown(value)}; the file is damaged or was not written by pytest-mlperf")


def _check_type(where: str, value: Any, kinds: tuple[type, ...], what: str, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
        raise ComparisonInputError(f"{where} must be {what}{' or null' if optional else ''}, got {_shown(value)}; "
                                   "the file is damaged or was not written by pytest-mlperf")


def _check_samples(where: str, samples: Any) -> None:
    if samples is None:
        return
    import numpy as np

    try:
        array = np.asarray(samples)
    except (TypeError, ValueError, OverflowError):
        array = None
    if array is None or not isinstance(samples, list | np.ndarray) or array.ndim != 1 or (
        array.size and array.dtype.kind not in "iuf"
    ):
        raise ComparisonInputError(f"{where}: latency_samples_ns must be a list of non-negative numbers (ns) or null")
    if array.size:
        values = array.astype(np.float64, copy=False)
        if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > MAX_LATENCY_NS:
            raise ComparisonInputError(
                f"{where}: latency_samples_ns must be a list of non-negative numbers (finite, at most "
                f"{MAX_LATENCY_NS:g} ns); the file is damaged or was not written by pytest-mlperf"
            )


def _check_metrics(where: str, run: Mapping[str, Any]) -> None:
    metrics = run.get("metrics")
    _check_type(f"{where}: metrics", metrics, (Mapping,), "an object")
    if not metrics:
        return
    if metrics.get("qps") is not None:
        _check_number(f"{where}: metrics.qps", metrics["qps"], low=0.0, low_open=True, high=MAX_QPS,
                      what="samples/s")
    latency = metrics.get("latency_ns")
    _check_type(f"{where}: metrics.latency_ns", latency, (Mapping,), "an object of latencies in ns")
    for key, value in (latency or {}).items():
        if value is not None:
            _check_number(f"{where}: metrics.latency_ns.{_printable(str(key), 40)}", value, low=0.0,
                          high=MAX_LATENCY_NS, what="ns")
    accuracy = metrics.get("accuracy")
    _check_type(f"{where}: metrics.accuracy", accuracy, (Mapping,), "an object of accuracy metrics")
    primary = primary_metric(run)
    for key, value in (accuracy or {}).items():
        if value is None:
            continue
        if key == "count":
            _check_number(f"{where}: metrics.accuracy.count", value, low=0.0, high=1e15, what="samples scored")
        elif key == primary:
            _check_number(f"{where}: metrics.accuracy.{_printable(str(key), 40)}", value, low=0.0, high=1.0,
                          what="a fraction: 0.76 is 76 %")
        elif not (_is_number(value) and math.isfinite(value)):
            raise ComparisonInputError(f"{where}: metrics.accuracy.{_printable(str(key), 40)} must be a finite "
                                       f"number or null, got {_shown(value)}")


def _check_run(where: str, run: Mapping[str, Any]) -> None:
    """Every field of a run that the gate reads has the type and range a real measurement can have."""
    for key in ("model_sha256", "model_identity", "profile", "backend"):
        _check_type(f"{where}: {key}", run.get(key), (str,), "a string")
    _check_type(f"{where}: synthetic_inputs", run.get("synthetic_inputs"), (bool,), "true or false")
    _check_type(f"{where}: valid", run.get("valid"), (bool,), "true or false")
    _check_type(f"{where}: repeat", run.get("repeat"), (int,), "a whole number")
    for key in ("settings", "overrides", "thresholds", "dataset", "task"):
        _check_type(f"{where}: {key}", run.get(key), (Mapping,), "an object")
    task = run.get("task") or {}
    _check_type(f"{where}: task.metric", task.get("metric"), (str,), "a string")
    _check_type(f"{where}: task.higher_is_better", task.get("higher_is_better"), (bool,), "true or false")
    dataset = run.get("dataset") or {}
    _check_type(f"{where}: dataset.name", dataset.get("name"), (str,), "a string")
    _check_type(f"{where}: dataset.count", dataset.get("count"), (int,), "a whole number")
    thresholds = run.get("thresholds") or {}
    _check_type(f"{where}: thresholds.latency_percentile", thresholds.get("latency_percentile"), (str,), "a string")
    if thresholds.get("accuracy") is not None:
        _check_number(f"{where}: thresholds.accuracy", thresholds["accuracy"], low=0.0, high=1.0,
                      what="a fraction: 0.76 is 76 %")
    _check_metrics(where, run)
    _check_samples(where, run.get("latency_samples_ns"))


def _check_environment(name: str, document: Mapping[str, Any]) -> None:
    machine = document.get("machine")
    _check_type(f"{name}: machine", machine, (Mapping,), "an object")
    machine = machine or {}
    _check_type(f"{name}: machine.cpu", machine.get("cpu"), (str,), "a string")
    _check_type(f"{name}: machine.cores", machine.get("cores"), (int,), "a whole number")
    gpus = machine.get("gpus")
    _check_type(f"{name}: machine.gpus", gpus, (list,), "a list")
    for index, gpu in enumerate(gpus or []):
        _check_type(f"{name}: machine.gpus[{index}]", gpu, (Mapping,), "an object", optional=False)
        for key in ("name", "driver"):
            _check_type(f"{name}: machine.gpus[{index}].{key}", gpu.get(key), (str,), "a string")
    _check_type(f"{name}: versions", document.get("versions"), (Mapping,), "an object")


def check_document(name: str, document: Any) -> Mapping[str, Any]:
    """The document if it has what a comparison reads; otherwise ComparisonInputError naming the file and field.

    Every field the gate reads is type-checked, and values no measurement can have (a NaN or 500 % accuracy,
    zero or negative samples/s, a week-long latency) are refused: compared, they would decide a verdict. A
    document without runs is refused too: the benchmark did not run, which is not "no change".
    """
    if not isinstance(document, Mapping):
        raise ComparisonInputError(f"{name}: expected a JSON object (a pytest-mlperf results file)")
    runs = document.get("runs")
    if not isinstance(runs, list):
        raise ComparisonInputError(f"{name}: no 'runs' list; is this a pytest-mlperf results file (--mlperf-results)?")
    if not runs:
        raise ComparisonInputError(
            f"{name}: no runs: the benchmark did not run (every case deselected or skipped, or the session failed "
            "before measuring), so there is nothing to compare. Check the session that wrote it"
        )
    _check_environment(name, document)
    for index, run in enumerate(runs):
        where = f"{name}: runs[{index}]"
        if not isinstance(run, Mapping):
            raise ComparisonInputError(f"{where} is not an object")
        if not isinstance(run.get("id"), str) or not run["id"]:
            raise ComparisonInputError(f"{where} has no 'id' (the pytest node id)")
        where = f"{where} ({_printable(run['id'])})"
        if run.get("scenario") not in SCENARIOS:
            raise ComparisonInputError(
                f"{where}: scenario {_shown(run.get('scenario'))} is not one of {', '.join(SCENARIOS)}"
            )
        if run.get("mode") not in ("performance", "accuracy"):
            raise ComparisonInputError(f"{where}: mode {_shown(run.get('mode'))} is not 'performance' or 'accuracy'")
        _check_run(where, run)
    return document


# --- fingerprints ---------------------------------------------------------------------------------------------


@dataclass
class _Group:
    """All runs of one case (id and mode) on one side, with the file each came from."""

    id: str
    scenario: str
    mode: str
    runs: list[Mapping[str, Any]]
    sources: list[str]


def _group(sources: Sequence[Source]) -> dict[tuple[str, str], _Group]:
    groups: dict[tuple[str, str], _Group] = {}
    for source in sources:
        for run in source.document["runs"]:
            key = (run["id"], run["mode"])
            group = groups.setdefault(key, _Group(run["id"], run["scenario"], run["mode"], [], []))
            group.runs.append(run)
            group.sources.append(source.name)
    return groups


def _side_differences(side: str, sources: Sequence[Source], groups: Mapping[tuple[str, str], _Group]) -> list[str]:
    """Disagreements inside one side: pooling runs from different machines or settings is as wrong as comparing."""
    out: list[str] = []
    first = sources[0]
    reference = environment_fingerprint(first.document)
    for other in sources[1:]:
        for diff in fingerprint_differences(reference, environment_fingerprint(other.document)):
            out.append(f"{side} files disagree ({first.name} vs {other.name}): {diff}")
    for group in groups.values():
        ref = run_fingerprint(group.runs[0])
        for run, name in zip(group.runs[1:], group.sources[1:], strict=True):
            for diff in fingerprint_differences(ref, run_fingerprint(run)):
                out.append(f"{side} runs of {group.id} disagree ({group.sources[0]} vs {name}): {diff}")
    return out


# --- decisions per case ---------------------------------------------------------------------------------------


def _latency_statistic(group: _Group) -> str | None:
    for run in group.runs:
        chosen = (run.get("thresholds") or {}).get("latency_percentile")
        if isinstance(chosen, str) and chosen in STATISTICS:
            return chosen
    return LATENCY_PERCENTILE.get(group.scenario)


def _samples(group: _Group) -> list[Any] | None:
    """Each run's per-query latencies (lists, or arrays from a reader that compacts them), None when one lacks them."""
    import numpy as np

    runs = [run.get("latency_samples_ns") for run in group.runs]
    if all(isinstance(samples, list | np.ndarray) and len(samples) for samples in runs):
        return runs
    return None


def _metric_values(group: _Group, *path: str) -> list[float]:
    values = []
    for run in group.runs:
        node: Any = run.get("metrics") or {}
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, int | float) and not isinstance(node, bool):
            values.append(float(node))
    return values


def _accuracy_key(group: _Group) -> str | None:
    """The primary accuracy metric the runs' task names (never guessed from the keys present)."""
    for run in group.runs:
        key = primary_metric(run)
        if key is not None:
            return key
    return None


def _decide_latency(base: _Group, head: _Group, statistic: str, policy: GatePolicy, look: Look | None) -> Decision:
    floor = policy.floor_for(head.id, latency_metric(statistic))
    base_samples, head_samples = _samples(base), _samples(head)
    if base_samples is not None and head_samples is not None:
        try:
            return compare_latency(
                base_samples,
                head_samples,
                statistic,
                alpha=policy.alpha,
                floor=floor,
                look=look,
            )
        except ValueError as exc:
            raise ComparisonInputError(f"{head.id}: {exc}") from None
    # Without per-query latencies only the runs' own percentiles are left: decide on them like throughput.
    decision = compare_run_values(
        _metric_values(base, "latency_ns", statistic),
        _metric_values(head, "latency_ns", statistic),
        metric=latency_metric(statistic),
        label=latency_label(statistic),
        unit="ns",
        higher_is_better=False,
        alpha=policy.alpha,
        floor=floor,
        look=look,
    )
    if decision.p_value is None and decision.noise is None:
        # Nothing to decide on at all (not one run with a value); with one run per side the message already says
        # what to add, and per-query latencies would not change that.
        side = "base" if base_samples is None else "head"
        decision = replace(
            decision,
            message=f"{decision.message}; no per-query latencies in {side} (run with the LoadGen trace enabled)",
        )
    return decision


def _decide(base: _Group, head: _Group, policy: GatePolicy, look: Look | None) -> list[Decision]:
    decisions: list[Decision] = []
    if head.mode == "accuracy":
        key = _accuracy_key(head) or _accuracy_key(base) or "top1"
        base_values, head_values = _metric_values(base, "accuracy", key), _metric_values(head, "accuracy", key)
        targets = [
            t for run in head.runs if isinstance(t := (run.get("thresholds") or {}).get("accuracy"), int | float)
        ]
        counts_b, counts_h = _metric_values(base, "accuracy", "count"), _metric_values(head, "accuracy", "count")
        decisions.append(
            compare_accuracy(
                sum(base_values) / len(base_values) if base_values else None,
                sum(head_values) / len(head_values) if head_values else None,
                name=key,
                tolerance=policy.accuracy_tolerance,
                target=float(targets[0]) if targets else None,
                n_base=int(sum(counts_b)) if counts_b else len(base_values),
                n_head=int(sum(counts_h)) if counts_h else len(head_values),
                runs_base=len(base_values),
                runs_head=len(head_values),
            )
        )
        return decisions
    statistic = _latency_statistic(head)
    if statistic is not None:
        decisions.append(_decide_latency(base, head, statistic, policy, look))
    if head.scenario in QPS_SCENARIOS:
        decisions.append(
            compare_run_values(
                _metric_values(base, "qps"),
                _metric_values(head, "qps"),
                metric="qps",
                alpha=policy.alpha,
                floor=policy.floor_for(head.id, "qps"),
                look=look,
            )
        )
    return decisions


def _case(group_id: str, scenario: str, decision: Decision) -> dict[str, Any]:
    return {
        "id": group_id,
        "scenario": scenario,
        "metric": decision.metric,
        "unit": decision.unit,
        "higher_is_better": decision.higher_is_better,
        "base": decision.base,
        "head": decision.head,
        "change": decision.change,
        "ci": list(decision.ci) if decision.ci is not None else None,
        "p_value": decision.p_value,
        "n_base": decision.n_base,
        "n_head": decision.n_head,
        "runs_base": decision.runs_base,
        "runs_head": decision.runs_head,
        "noise": decision.noise,
        "run_spread": decision.run_spread,
        "decided": decision.decided,
        "verdict": decision.verdict,
        "message": decision.message,
    }


def _missing_case(group: _Group, present: str) -> dict[str, Any]:
    """A case only one side ran: reported with the present side's primary value, never decided."""
    statistic = _latency_statistic(group) if group.mode == "performance" else None
    if group.mode == "accuracy":
        key = _accuracy_key(group) or "top1"
        metric, unit, higher, values = "accuracy", "ratio", True, _metric_values(group, "accuracy", key)
    elif statistic is not None:
        metric, unit, higher = latency_metric(statistic), "ns", False
        values = _metric_values(group, "latency_ns", statistic)
    else:
        metric, unit, higher, values = "qps", "samples/s", True, _metric_values(group, "qps")
    value = sum(values) / len(values) if values else None
    absent = "head" if present == "base" else "base"
    hint = "deselected, skipped or renamed?" if absent == "head" else "a new case"
    return {
        "id": group.id,
        "scenario": group.scenario,
        "metric": metric,
        "unit": unit,
        "higher_is_better": higher,
        "base": value if present == "base" else None,
        "head": value if present == "head" else None,
        "change": None,
        "ci": None,
        "p_value": None,
        "n_base": len(group.runs) if present == "base" else 0,
        "n_head": len(group.runs) if present == "head" else 0,
        "runs_base": len(group.runs) if present == "base" else 0,
        "runs_head": len(group.runs) if present == "head" else 0,
        "noise": None,
        "run_spread": None,
        "decided": True,
        "verdict": f"missing-in-{absent}",
        "message": f"{group.id}: only in {present} ({hint}); not compared ({len(group.runs)} {present} runs)",
    }


# --- the comparison -------------------------------------------------------------------------------------------


def _as_sources(side: str, items: Sequence[Source | Mapping[str, Any]]) -> list[Source]:
    sources = []
    for index, item in enumerate(items):
        source = item if isinstance(item, Source) else Source(f"{side}[{index}]", item)
        check_document(source.name, source.document)
        sources.append(source)
    if not sources:
        raise ComparisonInputError(f"no {side} results given; pass at least one {side} results file")
    return sources


def compare_documents(
    base: Sequence[Source | Mapping[str, Any]],
    head: Sequence[Source | Mapping[str, Any]],
    policy: GatePolicy | None = None,
    *,
    force: bool = False,
    ids: Collection[str] | None = None,
    force_hint: str = "--force",
    look: Look | None = None,
) -> dict[str, Any]:
    """Compare every case of head against base; the comparison JSON of docs/contracts.md.

    ``look`` makes this one interim look of an adaptive comparison (``--mlperf-repeat auto``): each metric is
    tested at that look's share of alpha, and ``sequential.decided`` says whether more rounds could change the
    verdict.

    ``ids`` limits the comparison to those case ids (the plugin passes the cases it ran, so that the rest of a
    baseline is not reported missing). Fingerprint differences refuse the comparison unless ``force``; forced or
    not, they are listed under ``fingerprint.differences``.
    """
    policy = policy or GatePolicy()
    base_sources, head_sources = _as_sources("base", base), _as_sources("head", head)
    base_groups, head_groups = _group(base_sources), _group(head_sources)
    if ids is not None:
        wanted = set(ids)
        base_groups = {k: g for k, g in base_groups.items() if k[0] in wanted}
        head_groups = {k: g for k, g in head_groups.items() if k[0] in wanted}

    base_env = environment_fingerprint(base_sources[0].document)
    head_env = environment_fingerprint(head_sources[0].document)
    differences = [
        *_side_differences("base", base_sources, base_groups),
        *_side_differences("head", head_sources, head_groups),
        *fingerprint_differences(base_env, head_env),
    ]
    for key, group in head_groups.items():
        if key in base_groups:
            base_print, head_print = run_fingerprint(base_groups[key].runs[0]), run_fingerprint(group.runs[0])
            differences.extend(f"{group.id}: {diff}" for diff in fingerprint_differences(base_print, head_print))

    result: dict[str, Any] = {
        "verdict": "no-change",
        "policy": policy.to_dict(),
        "refused_reason": None,
        "fingerprint": {"base": base_env, "head": head_env, "differences": differences},
        "cases": [],
        "counts": {"regressions": 0, "improvements": 0, "unchanged": 0, "missing": 0},
    }
    if differences and not force:
        result["verdict"] = "refused"
        result["refused_reason"] = (
            "fingerprints differ: "
            + "; ".join(differences)
            + f". Measure base and head on the same machine, software, model and settings, or pass {force_hint}"
        )
        return result

    cases: list[dict[str, Any]] = []
    for key, base_group in base_groups.items():
        head_group = head_groups.get(key)
        if head_group is None:
            cases.append(_missing_case(base_group, "base"))
            continue
        cases.extend(
            _case(head_group.id, head_group.scenario, d) for d in _decide(base_group, head_group, policy, look)
        )
    cases.extend(_missing_case(group, "head") for key, group in head_groups.items() if key not in base_groups)

    counts = result["counts"]
    for case in cases:
        verdict = case["verdict"]
        if verdict == "regression":
            counts["regressions"] += 1
        elif verdict == "improvement":
            counts["improvements"] += 1
        elif verdict == "no-change":
            counts["unchanged"] += 1
        else:
            counts["missing"] += 1
    result["cases"] = cases
    if look is not None:
        result["sequential"] = {**look.to_dict(policy.alpha), "decided": all(case["decided"] for case in cases)}
    if counts["regressions"]:
        result["verdict"] = "regression"
    elif counts["improvements"]:
        result["verdict"] = "improvement"
    return result


def merge_comparisons(comparisons: Sequence[Mapping[str, Any]], policy: GatePolicy) -> dict[str, Any]:
    """One comparison document from several partial ones (the plugin compares case by case).

    The verdict is the worst of the parts: regression, then refused, then improvement, then no-change.
    """
    merged: dict[str, Any] = {
        "verdict": "no-change",
        "policy": policy.to_dict(),
        "refused_reason": None,
        "fingerprint": {"base": None, "head": None, "differences": []},
        "cases": [],
        "counts": {"regressions": 0, "improvements": 0, "unchanged": 0, "missing": 0},
    }
    refusals: list[str] = []
    for part in comparisons:
        fingerprint = part.get("fingerprint") or {}
        for side in ("base", "head"):
            if merged["fingerprint"][side] is None:
                merged["fingerprint"][side] = fingerprint.get(side)
        for diff in fingerprint.get("differences") or []:
            if diff not in merged["fingerprint"]["differences"]:
                merged["fingerprint"]["differences"].append(diff)
        merged["cases"].extend(part.get("cases") or [])
        for key, value in (part.get("counts") or {}).items():
            merged["counts"][key] = merged["counts"].get(key, 0) + value
        if part.get("verdict") == "refused" and part.get("refused_reason") not in refusals:
            refusals.append(str(part.get("refused_reason")))
    verdicts = {part.get("verdict") for part in comparisons}
    for verdict in ("regression", "refused", "improvement"):
        if verdict in verdicts:
            merged["verdict"] = verdict
            break
    if merged["verdict"] == "refused":
        merged["refused_reason"] = " | ".join(refusals)
    return merged


def failures_by_case(comparison: Mapping[str, Any]) -> dict[str, list[str]]:
    """Regression messages per case id: what should fail each pytest case (improvements never fail)."""
    out: dict[str, list[str]] = {}
    for case in comparison.get("cases", []):
        if case["verdict"] == "regression":
            out.setdefault(case["id"], []).append(case["message"])
    return out


def exit_code(comparison: Mapping[str, Any]) -> int:
    """0 without a regression, 1 with one, 2 when the comparison was refused."""
    return {"refused": 2, "regression": 1}.get(str(comparison.get("verdict")), 0)


def dumps(comparison: Mapping[str, Any]) -> str:
    """The comparison JSON as written by ``--json``."""
    return json.dumps(comparison, indent=2) + "\n"
