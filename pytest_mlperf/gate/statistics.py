"""Decide whether one metric changed between base and head: a two-sample test plus a practical floor (pure).

A change is a regression (or an improvement) only when it is statistically significant at ``alpha`` *and* larger
than the floor. Too little data gives "no-change" with the reason, never an exception.

- Latency: per-query latencies. The p-value is Mann-Whitney U (scipy); the confidence interval is a bootstrap of
  ``head_stat / base_stat - 1`` for the gated statistic (p90, p99, ...). Both must agree for "significant".
- Throughput (and any metric with one value per run): repeated runs, Welch's t-test on log values, whose confidence
  interval is that of the ratio of geometric means.
- Accuracy: no statistics (a run is deterministic); an absolute target and a largest accepted drop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from pytest_mlperf.rules import DEFAULT_ACCURACY_TOLERANCE, DEFAULT_ALPHA, DEFAULT_FLOOR

Verdict = Literal["regression", "improvement", "no-change"]

DEFAULT_RESAMPLES = 2000
# Any fixed value will do: a fixed seed makes the same inputs give the same CI, so a verdict never flips on rerun.
DEFAULT_SEED = 20_261_129

# Percentile (as a fraction) per latency statistic; None is the mean.
STATISTICS: Mapping[str, float | None] = {
    "mean": None,
    "p50": 0.50,
    "p90": 0.90,
    "p95": 0.95,
    "p97": 0.97,
    "p99": 0.99,
    "p99.9": 0.999,
}
MIN_LATENCY_SAMPLES = 20
# A percentile estimated from fewer than this many samples above it is a guess, not a measurement.
MIN_TAIL_SAMPLES = 5
MIN_RUNS = 2

# Relative differences smaller than this are float noise from a*b/b round trips, not a change.
_EPS = 1e-12


@dataclass(frozen=True)
class GatePolicy:
    """How strict the gate is: significance level, practical floors (default, per metric, per case), accuracy drop."""

    alpha: float = DEFAULT_ALPHA
    floor: float = DEFAULT_FLOOR
    metric_floors: Mapping[str, float] = field(default_factory=dict)
    case_floors: Mapping[str, float] = field(default_factory=dict)
    accuracy_tolerance: float = DEFAULT_ACCURACY_TOLERANCE
    n_resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be between 0 and 1 (exclusive), got {self.alpha!r}; try 0.01")
        floors = {"floor": self.floor, **self.metric_floors, **self.case_floors}
        for name, value in floors.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0.0):
                raise ValueError(f"floor for {name!r} must be a fraction >= 0 (0.05 = 5 %), got {value!r}")
        if not (math.isfinite(self.accuracy_tolerance) and self.accuracy_tolerance >= 0.0):
            raise ValueError(f"accuracy_tolerance must be >= 0 (0.01 = 1 point), got {self.accuracy_tolerance!r}")
        if self.n_resamples < 100:
            raise ValueError(f"n_resamples must be >= 100 for a usable interval, got {self.n_resamples!r}")

    def floor_for(self, case_id: str, metric: str) -> float:
        """The floor for one case and metric: the case's own, else the metric's, else the default."""
        if case_id in self.case_floors:
            return self.case_floors[case_id]
        return self.metric_floors.get(metric, self.floor)

    def to_dict(self) -> dict[str, Any]:
        """The ``policy`` object of the comparison JSON."""
        out: dict[str, Any] = {"alpha": self.alpha, "floor": self.floor}
        if self.metric_floors:
            out["metric_floors"] = dict(self.metric_floors)
        if self.case_floors:
            out["case_floors"] = dict(self.case_floors)
        out["accuracy_tolerance"] = self.accuracy_tolerance
        return out


@dataclass(frozen=True)
class Decision:
    """The outcome for one metric of one case, in the units of the comparison JSON."""

    metric: str
    unit: str
    higher_is_better: bool
    verdict: Verdict
    base: float | None
    head: float | None
    change: float | None
    ci: tuple[float, float] | None
    p_value: float | None
    n_base: int
    n_head: int
    message: str


# --- formatting ---------------------------------------------------------------------------------------------


def format_percent(fraction: float) -> str:
    """``0.073`` -> ``+7.3``; signed, one decimal, no unit."""
    text = f"{fraction * 100:+.1f}"
    return "+0.0" if text == "-0.0" else text


def format_p(p: float) -> str:
    """A p-value as the messages print it: four decimals, or an upper bound below that."""
    return "p<0.0001" if p < 0.0001 else f"p={p:.4f}"


def format_floor(floor: float) -> str:
    return f"{floor * 100:g} %"


def effect_message(label: str, change: float, ci: tuple[float, float], p: float, floor: float) -> str:
    """E.g. ``p90 latency +7.3 % [+4.1, +10.2] vs baseline (p=0.0004, floor 5 %)``."""
    return (
        f"{label} {format_percent(change)} % [{format_percent(ci[0])}, {format_percent(ci[1])}] vs baseline "
        f"({format_p(p)}, floor {format_floor(floor)})"
    )


def latency_label(statistic: str) -> str:
    return f"{statistic} latency"


def latency_metric(statistic: str) -> str:
    """The comparison JSON's metric name for a latency statistic: ``p90`` -> ``p90_latency``."""
    return f"{statistic}_latency"


