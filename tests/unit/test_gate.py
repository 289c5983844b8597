"""The regression decision on synthetic samples with known effects, and the per-query latency parser feeding it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pytest_mlperf.errors import LoadGenError
from pytest_mlperf.gate.statistics import (
    AUTO_ROUNDS,
    GatePolicy,
    Look,
    compare_accuracy,
    compare_latency,
    compare_run_values,
    compare_throughput,
    effect_message,
    loadgen_percentile,
    min_latency_samples,
)
from pytest_mlperf.loadgen.trace import per_query_latencies_ns, per_sample_latencies_ns

MESSAGE = re.compile(
    r"^p90 latency [+-]\d+\.\d % \[[+-]\d+\.\d, [+-]\d+\.\d\] vs baseline \(p(=0\.\d{4}|<0\.0001), floor 5 %; "
    r"runs \d+ base / \d+ head, noise: run-to-run spread of both sides, \d+\.\d %\)$"
)


def latencies(seed: int, n: int = 1000, scale: float = 1.0) -> np.ndarray:
    """Right-skewed per-query latencies around 10 ms, like a real SUT's."""
    rng = np.random.default_rng(seed)
    return rng.lognormal(np.log(10e6), 0.1, n) * scale


def bimodal(seed: int, n: int = 1000, scale: float = 1.0) -> np.ndarray:
    """Half the queries hit a fast path (5 ms), half a slow one (12 ms)."""
    rng = np.random.default_rng(seed)
    fast = rng.random(n) < 0.5
    return np.where(fast, rng.normal(5e6, 2e5, n), rng.normal(12e6, 4e5, n)) * scale


def repeats(
    seed: int, k: int = 5, scale: float = 1.0, run_sigma: float = 0.005, make: Callable[..., np.ndarray] = latencies
) -> list[np.ndarray]:
    """``k`` runs of one side, each shifted as a whole by a lognormal factor (the machine's state during that run)."""
    factors = np.random.default_rng(seed).lognormal(0.0, run_sigma, k) if run_sigma else np.ones(k)
    return [make(seed * 100 + i, scale=scale * float(f)) for i, f in enumerate(factors)]


def runs_qps(seed: int, n: int, mean: float = 1000.0, cv: float = 0.02) -> list[float]:
    return list(np.random.default_rng(seed).lognormal(np.log(mean), cv, n))


# --- latency --------------------------------------------------------------------------------------------------


def test_message_has_the_documented_shape() -> None:
    assert (
        effect_message("p90 latency", 0.073, (0.041, 0.102), 0.0004, 0.05)
        == "p90 latency +7.3 % [+4.1, +10.2] vs baseline (p=0.0004, floor 5 %)"
    )


def test_no_effect_is_no_change() -> None:
    decision = compare_latency(repeats(1), repeats(2))
    assert decision.verdict == "no-change"
    assert decision.ci is not None
    assert decision.ci[0] < 0 < decision.ci[1]
    assert decision.p_value is not None
    assert decision.p_value > 0.01
    assert MESSAGE.match(decision.message), decision.message


def test_three_percent_is_detected_but_below_the_floor() -> None:
    decision = compare_latency(repeats(1), repeats(2, scale=1.03))
    assert decision.p_value is not None
    assert decision.p_value < 0.01  # real, measurable...
    assert decision.change is not None
    assert 0.0 < decision.change < 0.05  # ...but smaller than the practical floor
    assert decision.verdict == "no-change"


def test_three_percent_regresses_under_a_two_percent_floor() -> None:
    decision = compare_latency(repeats(1), repeats(2, scale=1.03), floor=0.02)
    assert decision.verdict == "regression"
    assert "floor 2 %" in decision.message


