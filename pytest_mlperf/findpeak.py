"""Find-peak: the highest load a case sustains VALID, searched with one full LoadGen run per point tried.

LoadGen has a FindPeakPerformance mode (``TestMode::FindPeakPerformance``, loadgen.cc) and it does not fit:

- it supports Server only (Offline logs ``kNotSupportedMsg`` and returns);
- it judges each point by ``PerfConstraintsMet`` alone (the latency bound), skipping min duration, min query
  count and early stopping, so its peak is not a load LoadGen would report VALID;
- it runs each point once and assumes validity is monotonic in the load, so one lucky run on a noisy machine
  sets the peak;
- the points it tried exist only as free-text ``generic_message`` lines in one detail log, with no verdict per
  point and no summary for the peak.

So the search runs here, one ordinary performance run per point, each in its own log directory and judged by
LoadGen's own ``result_validity``: Server doubles (or halves) the target QPS from the calibrated one until it
brackets the boundary, bisects until the lowest INVALID load is within ``--mlperf-find-peak-resolution`` of the
highest VALID one, then reruns the peak ``--mlperf-find-peak-confirm`` times; an INVALID rerun lowers the peak
and the bisection resumes below it. Offline has no latency bound and LoadGen marks a run INVALID only when it
was too short, so its peak is the highest samples/s of a VALID run: the expected QPS grows until runs are VALID,
and the confirmation reruns stand as further measurements.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_mlperf.results import RunResult

if TYPE_CHECKING:
    from pytest_mlperf.harness import Case, Harness

#: The most runs one search makes; a search that has not settled by then reports the best it found and fails.
MAX_POINTS = 40
#: Server halves the load at most this many times looking for a VALID one before giving up.
MAX_HALVINGS = 12
#: Offline raises the expected QPS by this factor over the measured samples/s of a run too short to be VALID.
OFFLINE_RAISE = 1.5
#: The scenarios find-peak searches; the others report their latency as usual.
SEARCHED = frozenset({"Server", "Offline"})


def _load_of(result: RunResult, key: str) -> float:
    value = result.overrides.get(key, result.settings.get("target_qps"))
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{result.id}: LoadGen recorded no {key} for the run; find-peak cannot continue")
    return float(value)


def _point(result: RunResult, load: float) -> dict[str, Any]:
    latency_key = result.thresholds.get("latency_percentile")
    latency = (result.metrics.latency_ns or {}).get(latency_key) if isinstance(latency_key, str) else None
    return {
        "load": load,
        "valid": result.valid is True,
        "qps": result.metrics.qps,
        "latency_ns": latency,
        "validity_reasons": list(result.validity_reasons),
        # A sibling of the run's own log directory: the results move with their logs.
        "log_dir": Path(result.log_dir).name,
    }


class _Search:
    """The points tried so far, and the runs behind them."""

    def __init__(self, harness: Harness, case: Case, record: Callable[[RunResult], None]) -> None:
        from pytest_mlperf.harness import LOAD_TARGETS

        self.harness = harness
        self.case = case
        self.record = record
        self.key = LOAD_TARGETS[case.scenario]
        self.points: list[dict[str, Any]] = []
        self.runs: list[RunResult] = []
        self.started = time.perf_counter()

    def probe(self, load: float | None) -> RunResult:
        """One full LoadGen run at *load* (None: the load the case would run at without find-peak)."""
        probe = replace(self.case, load=load, probe=len(self.points))
        failed: list[RunResult] = []
        try:
            result = self.harness.run(probe, failed.append)
        except BaseException:
            # A run whose inference raised is recorded with the search so far; then the failure goes on.
            if failed:
                self.runs.append(failed[0])
                self.points.append(_point(failed[0], load or _load_of(failed[0], self.key)))
                self.record(self.finish(failed[0], None, None, converged=False))
            raise
        self.runs.append(result)
        self.points.append(_point(result, load if load is not None else _load_of(result, self.key)))
        return result

    @property
    def load(self) -> float:
        return float(self.points[-1]["load"])

    def all_valid(self, load: float) -> bool:
        return all(p["valid"] for p in self.points if p["load"] == load)

    def finish(
        self, peak_run: RunResult, peak: float | None, above: float | None, *, converged: bool
    ) -> RunResult:
        """The run that stands for the case: the last one at the peak, carrying the whole search."""
        cfg = self.harness.config
        reasons = list(peak_run.reasons)
        if peak is None:
            reasons.append(f"find-peak: no load tried was VALID ({len(self.points)} run(s); see find_peak.points)")
        elif not converged:
            reasons.append(f"find-peak: not settled within {MAX_POINTS} runs; the peak is the best VALID load found")
        search = {
            "scenario": self.case.scenario,
            "measure": "server_target_qps" if self.case.scenario == "Server" else "samples_per_s",
            "peak": peak,
            "first_invalid_above": above,
            "bound": {
                "latency_percentile": peak_run.thresholds.get("latency_percentile"),
                "latency_ms": peak_run.thresholds.get("latency_ms"),
            },
            "resolution": cfg.find_peak_resolution,
            "confirm": cfg.find_peak_confirm,
            "converged": converged,
            "duration_s": round(time.perf_counter() - self.started, 3),
            "points": self.points,
        }
        return replace(peak_run, find_peak=search, reasons=reasons, passed=not reasons)


def search(harness: Harness, case: Case, record: Callable[[RunResult], None]) -> RunResult:
    """Search *case*'s peak; *record* receives the one run that stands for the case, with every point tried."""
    state = _Search(harness, case, record)
    result = _server(state) if case.scenario == "Server" else _offline(state)
    record(result)
    return result