# --- the decision rule ----------------------------------------------------------------------------------------


def classify(
    change: float, ci: tuple[float, float], p_value: float, *, alpha: float, floor: float, higher_is_better: bool
) -> Verdict:
    """Regression/improvement only when significant (p < alpha and the CI excludes 0) and beyond the floor."""
    significant = p_value < alpha and (ci[0] > 0.0 or ci[1] < 0.0)
    if not significant or abs(change) <= floor + _EPS:
        return "no-change"
    worse = change < 0.0 if higher_is_better else change > 0.0
    return "regression" if worse else "improvement"


def _undecided(
    metric: str,
    unit: str,
    higher_is_better: bool,
    message: str,
    *,
    base: float | None = None,
    head: float | None = None,
    n_base: int = 0,
    n_head: int = 0,
) -> Decision:
    change = head / base - 1.0 if base and head is not None and base > 0 else None
    return Decision(
        metric=metric,
        unit=unit,
        higher_is_better=higher_is_better,
        verdict="no-change",
        base=base,
        head=head,
        change=change,
        ci=None,
        p_value=None,
        n_base=n_base,
        n_head=n_head,
        message=message,
    )


# --- latency: per-query distributions -------------------------------------------------------------------------


def loadgen_percentile(values: NDArray[np.float64], q: float, axis: int = -1) -> NDArray[np.float64]:
    """The percentile as LoadGen reports it: ``sorted[int(n * q)]`` (so recomputed values match the detail log)."""
    moved = np.moveaxis(values, axis, -1)
    n = moved.shape[-1]
    k = min(int(n * q), n - 1)
    result: NDArray[np.float64] = np.partition(moved, k, axis=-1)[..., k]
    return result


def _statistic(name: str) -> Callable[..., Any]:
    q = STATISTICS[name]
    if q is None:
        return lambda values, axis=-1: np.mean(values, axis=axis)
    return lambda values, axis=-1: loadgen_percentile(values, q, axis=axis)


def min_latency_samples(statistic: str) -> int:
    """Queries needed per side before ``statistic`` can be gated (p99 needs more than p50)."""
    q = STATISTICS[statistic]
    if q is None:
        return MIN_LATENCY_SAMPLES
    # round() first: 5 / (1 - 0.99) is 500.0000000000004 in floating point.
    return max(MIN_LATENCY_SAMPLES, math.ceil(round(MIN_TAIL_SAMPLES / (1.0 - q), 6)))


def _as_runs(runs: Sequence[ArrayLike], side: str) -> list[NDArray[np.float64]]:
    out = []
    for index, run in enumerate(runs):
        values = np.asarray(run, dtype=np.float64).ravel()
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(
                f"{side} run {index}: latencies must be finite and >= 0 (nanoseconds); "
                "check the latency_samples_ns of that run"
            )
        if values.size:
            out.append(values)
    return out


def _cluster_bootstrap_ci(
    base_runs: list[NDArray[np.float64]],
    head_runs: list[NDArray[np.float64]],
    stat: Callable[..., Any],
    *,
    confidence: float,
    n_resamples: int,
    seed: int,
) -> tuple[float, float]:
    # scipy.stats.bootstrap resamples single values only. With repeated runs the runs themselves vary (machine
    # state, drift), so resample runs first and queries within them, or the interval is far too narrow.
    rng = np.random.default_rng(seed)

    def resample(runs: list[NDArray[np.float64]]) -> float:
        picks = rng.integers(0, len(runs), size=len(runs))
        parts = [runs[i][rng.integers(0, runs[i].size, size=runs[i].size)] for i in picks]
        return float(stat(np.concatenate(parts)))

    ratios = np.array([resample(head_runs) / resample(base_runs) - 1.0 for _ in range(n_resamples)])
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(ratios, [tail, 1.0 - tail])
    return float(lo), float(hi)


