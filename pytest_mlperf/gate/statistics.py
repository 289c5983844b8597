"""Decide whether one metric changed between base and head: a run-level test plus a practical floor (pure).

A change is a regression (or an improvement) only when it is statistically significant at ``alpha`` *and* larger
than the floor. Too little data gives "no-change" with the reason, never an exception.

The noise model: a run's result is the code's true value times a run-level factor (machine state: other jobs, clock,
caches) times its own sampling error; on a runner the run-level factor dominates. So the unit of evidence is the
run, never the query: each run is summarised by the gated statistic (p90 of its queries, its samples/s) and the
test is Student's t on the logarithms of those per-run values, with the run-to-run spread pooled over both sides.

- Several runs per side: the pooled two-sample t-test; its interval is that of the ratio of geometric means.
- One run on one side, repeats on the other (a single head run against a nightly baseline with repeats): the same
  formula reduces to a prediction interval, the single run judged against the other side's run-to-run spread.
- One run per side: nothing separates machine noise from a change, so the verdict is "no-change" and the message
  says how many runs to add.
- Adaptive rounds (``Look``, ``--mlperf-repeat auto``): each look after a round tests at its own share of alpha
  (Pocock-type alpha spending), and a metric is decided once it is significant or a regression as large as the
  floor is implausible.
- Accuracy: no statistics (a run is deterministic); an absolute target and a largest accepted drop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from pytest_mlperf.rules import AUTO_ROUNDS, DEFAULT_ACCURACY_TOLERANCE, DEFAULT_ALPHA, DEFAULT_FLOOR

Verdict = Literal["regression", "improvement", "no-change"]


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
#: Runs per side that a comparison without any other noise estimate should have (the advice in messages).
ADVISED_RUNS = 3

#: Where a decision's run-to-run noise estimate came from (the comparison JSON's ``noise``).
Noise = Literal["between-runs", "base-runs", "head-runs", "none", "deterministic"]
NOISE_TEXT: Mapping[str, str] = {
    "between-runs": "run-to-run spread of both sides",
    "base-runs": "prediction interval from the base runs' spread",
    "head-runs": "prediction interval from the head runs' spread",
    "none": "none, one run per side",
    "deterministic": "none needed, accuracy is deterministic",
}

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

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be between 0 and 1 (exclusive), got {self.alpha!r}; try 0.01")
        floors = {"floor": self.floor, **self.metric_floors, **self.case_floors}
        for name, value in floors.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0.0):
                raise ValueError(f"floor for {name!r} must be a fraction >= 0 (0.05 = 5 %), got {value!r}")
        if not (math.isfinite(self.accuracy_tolerance) and self.accuracy_tolerance >= 0.0):
            raise ValueError(f"accuracy_tolerance must be >= 0 (0.01 = 1 point), got {self.accuracy_tolerance!r}")

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
    runs_base: int = 0
    runs_head: int = 0
    noise: Noise | None = None
    # Standard deviation of the per-run log values (about the run-to-run coefficient of variation).
    run_spread: float | None = None
    # False only at an interim look of an adaptive comparison: more rounds could still change the verdict.
    decided: bool = True


# --- adaptive rounds --------------------------------------------------------------------------------------------

# A metric stops early as "no-change" once a regression of the floor is outside this two-sided interval. Stopping
# for no-change never adds false regressions, so this level trades only rounds against power, not alpha.
FUTILITY_ALPHA = 0.20


def spent_alpha(fraction: float, alpha: float) -> float:
    """Pocock-type spending function (Lan-DeMets): the alpha spent once ``fraction`` of the rounds have run."""
    return alpha * math.log1p((math.e - 1.0) * min(max(fraction, 0.0), 1.0))


@dataclass(frozen=True)
class Look:
    """One interim look of an adaptive (``auto``) comparison: after ``round`` of at most ``max_rounds`` rounds.

    Each look tests at its own level, the alpha spent between the previous look and this one. The levels of all
    possible looks add up to alpha, so by the union bound the chance that *any* look of an unchanged pair flags a
    regression is at most alpha, whatever the correlation between looks and with the noise estimated afresh at
    each look (which the classical group-sequential boundaries for a known variance do not allow).
    """

    round: int
    min_rounds: int = AUTO_ROUNDS[0]
    max_rounds: int = AUTO_ROUNDS[1]

    def __post_init__(self) -> None:
        if not 1 <= self.min_rounds <= self.round <= self.max_rounds:
            raise ValueError(
                f"round {self.round} is outside {self.min_rounds}..{self.max_rounds}; an adaptive comparison looks "
                "only between its minimum and maximum rounds"
            )

    @property
    def last(self) -> bool:
        return self.round >= self.max_rounds

    def level(self, alpha: float) -> float:
        """This look's significance level: the alpha spent since the previous look (all of it at the first)."""
        before = 0.0 if self.round == self.min_rounds else spent_alpha((self.round - 1) / self.max_rounds, alpha)
        return spent_alpha(self.round / self.max_rounds, alpha) - before

    def to_dict(self, alpha: float) -> dict[str, Any]:
        return {"round": self.round, "min_rounds": self.min_rounds, "max_rounds": self.max_rounds,
                "level": self.level(alpha)}


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