def test_ten_percent_slower_is_a_regression_with_its_interval() -> None:
    decision = compare_latency(repeats(1), repeats(2, scale=1.10))
    assert decision.verdict == "regression"
    assert decision.change == pytest.approx(0.10, abs=0.02)
    assert decision.ci is not None
    assert decision.change is not None
    assert 0.05 < decision.ci[0] < decision.change < decision.ci[1]
    assert MESSAGE.match(decision.message), decision.message
    assert decision.message.startswith("p90 latency +")
    assert (decision.n_base, decision.n_head, decision.unit) == (5000, 5000, "ns")
    assert (decision.runs_base, decision.runs_head, decision.noise) == (5, 5, "between-runs")
    assert decision.run_spread is not None and 0.0 < decision.run_spread < 0.05


def test_ten_percent_faster_is_an_improvement() -> None:
    decision = compare_latency(repeats(1), repeats(2, scale=0.90))
    assert decision.verdict == "improvement"
    assert decision.change is not None
    assert decision.change < -0.05


def test_a_few_huge_outliers_do_not_move_the_verdict() -> None:
    head = repeats(1)
    for run in head:
        run[:5] *= 20  # 0.5 % of queries stall (a GC pause, a page fault storm)
    for statistic in ("p50", "p90", "mean"):
        decision = compare_latency(repeats(2), head, statistic)
        if statistic == "mean":
            # The mean is not robust: the spike moves it, and the gate says so rather than hiding it.
            assert decision.change is not None
            assert decision.change > 0.05
        else:
            assert decision.verdict == "no-change", decision.message


def test_one_slow_repeat_out_of_three_is_noise_not_a_regression() -> None:
    # A run-level spike (the runner was busy for one repeat): resampling runs, not only queries, keeps it honest.
    base = [latencies(seed) for seed in (1, 2, 3)]
    head = [latencies(4), latencies(5), latencies(6, scale=2.0)]
    decision = compare_latency(base, head)
    assert decision.verdict == "no-change", decision.message
    assert decision.ci is not None
    assert decision.ci[0] <= 0.0


def test_repeats_with_a_consistent_slowdown_regress() -> None:
    base = [latencies(seed) for seed in (1, 2, 3)]
    head = [latencies(seed, scale=1.10) for seed in (4, 5, 6)]
    decision = compare_latency(base, head)
    assert decision.verdict == "regression"
    assert decision.n_base == 3000


def test_bimodal_same_mixture_is_no_change() -> None:
    decision = compare_latency(repeats(1, make=bimodal), repeats(2, make=bimodal))
    assert decision.verdict == "no-change", decision.message


def test_bimodal_shifted_ten_percent_regresses() -> None:
    decision = compare_latency(repeats(1, make=bimodal), repeats(2, scale=1.10, make=bimodal))
    assert decision.verdict == "regression", decision.message


# --- the run-level noise model ---------------------------------------------------------------------------------


def noisy_side(rng: np.random.Generator, k: int, run_sigma: float, scale: float = 1.0) -> list[np.ndarray]:
    """``k`` runs of 1000 queries: per-query lognormal jitter, 1 % heavy tail, each run shifted as a whole."""
    runs = []
    for _ in range(k):
        values = rng.lognormal(np.log(10e6), 0.1, 1000)
        tail = rng.random(1000) < 0.01
        values[tail] *= rng.pareto(2.0, tail.sum()) + 2.0
        runs.append(values * scale * rng.lognormal(0.0, run_sigma))
    return runs


def test_one_run_per_side_never_flags_under_run_level_noise() -> None:
    # The case: thousands of queries per run, but the runs differ as a whole by 4 %. Treating the queries
    # as independent flagged 30 % of identical pairs; one run per side must not decide at all.
    rng = np.random.default_rng(11)
    decisions = [compare_latency(noisy_side(rng, 1, 0.04), noisy_side(rng, 1, 0.04)) for _ in range(100)]
    assert {d.verdict for d in decisions} == {"no-change"}
    assert {d.noise for d in decisions} == {"none"}
    assert max(abs(d.change or 0.0) for d in decisions) > 0.05  # the noise really moves single runs past the floor
    assert all(
        d.p_value is None and "runs 1 base / 1 head" in d.message and "add 2 runs per side" in d.message
        for d in decisions
    )


