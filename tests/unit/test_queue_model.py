"""The Server queue model against queueing theory, and its capacity search."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_mlperf.queue_model import CallTimes, capacity, greedy, latencies

ONE = CallTimes({1: 0.010})  # 10 ms a sample, whatever the batch: batching buys nothing


def test_batch_of_one_matches_the_m_d_1_mean_sojourn() -> None:
    # Pollaczek-Khinchine for deterministic service S at load rho: mean wait rho * S / (2 * (1 - rho)).
    for rho in (0.3, 0.5, 0.7):
        waited = latencies(ONE, greedy(1), rate=rho / 0.010, queries=60_000)
        expected = 0.010 + rho * 0.010 / (2 * (1 - rho))
        assert float(waited.mean()) == pytest.approx(expected, rel=0.04)


def test_an_idle_engine_answers_in_one_call() -> None:
    waited = latencies(ONE, greedy(8), rate=0.01, queries=200)
    assert float(waited.min()) == pytest.approx(0.010) and float(waited.max()) < 0.021


def test_a_greedy_batch_never_exceeds_its_cap() -> None:
    # Calls cost the same at any size, at a load far beyond batch-of-one: the cap sets the throughput, so cap 4
    # keeps up at 300 queries/s (400/s possible) while cap 2 (200/s) falls behind without limit.
    flat = CallTimes({1: 0.010, 32: 0.010})
    assert float(np.percentile(latencies(flat, greedy(4), rate=300.0), 90)) < 0.05
    assert float(np.percentile(latencies(flat, greedy(2), rate=300.0), 90)) > 1.0


def test_the_same_inputs_give_the_same_latencies() -> None:
    first = latencies(ONE, greedy(4), rate=80.0, spread=0.1)
    assert np.array_equal(first, latencies(ONE, greedy(4), rate=80.0, spread=0.1))


def test_capacity_is_where_the_percentile_meets_the_bound() -> None:
    found = capacity(ONE, greedy(1), 90, 0.025)
    assert 0 < found < 100.0
    assert float(np.percentile(latencies(ONE, greedy(1), found), 90)) <= 0.025
    assert float(np.percentile(latencies(ONE, greedy(1), found * 1.02), 90)) > 0.025
    # A stricter percentile or bound never raises it.
    assert capacity(ONE, greedy(1), 99, 0.025) < found
    assert capacity(ONE, greedy(1), 90, 0.020) < found


def test_capacity_never_reaches_the_engine_peak_however_loose_the_bound() -> None:
    # A bound long against the replayed arrivals would pass an overloaded queue; the peak rules it out.
    assert capacity(ONE, greedy(1), 90, 1000.0) < 100.0


def test_a_bound_shorter_than_one_call_has_no_capacity() -> None:
    assert capacity(ONE, greedy(8), 90, 0.009) == 0.0


def test_batching_that_pays_raises_capacity_and_batching_that_does_not_lowers_it() -> None:
    pays = CallTimes({1: 0.010, 8: 0.020})
    assert capacity(pays, greedy(8), 90, 0.025) > 3 * capacity(pays, greedy(1), 90, 0.025)
    linear = CallTimes({1: 0.010, 8: 0.080})
    assert capacity(linear, greedy(8), 90, 0.025) < capacity(linear, greedy(1), 90, 0.025)


def test_serving_late_queries_last_games_the_percentile() -> None:
    # The reference the benchmark prints, never a policy the harness runs: more within p90, a far worse p99.
    fair = capacity(ONE, greedy(1), 90, 0.025)
    gamed = capacity(ONE, greedy(1), 90, 0.025, late_after_s=0.025)
    assert gamed > 1.1 * fair
    tail = np.percentile(latencies(ONE, greedy(1), fair, late_after_s=0.025), 99)
    assert tail > np.percentile(latencies(ONE, greedy(1), fair), 99)


def test_call_times_between_and_past_the_measured_sizes() -> None:
    times = CallTimes({1: 0.010, 8: 0.024, 32: 0.064})
    assert times.of(8) == 0.024
    assert times.of(4) == pytest.approx(0.010 + 0.014 * 3 / 7)
    assert times.of(64) == pytest.approx(0.128)
    assert CallTimes({4: 0.040}).of(2) == pytest.approx(0.020)