def runs_text(runs_base: int, runs_head: int, noise: Noise, spread: float | None = None) -> str:
    """E.g. ``runs 3 base / 3 head, noise: run-to-run spread of both sides, 1.2 %``."""
    text = f"runs {runs_base} base / {runs_head} head, noise: {NOISE_TEXT[noise]}"
    return text if spread is None else f"{text}, {spread * 100:.1f} %"


def effect_message(
    label: str, change: float, ci: tuple[float, float], p: float, floor: float, context: str | None = None
) -> str:
    """E.g. ``p90 latency +7.3 % [+4.1, +10.2] vs baseline (p=0.0004, floor 5 %; runs 3 base / 3 head, ...)``."""
    extra = f"; {context}" if context else ""
    return (
        f"{label} {format_percent(change)} % [{format_percent(ci[0])}, {format_percent(ci[1])}] vs baseline "
        f"({format_p(p)}, floor {format_floor(floor)}{extra})"
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
    runs_base: int = 0,
    runs_head: int = 0,
    noise: Noise | None = None,
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
        runs_base=runs_base,
        runs_head=runs_head,
        noise=noise,
    )


@dataclass(frozen=True)
class RunTest:
    """Head against base on per-run log values: the difference of their means, its p-value and interval."""

    diff: float
    p_value: float
    ci: tuple[float, float]  # of exp(diff) - 1, the ratio of geometric means minus one
    spread: float  # pooled standard deviation of the per-run log values
    noise: Noise
    se: float
    df: int

    def interval(self, alpha: float) -> tuple[float, float]:
        """The two-sided interval of exp(diff) - 1 at level 1 - alpha."""
        half = float(stats.t.ppf(1.0 - alpha / 2.0, self.df)) * self.se if self.se > 0.0 else 0.0
        return math.expm1(self.diff - half), math.expm1(self.diff + half)


def run_test(log_base: NDArray[np.float64], log_head: NDArray[np.float64], *, alpha: float) -> RunTest | None:
    """Student's t with the run-to-run spread pooled over both sides; None with one run per side.

    Pooled rather than Welch: base and head run on one machine (interleaved in the Action, fingerprints checked
    otherwise), so the run-level noise is the machine's and the same on both sides. Pooling keeps all n_b + n_h - 2
    degrees of freedom, which matters with 2-3 runs per side, and it still works with a single run on one side: the
    test is then exactly the prediction interval of that run against the other side's runs.
    """
    nb, nh = log_base.size, log_head.size
    df = nb + nh - 2
    if nb < 1 or nh < 1 or df < 1:
        return None
    diff = float(log_head.mean() - log_base.mean())
    squares = float(np.sum((log_base - log_base.mean()) ** 2) + np.sum((log_head - log_head.mean()) ** 2))
    spread = math.sqrt(squares / df)
    noise: Noise = "between-runs" if min(nb, nh) >= 2 else ("base-runs" if nh == 1 else "head-runs")
    se = spread * math.sqrt(1.0 / nb + 1.0 / nh)
    if se == 0.0:
        # No spread anywhere: recorded, deterministic values. Any difference is certain, none is certainly none.
        p_value = 1.0 if abs(diff) <= _EPS else 0.0
        return RunTest(diff, p_value, (math.expm1(diff), math.expm1(diff)), 0.0, noise, 0.0, df)
    p_value = float(2.0 * stats.t.sf(abs(diff) / se, df))
    test = RunTest(diff, p_value, (0.0, 0.0), spread, noise, se, df)
    return replace(test, ci=test.interval(alpha))