def test_one_run_per_side_is_undecided_even_for_a_huge_change() -> None:
    decision = compare_latency([latencies(1)], [latencies(2, scale=2.0)])
    assert (decision.verdict, decision.noise, decision.ci) == ("no-change", "none", None)
    assert decision.message.startswith("p90 latency: not decided, +")
    assert (decision.runs_base, decision.runs_head, decision.n_base) == (1, 1, 1000)


def test_repeats_under_run_level_noise_keep_false_regressions_below_alpha() -> None:
    # Query-level tests see thousands of samples and call a 2-4 % run shift significant; the run-level test
    # measures that shift as noise. 200 identical pairs of 3 runs each, at 1 % and 4 % run-to-run noise.
    rng = np.random.default_rng(12)
    for sigma in (0.01, 0.04):
        verdicts = [compare_latency(noisy_side(rng, 3, sigma), noisy_side(rng, 3, sigma)).verdict for _ in range(200)]
        assert verdicts.count("regression") <= 2, (sigma, verdicts.count("regression"))


def test_p_value_and_interval_agree() -> None:
    rng = np.random.default_rng(13)
    for scale in (1.0, 1.03, 1.06, 1.12):
        decision = compare_latency(noisy_side(rng, 3, 0.02), noisy_side(rng, 3, 0.02, scale))
        assert decision.p_value is not None and decision.ci is not None
        assert (decision.p_value < 0.01) == (decision.ci[0] > 0.0 or decision.ci[1] < 0.0), decision.message


def test_a_single_head_run_is_judged_against_the_baselines_spread() -> None:
    rng = np.random.default_rng(14)
    base = noisy_side(rng, 5, 0.02)
    slow = compare_latency(base, noisy_side(rng, 1, 0.02, scale=1.30))
    assert (slow.verdict, slow.noise, slow.runs_base, slow.runs_head) == ("regression", "base-runs", 5, 1)
    assert "runs 5 base / 1 head, noise: prediction interval from the base runs' spread, " in slow.message
    same = compare_latency(base, noisy_side(rng, 1, 0.02))
    assert (same.verdict, same.noise) == ("no-change", "base-runs")
    # The reverse (one old run, a head with repeats) borrows the head's spread.
    assert compare_throughput([1000.0], runs_qps(3, 4, mean=700.0)).noise == "head-runs"


def test_single_head_runs_against_a_baseline_with_repeats_rarely_flag() -> None:
    rng = np.random.default_rng(15)
    flagged = 0
    for _ in range(200):
        base = [float(v) for v in rng.lognormal(np.log(1000.0), 0.04, 5)]
        flagged += compare_throughput(base, [float(rng.lognormal(np.log(1000.0), 0.04))]).verdict != "no-change"
    assert flagged <= 4


def test_one_noisy_run_widens_the_prediction_interval() -> None:
    base = [1000.0, 1010.0, 990.0, 700.0]  # one baseline repeat ran while the runner was busy
    assert compare_throughput(base, [850.0]).verdict == "no-change"
    assert compare_throughput(base[:3], [850.0]).verdict == "regression"


# --- adaptive rounds (--mlperf-repeat auto) -------------------------------------------------------------------


def test_the_levels_of_all_looks_add_up_to_alpha() -> None:
    levels = [Look(k).level(0.01) for k in range(AUTO_ROUNDS[0], AUTO_ROUNDS[1] + 1)]
    assert sum(levels) == pytest.approx(0.01)
    assert levels[0] > 0.004  # Pocock-type: a large share at the first look, so clear cases stop there
    assert all(level > 0 for level in levels)
    with pytest.raises(ValueError, match=r"round 2 is outside 3\.\.10"):
        Look(2)


