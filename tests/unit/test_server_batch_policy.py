"""The Server batch policy: a pure function of recorded calibration timings, and its option."""

from __future__ import annotations

import pytest

from pytest_mlperf.calibrate import (
    SERVER_BATCH_MARGIN,
    SERVER_BATCH_NEEDS,
    Calibration,
    needs,
    server_batch,
)
from pytest_mlperf.config import UsageProblem, parse_server_batch

#: Recorded with calibrate.measure on a shared 2-core machine (benchmarks/models.py, onnxruntime, 2 threads).
HEAVY_CPU = Calibration(single_s=0.146327, multi_s=1.08063, batch_qps=8.55848)  # batch 8: 1.08x, batch 32: 1.25x
HEAVY_CPU_NOISY = Calibration(single_s=0.205297, multi_s=0.956766, batch_qps=9.40593)  # batch 8: 1.72x
LIGHT_CPU = Calibration(single_s=3.7835e-05, multi_s=0.000188066, batch_qps=41042.5)  # 8: 1.61x, 32: 0.96x of 8
#: A GPU-like profile: a batch of 32 costs little more than one image.
GPU_LIKE = Calibration(single_s=0.0015, multi_s=0.0025, batch_qps=32 / 0.007)


def test_a_cpu_where_batching_buys_nothing_serves_batch_of_one() -> None:
    chosen = server_batch(HEAVY_CPU, 32, 0.093)
    assert (chosen.batch_size, chosen.policy) == (1, "measured")
    assert "batch 8 gives 1.08x the samples/s of batch 1" in chosen.reason
    assert set(chosen.samples_per_s or {}) == {"1", "8", "32"}


def test_a_batch_that_pays_but_cannot_fit_the_bound_is_not_used() -> None:
    # Batch 8 measured 1.72x faster per sample (noise or not), but one call of it takes ~1 s against 93 ms.
    chosen = server_batch(HEAVY_CPU_NOISY, 32, 0.093)
    assert chosen.batch_size == 1
    assert "over 1.5x the 93 ms latency bound" in chosen.reason
    # Without a known bound only the samples/s decide.
    assert server_batch(HEAVY_CPU_NOISY, 32, None).batch_size == 8


def test_a_light_model_batches_up_to_where_a_bigger_batch_stops_paying() -> None:
    chosen = server_batch(LIGHT_CPU, 32, 0.1)
    assert chosen.batch_size == 8
    assert "batch 32 gives 0.96x the samples/s of batch 8" in chosen.reason


def test_a_call_far_inside_the_bound_is_taken_on_any_gain() -> None:
    # Recorded on the light benchmark model (quiet 2-core machine): batch 32 gave 1.13x the samples/s of batch 8,
    # under the margin, but one call of it takes 0.4 ms against a 10 ms bound: the cap goes to 32.
    cal = Calibration(single_s=3.0e-05, multi_s=8 * 3.0e-05 / 2.15, batch_qps=2.15 * 1.13 / 3.0e-05)
    chosen = server_batch(cal, 32, 0.010)
    assert chosen.batch_size == 32
    assert "batch 32 gives 1.13x the samples/s of batch 8 and one call of it takes 0.395 ms, within 0.1x" in (
        chosen.reason)
    # The same timings against a bound where the call is no longer small keep the margin's rule.
    assert server_batch(cal, 32, 0.002).batch_size == 8
    # Within the share, a bigger batch that is slower per sample is still refused (LIGHT_CPU: 0.96x of batch 8).
    refused = server_batch(LIGHT_CPU, 32, 0.1)
    assert refused.batch_size == 8 and "but it is no faster" in refused.reason


def test_a_gpu_like_model_batches_fully_unless_the_bound_is_tight() -> None:
    assert server_batch(GPU_LIKE, 32, 0.015).batch_size == 32
    # 7 ms for batch 32 is over 1.5x a 4 ms bound; batch 8's 2.5 ms is not.
    assert server_batch(GPU_LIKE, 32, 0.004).batch_size == 8


def test_a_bigger_batch_is_compared_with_the_cap_even_when_a_middle_one_did_not_pay() -> None:
    cal = Calibration(single_s=0.001, multi_s=0.008, batch_qps=2000.0)  # 8: 1.0x, 32: 2.0x of batch 1
    assert server_batch(cal, 32, 1.0).batch_size == 32


def test_the_margin_is_required_not_just_any_gain() -> None:
    just_below = Calibration(single_s=0.001, multi_s=0.008 / (SERVER_BATCH_MARGIN - 0.01), batch_qps=1.0)
    assert server_batch(just_below, 32, None).batch_size == 1
    just_above = Calibration(single_s=0.001, multi_s=0.008 / (SERVER_BATCH_MARGIN + 0.01), batch_qps=1.0)
    assert server_batch(just_above, 32, None).batch_size == 8


def test_the_ceiling_bounds_the_candidates() -> None:
    assert server_batch(GPU_LIKE, 1, 0.015).batch_size == 1
    assert server_batch(GPU_LIKE, 1, 0.015).reason == "the batch ceiling is 1"
    # Below 8 the candidates are 1 and the ceiling (batch_qps is measured at the ceiling).
    four = Calibration(single_s=0.001, multi_s=None, batch_qps=3000.0)
    chosen = server_batch(four, 4, None)
    assert chosen.batch_size == 4
    assert set(chosen.samples_per_s or {}) == {"1", "4"}


def test_without_timings_the_cap_stays_at_the_ceiling() -> None:
    chosen = server_batch(Calibration(), 32, 0.1)
    assert (chosen.batch_size, chosen.policy, chosen.samples_per_s) == (32, "ceiling", None)


def test_server_calibration_measures_what_the_policy_reads_in_both_modes() -> None:
    assert set(SERVER_BATCH_NEEDS) <= set(needs("Server", "performance"))
    assert set(SERVER_BATCH_NEEDS) <= set(needs("Server", "accuracy"))


@pytest.mark.parametrize(("raw", "expected"), [(None, None), ("auto", None), (" AUTO ", None), ("4", 4), (32, 32)])
def test_server_batch_option_values(raw: object, expected: int | None) -> None:
    assert parse_server_batch(raw, 32) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("big", "--mlperf-server-batch: 'big' is not valid; use auto"),
        ("0", "--mlperf-server-batch: 0 is not valid; it must be 1 or more, or auto"),
        ("64", "--mlperf-server-batch: 64 is above --mlperf-batch-size 32, the ceiling of every batch; raise"),
    ],
)
def test_bad_server_batch_names_the_option_and_the_fix(raw: str, message: str) -> None:
    with pytest.raises(UsageProblem, match=message):
        parse_server_batch(raw, 32)
