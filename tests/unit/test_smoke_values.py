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