def _one_run_each_message(label: str, change: float) -> str:
    return (
        f"{label}: not decided, {format_percent(change)} % from one run per side cannot be told from machine noise "
        f"({runs_text(1, 1, 'none')}); add {ADVISED_RUNS - 1} runs per side (--mlperf-repeat {ADVISED_RUNS}), "
        f"or compare with a baseline recorded with --mlperf-repeat {ADVISED_RUNS} or more"
    )


def _decide_runs(
    log_base: NDArray[np.float64],
    log_head: NDArray[np.float64],
    *,
    metric: str,
    label: str,
    unit: str,
    higher_is_better: bool,
    base: float,
    head: float,
    change: float,
    n_base: int,
    n_head: int,
    alpha: float,
    floor: float,
    look: Look | None = None,
) -> Decision:
    """The decision on per-run log values; ``base``, ``head`` and ``change`` are what the report shows."""
    counts: dict[str, Any] = {
        "n_base": n_base, "n_head": n_head, "runs_base": log_base.size, "runs_head": log_head.size
    }
    level = alpha if look is None else look.level(alpha)
    test = run_test(log_base, log_head, alpha=level)
    if test is None:
        undecided = _undecided(
            metric, unit, higher_is_better, _one_run_each_message(label, change), base=base, head=head, noise="none",
            **counts,
        )
        return undecided if look is None or look.last else replace(undecided, decided=False)
    verdict = classify(change, test.ci, test.p_value, alpha=level, floor=floor, higher_is_better=higher_is_better)
    context = runs_text(log_base.size, log_head.size, test.noise, test.spread)
    decided = True
    if look is not None:
        context = f"round {look.round} of {look.min_rounds}-{look.max_rounds}, level {level:.2g}; {context}"
        if verdict == "no-change" and not look.last:
            low, high = test.interval(FUTILITY_ALPHA)
            # Decided once a regression as large as the floor is implausible; improvements never fail a PR.
            decided = low > -floor if higher_is_better else high < floor
            if not decided:
                context += "; not decided yet"
    return Decision(
        metric=metric,
        unit=unit,
        higher_is_better=higher_is_better,
        verdict=verdict,
        base=base,
        head=head,
        change=change,
        ci=test.ci,
        p_value=test.p_value,
        message=effect_message(label, change, test.ci, test.p_value, floor, context),
        noise=test.noise,
        run_spread=test.spread,
        decided=decided,
        **counts,
    )


# --- latency: per-query distributions -------------------------------------------------------------------------


def loadgen_percentile(values: NDArray[np.float64], q: float, axis: int = -1) -> NDArray[np.float64]:
    """The percentile as LoadGen reports it: ``sorted[int(n * q)]`` (so recomputed values match the detail log)."""
    moved = np.moveaxis(values, axis, -1)
    n = moved.shape[-1]
    k = min(int(n * q), n - 1)
    result: NDArray[np.float64] = np.partition(moved, k, axis=-1)[..., k]
    return result


def _statistic(name: str) -> Callable[[NDArray[np.float64]], float]:
    q = STATISTICS[name]
    if q is None:
        return lambda values: float(np.mean(values))
    return lambda values: float(loadgen_percentile(values, q))


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