def _server(state: _Search) -> RunResult:
    cfg = state.harness.config
    first = state.probe(None)
    lo: float | None = state.load if first.valid else None
    hi: float | None = None if first.valid else state.load
    halvings = 0
    converged = False
    while len(state.points) < MAX_POINTS:
        if lo is None:
            assert hi is not None
            if halvings >= MAX_HALVINGS:
                break
            halvings += 1
            candidate = hi / 2
        elif hi is None:
            candidate = lo * 2
        elif (hi - lo) / lo > cfg.find_peak_resolution:
            candidate = (lo + hi) / 2
        elif sum(1 for p in state.points if p["load"] == lo) <= cfg.find_peak_confirm:
            candidate = lo  # confirm the peak with another run at the same load
        else:
            converged = True
            break
        valid = state.probe(candidate).valid is True
        if valid and candidate != lo:
            lo = candidate
        elif not valid and candidate == lo:
            # The peak did not hold on a rerun: it becomes the bound above, and the best load below that
            # never failed becomes the peak.
            hi = lo
            below = [p["load"] for p in state.points if p["load"] < hi and state.all_valid(p["load"])]
            lo = max(below) if below else None
        elif not valid:
            hi = candidate
    if lo is None:
        return state.finish(state.runs[-1], None, hi, converged=False)
    peak_run = next(run for run, p in zip(reversed(state.runs), reversed(state.points), strict=True)
                    if p["load"] == lo)
    return state.finish(peak_run, lo, hi, converged=converged)


def _offline(state: _Search) -> RunResult:
    cfg = state.harness.config
    state.probe(None)
    while len(state.points) < MAX_POINTS:
        valid = [i for i, p in enumerate(state.points) if p["valid"]]
        if len(valid) > cfg.find_peak_confirm:
            break
        last = state.points[-1]
        # Too short to be VALID: LoadGen sizes the one query from the expected QPS, so ask for more.
        load = state.load if last["valid"] else max(state.load, (last["qps"] or 0.0)) * OFFLINE_RAISE
        state.probe(load)
    valid = [i for i, p in enumerate(state.points) if p["valid"]]
    if not valid:
        return state.finish(state.runs[-1], None, None, converged=False)
    best = max(valid, key=lambda i: state.points[i]["qps"] or 0.0)
    peak = state.points[best]["qps"]
    return state.finish(state.runs[best], peak, None, converged=len(valid) > cfg.find_peak_confirm)


def summary_lines(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per searched case for the terminal: the peak, the bound it held to, and the load above it."""
    lines = []
    for run in runs:
        search = run.get("find_peak")
        if not isinstance(search, Mapping):
            continue
        name = str(run.get("id", "")).split("::")[-1]
        tried = f"{len(search['points'])} run(s)"
        peak = search["peak"]
        if peak is None:
            lines.append(f"{name}: no VALID load found ({tried})")
            continue
        bound = search["bound"]
        if search["scenario"] == "Server":
            held = f"{bound['latency_percentile']} <= {bound['latency_ms']:g} ms" if bound["latency_ms"] else "VALID"
            above = search["first_invalid_above"]
            above_text = f", {above:,.1f} INVALID" if above is not None else ", no INVALID load above it found"
            text = f"peak {peak:,.1f} target QPS ({held}){above_text}"
        else:
            text = f"peak {peak:,.1f} samples/s (the best VALID run)"
        settled = "" if search["converged"] else " (not settled)"
        lines.append(f"{name}: {text}; {tried}{settled}")
    return lines