def sequential(rng: np.random.Generator, sigma: float, mean: float) -> tuple[str, int]:
    """Rounds of one base and one head qps value each, until decided: (verdict, rounds used)."""
    base: list[float] = []
    head: list[float] = []
    for rnd in range(1, AUTO_ROUNDS[1] + 1):
        base.append(float(rng.lognormal(np.log(1000.0), sigma)))
        head.append(float(rng.lognormal(np.log(mean), sigma)))
        if rnd < AUTO_ROUNDS[0]:
            continue
        decision = compare_run_values(base, head, look=Look(rnd))
        if decision.decided:
            return decision.verdict, rnd
    raise AssertionError("the last look is always decided")


def test_auto_keeps_false_regressions_at_alpha_over_all_looks() -> None:
    rng = np.random.default_rng(21)
    outcomes = [sequential(rng, 0.04, 1000.0) for _ in range(300)]
    assert sum(verdict == "regression" for verdict, _ in outcomes) <= 3
    assert max(rounds for _, rounds in outcomes) > AUTO_ROUNDS[0]  # borderline pairs did take more rounds


def test_auto_stops_clear_cases_at_the_minimum_and_pays_only_for_borderline_ones() -> None:
    rng = np.random.default_rng(22)
    assert sequential(rng, 0.005, 700.0) == ("regression", 3)
    assert sequential(rng, 0.005, 1000.0) == ("no-change", 3)
    assert sequential(rng, 0.02, 900.0)[0] == "regression"  # a 10 % drop under 2 % noise


def test_an_interim_look_says_it_is_not_decided() -> None:
    decision = compare_throughput([1000.0, 1040.0, 960.0], [960.0, 1000.0, 920.0])
    assert decision.decided  # a fixed design always decides
    interim = compare_run_values([1000.0, 1040.0, 960.0], [960.0, 1000.0, 920.0], look=Look(3))
    assert (interim.verdict, interim.decided) == ("no-change", False)
    assert "round 3 of 3-10, level 0.0042; runs 3 base / 3 head" in interim.message
    assert interim.message.endswith("; not decided yet)")
    final = compare_run_values([1000.0, 1040.0, 960.0], [960.0, 1000.0, 920.0], look=Look(10))
    assert final.decided


@pytest.mark.parametrize(("n_base", "n_head"), [(0, 0), (5, 5), (5, 1000), (1000, 49)])
def test_tiny_samples_are_undecided_not_a_crash(n_base: int, n_head: int) -> None:
    decision = compare_latency([latencies(1, n_base)], [latencies(2, n_head, scale=2.0)])
    assert decision.verdict == "no-change"
    assert decision.p_value is None
    assert decision.ci is None
    assert "insufficient samples" in decision.message
    assert f"base {n_base}, head {n_head} queries; need >= 50" in decision.message


def test_tail_percentiles_need_more_samples() -> None:
    assert min_latency_samples("p50") == 20
    assert min_latency_samples("p90") == 50
    assert min_latency_samples("p99") == 500
    decision = compare_latency([latencies(1, 200)], [latencies(2, 200)], "p99")
    assert "need >= 500" in decision.message


def test_identical_samples() -> None:
    samples = repeats(1)
    decision = compare_latency(samples, [run.copy() for run in samples])
    assert (decision.verdict, decision.change, decision.p_value) == ("no-change", 0.0, 1.0)
    constant = compare_latency([np.full(100, 5e6)] * 3, [np.full(100, 5e6)] * 3)
    assert (constant.verdict, constant.change, constant.ci, constant.p_value) == ("no-change", 0.0, (0.0, 0.0), 1.0)


def test_same_inputs_give_the_same_interval() -> None:
    first = compare_latency(repeats(1), repeats(2, scale=1.04))
    second = compare_latency(repeats(1), repeats(2, scale=1.04))
    assert first == second


def test_negative_latencies_are_refused_with_the_run_named() -> None:
    bad = latencies(1)
    bad[3] = -1
    with pytest.raises(ValueError, match="head run 0: latencies must be finite and >= 0"):
        compare_latency([latencies(2)], [bad])


def test_loadgen_percentile_is_sorted_at_int_n_q() -> None:
    values = np.arange(1000, dtype=np.float64)[::-1]
    assert loadgen_percentile(values, 0.90) == 900.0
    assert loadgen_percentile(values, 0.999) == 999.0
    assert loadgen_percentile(np.arange(10.0), 0.99) == 9.0