def compare_latency(
    base_runs: Sequence[ArrayLike],
    head_runs: Sequence[ArrayLike],
    statistic: str = "p90",
    *,
    alpha: float = DEFAULT_ALPHA,
    floor: float = DEFAULT_FLOOR,
    look: Look | None = None,
) -> Decision:
    """Compare per-query latencies (ns), one array per run on each side; repeats of a case are separate runs.

    Lower is better. ``statistic`` is one of ``STATISTICS`` (p90, p99, mean, ...). Base and head in the decision
    are the statistic over all queries of a side; the test is on the statistic of each run (see the module doc).
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown latency statistic {statistic!r}; use one of {', '.join(STATISTICS)}")
    metric, label = latency_metric(statistic), latency_label(statistic)
    stat = _statistic(statistic)
    b_runs, h_runs = _as_runs(base_runs, "base"), _as_runs(head_runs, "head")
    base = np.concatenate(b_runs) if b_runs else np.empty(0)
    head = np.concatenate(h_runs) if h_runs else np.empty(0)
    counts: dict[str, Any] = {"n_base": base.size, "n_head": head.size, "runs_base": len(b_runs),
                              "runs_head": len(h_runs)}
    need = min_latency_samples(statistic)
    if base.size < need or head.size < need:
        return _undecided(
            metric,
            "ns",
            False,
            f"{label}: insufficient samples (base {base.size}, head {head.size} queries; need >= {need} per side; "
            f"runs {len(b_runs)} base / {len(h_runs)} head)",
            base=stat(base) if base.size else None,
            head=stat(head) if head.size else None,
            **counts,
        )
    base_value, head_value = stat(base), stat(head)
    per_run_b = np.array([stat(run) for run in b_runs])
    per_run_h = np.array([stat(run) for run in h_runs])
    if base_value <= 0.0 or per_run_b.min() <= 0.0 or per_run_h.min() <= 0.0:
        return _undecided(
            metric, "ns", False,
            f"{label}: a run's value is 0 ns, no ratio to report (runs {len(b_runs)} base / {len(h_runs)} head)",
            base=base_value, head=head_value, **counts,
        )
    return _decide_runs(
        np.log(per_run_b),
        np.log(per_run_h),
        metric=metric,
        label=label,
        unit="ns",
        higher_is_better=False,
        base=base_value,
        head=head_value,
        change=head_value / base_value - 1.0,
        n_base=base.size,
        n_head=head.size,
        alpha=alpha,
        floor=floor,
        look=look,
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
    look: Look | None = None,
) -> Decision:
    """Compare one value per run (qps, or a per-run latency percentile) on log values (see the module doc).

    Logs make the test about ratios, which is what the floor and the message speak of; base and head are reported
    as geometric means so that ``change`` is exactly ``head / base - 1``.
    """
    label = label or metric
    base = np.asarray(base_values, dtype=np.float64).ravel()
    head = np.asarray(head_values, dtype=np.float64).ravel()
    counts: dict[str, Any] = {"n_base": base.size, "n_head": head.size, "runs_base": base.size,
                              "runs_head": head.size}
    if base.size < 1 or head.size < 1:
        return _undecided(
            metric,
            unit,
            higher_is_better,
            f"{label}: insufficient samples (base {base.size}, head {head.size} runs; need >= 1 per side and "
            f"better {ADVISED_RUNS}, e.g. --mlperf-repeat {ADVISED_RUNS})",
            base=float(np.mean(base)) if base.size else None,
            head=float(np.mean(head)) if head.size else None,
            **counts,
        )
    if not (np.all(np.isfinite(base)) and np.all(np.isfinite(head)) and base.min() > 0 and head.min() > 0):
        return _undecided(
            metric, unit, higher_is_better,
            f"{label}: values must be finite and > 0 to compare (runs {base.size} base / {head.size} head)", **counts
        )
    log_b, log_h = np.log(base), np.log(head)
    return _decide_runs(
        log_b,
        log_h,
        metric=metric,
        label=label,
        unit=unit,
        higher_is_better=higher_is_better,
        base=float(np.exp(log_b.mean())),
        head=float(np.exp(log_h.mean())),
        change=math.expm1(float(log_h.mean() - log_b.mean())),
        alpha=alpha,
        floor=floor,
        n_base=base.size,
        n_head=head.size,
        look=look,
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
    runs_base: int = 1,
    runs_head: int = 1,
) -> Decision:
    """Gate accuracy (a fraction, 0.975 = 97.5 %) on an absolute target and on a drop from base beyond tolerance."""
    label = f"{name} accuracy"
    runs = {"runs_base": runs_base, "runs_head": runs_head}
    counts: dict[str, Any] = {"n_base": n_base, "n_head": n_head, **runs}
    context = runs_text(runs_base, runs_head, "deterministic")
    if head is None:
        return _undecided(
            "accuracy", "ratio", True, f"{label}: not measured in head ({context})", base=base,
            noise="deterministic", **counts,
        )
    change = None if base is None else head - base
    verdict: Verdict = "no-change"
    if target is not None and head < target - _EPS:
        verdict = "regression"
        message = f"{label} {_points(head)} % below target {_points(target)} %"
        if change is not None:
            message += f" (baseline {_points(base or 0.0)} %; {context})"
        else:
            message += f" ({context})"
    elif change is None:
        message = f"{label} {_points(head)} %: no baseline value to compare with ({context})"
    else:
        if -change > tolerance + _EPS:
            verdict = "regression"
        elif change > tolerance + _EPS:
            verdict = "improvement"
        message = (
            f"{label} {_points(head)} % vs {_points(base or 0.0)} % baseline "
            f"({change * 100:+.2f} points, tolerance {tolerance * 100:.1f} points; {context})"
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
        noise="deterministic",
        **counts,
    )