def _bootstrap_ci(
    base: NDArray[np.float64],
    head: NDArray[np.float64],
    stat: Callable[..., Any],
    *,
    confidence: float,
    n_resamples: int,
    seed: int,
) -> tuple[float, float]:
    def ratio(b: NDArray[np.float64], h: NDArray[np.float64], axis: int = -1) -> Any:
        return stat(h, axis=axis) / stat(b, axis=axis) - 1.0

    # Percentile intervals, not BCa: BCa's jackknife is quadratic in the number of queries.
    # batch bounds memory: each batch holds batch x n resampled values per side.
    batch = max(1, 2_000_000 // max(base.size, head.size))
    result = stats.bootstrap(
        (base, head),
        ratio,
        n_resamples=n_resamples,
        batch=batch,
        vectorized=True,
        paired=False,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


def compare_latency(
    base_runs: Sequence[ArrayLike],
    head_runs: Sequence[ArrayLike],
    statistic: str = "p90",
    *,
    alpha: float = DEFAULT_ALPHA,
    floor: float = DEFAULT_FLOOR,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Decision:
    """Compare per-query latencies (ns), one array per run on each side; repeats of a case are separate runs.

    Lower is better. ``statistic`` is one of ``STATISTICS`` (p90, p99, mean, ...).
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown latency statistic {statistic!r}; use one of {', '.join(STATISTICS)}")
    metric, label = latency_metric(statistic), latency_label(statistic)
    stat = _statistic(statistic)
    b_runs, h_runs = _as_runs(base_runs, "base"), _as_runs(head_runs, "head")
    base = np.concatenate(b_runs) if b_runs else np.empty(0)
    head = np.concatenate(h_runs) if h_runs else np.empty(0)
    need = min_latency_samples(statistic)
    if base.size < need or head.size < need:
        return _undecided(
            metric,
            "ns",
            False,
            f"{label}: insufficient samples (base {base.size}, head {head.size} queries; need >= {need} per side)",
            base=float(stat(base)) if base.size else None,
            head=float(stat(head)) if head.size else None,
            n_base=base.size,
            n_head=head.size,
        )
    base_value, head_value = float(stat(base)), float(stat(head))
    common: dict[str, Any] = {"base": base_value, "head": head_value, "n_base": base.size, "n_head": head.size}
    if base_value <= 0.0:
        return _undecided(metric, "ns", False, f"{label}: base value is 0 ns, no ratio to report", **common)

    change = head_value / base_value - 1.0
    if np.array_equal(np.sort(base), np.sort(head)) or np.ptp(np.concatenate([base, head])) == 0.0:
        # Identical samples: the tests below are undefined (all ties) and the answer is known.
        p_value, ci = 1.0, (change, change)
    else:
        p_value = float(stats.mannwhitneyu(head, base, alternative="two-sided", method="auto").pvalue)
        confidence = 1.0 - alpha
        if len(b_runs) == 1 and len(h_runs) == 1:
            ci = _bootstrap_ci(base, head, stat, confidence=confidence, n_resamples=n_resamples, seed=seed)
        else:
            ci = _cluster_bootstrap_ci(b_runs, h_runs, stat, confidence=confidence, n_resamples=n_resamples, seed=seed)
    verdict = classify(change, ci, p_value, alpha=alpha, floor=floor, higher_is_better=False)
    return Decision(
        metric=metric,
        unit="ns",
        higher_is_better=False,
        verdict=verdict,
        base=base_value,
        head=head_value,
        change=change,
        ci=ci,
        p_value=p_value,
        n_base=base.size,
        n_head=head.size,
        message=effect_message(label, change, ci, p_value, floor),
    )


# --- throughput and other per-run values ----------------------------------------------------------------------


def compare_run_values(
    base_values: Sequence[float],
    head_values: Sequence[float],
    *,
    metric: str = "qps",
    label: str | None = None,
    unit: str = "samples/s",
    higher_is_better: bool = True,
    alpha: float = DEFAULT_ALPHA,
    floor: float = DEFAULT_FLOOR,
) -> Decision:
    """Compare one value per run (qps, or a per-run latency percentile) with Welch's t-test on log values.

    Logs make the test about ratios, which is what the floor and the message speak of; base and head are reported
    as geometric means so that ``change`` is exactly ``head / base - 1``.
    """
    label = label or metric
    base = np.asarray(base_values, dtype=np.float64).ravel()
    head = np.asarray(head_values, dtype=np.float64).ravel()
    counts = {"n_base": base.size, "n_head": head.size}
    if base.size < MIN_RUNS or head.size < MIN_RUNS:
        return _undecided(
            metric,
            unit,
            higher_is_better,
            f"{label}: insufficient samples (base {base.size}, head {head.size} runs; need >= {MIN_RUNS} per side, "
            "e.g. --mlperf-repeat 3)",
            base=float(np.mean(base)) if base.size else None,
            head=float(np.mean(head)) if head.size else None,
            **counts,
        )
    if not (np.all(np.isfinite(base)) and np.all(np.isfinite(head)) and base.min() > 0 and head.min() > 0):
        return _undecided(
            metric, unit, higher_is_better, f"{label}: values must be finite and > 0 to compare", **counts
        )
    log_b, log_h = np.log(base), np.log(head)
    base_value, head_value = float(np.exp(log_b.mean())), float(np.exp(log_h.mean()))
    diff = float(log_h.mean() - log_b.mean())
    change = math.expm1(diff)
    if np.ptp(log_b) == 0.0 and np.ptp(log_h) == 0.0:
        # No spread on either side: the t statistic is 0/0 or x/0. Recorded, deterministic values land here.
        p_value = 1.0 if abs(diff) <= _EPS else 0.0
        ci = (change, change)
    else:
        result = stats.ttest_ind(log_h, log_b, equal_var=False)
        p_value = float(result.pvalue)
        interval = result.confidence_interval(confidence_level=1.0 - alpha)
        ci = (math.expm1(float(interval.low)), math.expm1(float(interval.high)))
    verdict = classify(change, ci, p_value, alpha=alpha, floor=floor, higher_is_better=higher_is_better)
    return Decision(
        metric=metric,
        unit=unit,
        higher_is_better=higher_is_better,
        verdict=verdict,
        base=base_value,
        head=head_value,
        change=change,
        ci=ci,
        p_value=p_value,
        message=effect_message(label, change, ci, p_value, floor),
        **counts,
    )


def compare_throughput(
    base_qps: Sequence[float],
    head_qps: Sequence[float],
    *,
    alpha: float = DEFAULT_ALPHA,
    floor: float = DEFAULT_FLOOR,
) -> Decision:
    """Compare samples/s of repeated runs; higher is better."""
    return compare_run_values(base_qps, head_qps, alpha=alpha, floor=floor)


# --- accuracy -------------------------------------------------------------------------------------------------


def _points(fraction: float) -> str:
    return f"{fraction * 100:.2f}"


def compare_accuracy(
    base: float | None,
    head: float | None,
    *,
    name: str = "accuracy",
    tolerance: float = DEFAULT_ACCURACY_TOLERANCE,
    target: float | None = None,
    n_base: int = 0,
    n_head: int = 0,
) -> Decision:
    """Gate accuracy (a fraction, 0.975 = 97.5 %) on an absolute target and on a drop from base beyond tolerance."""
    label = f"{name} accuracy"
    counts = {"n_base": n_base, "n_head": n_head}
    if head is None:
        return _undecided("accuracy", "ratio", True, f"{label}: not measured in head", base=base, **counts)
    change = None if base is None else head - base
    verdict: Verdict = "no-change"
    if target is not None and head < target - _EPS:
        verdict = "regression"
        message = f"{label} {_points(head)} % below target {_points(target)} %"
        if change is not None:
            message += f" (baseline {_points(base or 0.0)} %)"
    elif change is None:
        message = f"{label} {_points(head)} %: no baseline value to compare with"
    else:
        if -change > tolerance + _EPS:
            verdict = "regression"
        elif change > tolerance + _EPS:
            verdict = "improvement"
        message = (
            f"{label} {_points(head)} % vs {_points(base or 0.0)} % baseline "
            f"({change * 100:+.2f} points, tolerance {tolerance * 100:.1f} points)"
        )
    return Decision(
        metric="accuracy",
        unit="ratio",
        higher_is_better=True,
        verdict=verdict,
        base=base,
        head=head,
        change=change,
        ci=None,
        p_value=None,
        message=message,
        **counts,
    )
