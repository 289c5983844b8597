"""Smoke-profile settings from a calibration: pre-generation follows the fastest call, loads follow the median."""

from __future__ import annotations

from pytest_mlperf.calibrate import LATENCY_HEADROOM, OFFLINE_HEADROOM, SERVER_LOAD, Calibration, smoke_values
from pytest_mlperf.config import Overrides

# A warm-up on a busy machine: the median call took 10x the fastest one.
LOADED = Calibration(single_s=1e-3, multi_s=8e-3, batch_qps=100.0,
                     single_fastest_s=1e-4, multi_fastest_s=8e-4, batch_fastest_qps=1000.0)


def test_pre_generation_is_sized_for_the_fastest_call() -> None:
    single = smoke_values("SingleStream", "performance", LOADED, Overrides())
    assert single["single_stream_expected_latency_ns"] == int(1e-4 * LATENCY_HEADROOM * 1e9)
    multi = smoke_values("MultiStream", "performance", LOADED, Overrides())
    assert multi["multi_stream_expected_latency_ns"] == int(8e-4 * LATENCY_HEADROOM * 1e9)
    offline = smoke_values("Offline", "performance", LOADED, Overrides())
    assert offline["offline_expected_qps"] == 1000.0 * OFFLINE_HEADROOM


def test_server_load_follows_the_median() -> None:
    server = smoke_values("Server", "performance", LOADED, Overrides())
    assert server["server_target_qps"] == min(100.0, 1 / 1e-3) * SERVER_LOAD


def test_a_calibration_without_fastest_figures_uses_the_medians() -> None:
    old = Calibration(single_s=1e-3, batch_qps=100.0)
    assert smoke_values("SingleStream", "performance", old, Overrides())["single_stream_expected_latency_ns"] == (
        int(1e-3 * LATENCY_HEADROOM * 1e9))
    assert smoke_values("Offline", "performance", old, Overrides())["offline_expected_qps"] == 100.0 * OFFLINE_HEADROOM


def test_a_run_short_only_of_time_gets_scaled_pre_generation() -> None:
    from pytest_mlperf.calibrate import short_run_retry

    values = {"min_duration_ms": 200, "offline_expected_qps": 1000.0}
    retry = short_run_retry("Offline", values, ("min duration not met (ran 0.100 s < 0.200 s)",), 0.1, 200)
    assert retry is not None
    scaled, note = retry
    assert scaled["offline_expected_qps"] == 1000.0 * 2.5 * 2 and scaled["min_duration_ms"] == 200
    assert "offline_expected_qps 1000 -> 5000" in note
    single = short_run_retry("SingleStream", {"single_stream_expected_latency_ns": 50_000},
                             ("min duration not met (ran 0.100 s < 0.200 s)",), 0.1, 200)
    assert single is not None and single[0]["single_stream_expected_latency_ns"] == 10_000


def test_runs_invalid_for_anything_else_are_not_rerun() -> None:
    from pytest_mlperf.calibrate import short_run_retry

    values = {"offline_expected_qps": 1000.0, "server_target_qps": 10.0, "single_stream_expected_latency_ns": 5000}
    both = ("min duration not met (ran 0.1 s < 0.2 s)", "performance constraints not met (p99 ...)")
    assert short_run_retry("Offline", values, both, 0.1, 200) is None  # also too slow: a rerun would hide it
    assert short_run_retry("Server", values, both[:1], 0.1, 200) is None  # Server's load is the measurement
    assert short_run_retry("Offline", {}, both[:1], 0.1, 200) is None  # not the calibration's value to change
    assert short_run_retry("Offline", values, (), None, 200) is None