# --- throughput -----------------------------------------------------------------------------------------------


def test_throughput_ten_percent_drop_regresses() -> None:
    decision = compare_throughput(runs_qps(1, 5), runs_qps(2, 5, mean=900.0))
    assert decision.verdict == "regression"
    assert decision.higher_is_better
    assert re.match(
        r"^qps -\d+\.\d % \[-\d+\.\d, -\d+\.\d\] vs baseline \(p(=0\.\d{4}|<0\.0001), floor 5 %; runs 5 base / 5 head, "
        r"noise: run-to-run spread of both sides, \d\.\d %\)$",
        decision.message,
    )


def test_throughput_gain_is_an_improvement() -> None:
    assert compare_throughput(runs_qps(1, 5), runs_qps(2, 5, mean=1150.0)).verdict == "improvement"


def test_throughput_no_effect_and_small_effect_are_no_change() -> None:
    assert compare_throughput(runs_qps(1, 5), runs_qps(2, 5)).verdict == "no-change"
    assert compare_throughput(runs_qps(1, 5), runs_qps(2, 5, mean=970.0)).verdict == "no-change"


def test_throughput_one_bad_run_is_noise() -> None:
    head = [*runs_qps(2, 4), 500.0]  # one repeat ran while the runner was busy
    decision = compare_throughput(runs_qps(1, 5), head)
    assert decision.verdict == "no-change", decision.message


def test_throughput_single_runs_are_undecided_however_large_the_change() -> None:
    decision = compare_throughput([1000.0], [500.0])
    assert (decision.verdict, decision.p_value, decision.ci, decision.noise) == ("no-change", None, None, "none")
    assert decision.change == pytest.approx(-0.5)
    assert decision.message == (
        "qps: not decided, -50.0 % from one run per side cannot be told from machine noise (runs 1 base / 1 head, "
        "noise: none, one run per side); add 2 runs per side (--mlperf-repeat 3), or compare with a baseline "
        "recorded with --mlperf-repeat 3 or more"
    )
    empty = compare_throughput([], [500.0])
    assert "insufficient samples (base 0, head 1 runs" in empty.message


def test_throughput_identical_and_deterministic_values() -> None:
    same = compare_throughput([1000.0] * 3, [1000.0] * 3)
    assert (same.verdict, same.p_value, same.change) == ("no-change", 1.0, 0.0)
    # Recorded, noiseless values still decide: a 20 % drop with no spread is certain.
    drop = compare_throughput([1000.0] * 3, [800.0] * 3)
    assert drop.verdict == "regression"
    assert drop.change == pytest.approx(-0.2)


def test_throughput_non_positive_values_are_undecided() -> None:
    decision = compare_throughput([1000.0, 0.0], [900.0, 950.0])
    assert decision.verdict == "no-change"
    assert "must be finite and > 0" in decision.message


# --- accuracy -------------------------------------------------------------------------------------------------


def test_accuracy_below_target_regresses_even_without_a_drop() -> None:
    decision = compare_accuracy(0.965, 0.965, name="top1", target=0.97)
    assert decision.verdict == "regression"
    assert decision.message == (
        "top1 accuracy 96.50 % below target 97.00 % (baseline 96.50 %; runs 1 base / 1 head, "
        "noise: none needed, accuracy is deterministic)"
    )
    assert decision.noise == "deterministic"


def test_accuracy_drop_beyond_tolerance_regresses() -> None:
    decision = compare_accuracy(0.975, 0.960, name="top1", tolerance=0.01)
    assert decision.verdict == "regression"
    assert decision.message == (
        "top1 accuracy 96.00 % vs 97.50 % baseline (-1.50 points, tolerance 1.0 points; runs 1 base / 1 head, "
        "noise: none needed, accuracy is deterministic)"
    )


def test_accuracy_within_tolerance_and_gains() -> None:
    assert compare_accuracy(0.975, 0.972).verdict == "no-change"
    assert compare_accuracy(0.975, 0.965).verdict == "no-change"  # exactly at the tolerance
    assert compare_accuracy(0.95, 0.975).verdict == "improvement"
    assert compare_accuracy(0.975, None, runs_head=0).message == (
        "accuracy accuracy: not measured in head (runs 1 base / 0 head, noise: none needed, accuracy is deterministic)"
    )


# --- policy ---------------------------------------------------------------------------------------------------


def test_policy_floor_precedence() -> None:
    policy = GatePolicy(floor=0.05, metric_floors={"qps": 0.03}, case_floors={"t[Offline]": 0.10})
    assert policy.floor_for("t[Offline]", "qps") == 0.10
    assert policy.floor_for("t[Server]", "qps") == 0.03
    assert policy.floor_for("t[Server]", "p99_latency") == 0.05
    assert policy.to_dict()["metric_floors"] == {"qps": 0.03}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "alpha must be between 0 and 1"),
        ({"floor": -0.1}, "floor for 'floor' must be a fraction >= 0"),
        ({"metric_floors": {"qps": float("nan")}}, "floor for 'qps'"),
        ({"accuracy_tolerance": -1.0}, "accuracy_tolerance must be >= 0"),
    ],
)
def test_policy_rejects_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GatePolicy(**kwargs)  # type: ignore[arg-type]


# --- per-query latencies from the LoadGen trace ----------------------------------------------------------------

# Lines as LoadGen 6.0.17 writes them (SingleStream, then a MultiStream query of 3 samples); the LogDetail line is
# the kind that makes the file invalid JSON.
TRACE = """{"traceEvents":[
{"name":"Sample","cat":"default","ph":"b","pid":1,"id":0,"ts":637.9,"args":{"sample_seq":0,"query_seq":0,"sample_idx":60,"issue_start_ns":0,"complete_ns":213076}},
{"name":"Sample","cat":"default","ph":"e", "pid":1,"id":0,"ts":850.9},
{"name":"LogDetail","ph":"X","pid":1,"tid":2,"ts":9954.2,"dur":22.2,"args":{"key":""loadgen_version""}},
{"name":"Sample","cat":"default","ph":"b","pid":1,"id":1,"ts":855.1,"args":{"sample_seq":1,"query_seq":1,"sample_idx":9,"issue_start_ns":87954,"complete_ns":299998}},
{"name":"Sample","cat":"default","ph":"b","pid":1,"id":2,"ts":855.1,"args":{"sample_seq":2,"query_seq":1,"sample_idx":1,"issue_start_ns":87954,"complete_ns":310000}},
{"name":"Sample","cat":"default","ph":"b","pid":1,"id":3,"ts":855.1,"args":{"sample_seq":3,"query_seq":1,"sample_idx":4,"issue_start_ns":87954,"complete_ns":305000}},
{"name":"LastTrace"}
],
"displayTimeUnit":"ns"}
"""


def test_trace_gives_each_querys_slowest_sample() -> None:
    assert per_query_latencies_ns(TRACE).tolist() == [213076, 310000]
    assert per_sample_latencies_ns(TRACE).tolist() == [213076, 299998, 310000, 305000]


def test_trace_is_read_from_a_log_directory(tmp_path: Path) -> None:
    (tmp_path / "mlperf_log_trace.json").write_text(TRACE, encoding="utf-8")
    assert per_query_latencies_ns(tmp_path).tolist() == [213076, 310000]
    assert per_query_latencies_ns(str(tmp_path / "mlperf_log_trace.json")).tolist() == [213076, 310000]


def test_trace_errors_say_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(LoadGenError, match="enable_trace = True"):
        per_query_latencies_ns(tmp_path)
    (tmp_path / "mlperf_log_trace.json").write_text("", encoding="utf-8")
    with pytest.raises(LoadGenError, match=r"mlperf_log_trace\.json: no per-sample events; was LogSettings"):
        per_query_latencies_ns(tmp_path)
