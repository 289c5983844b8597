"""The Server batch policy: a pure function of recorded calibration timings, and its option."""

from __future__ import annotations

import pytest

from pytest_mlperf.calibrate import (
    SERVER_BATCH_MARGIN,
    SERVER_BATCH_NEEDS,
    SERVER_MODEL_MARGIN,
    Calibration,
    needs,
    server_batch,
    small_sizes,
)
from pytest_mlperf.config import UsageProblem, parse_server_batch

#: Recorded with calibrate.measure on a shared 2-core machine (benchmarks/models.py, onnxruntime, 2 threads).
HEAVY_CPU = Calibration(single_s=0.146327, multi_s=1.08063, batch_qps=8.55848)  # batch 8: 1.08x, batch 32: 1.25x
HEAVY_CPU_NOISY = Calibration(single_s=0.205297, multi_s=0.956766, batch_qps=9.40593)  # batch 8: 1.72x
LIGHT_CPU = Calibration(single_s=3.7835e-05, multi_s=0.000188066, batch_qps=41042.5)  # 8: 1.61x, 32: 0.96x of 8
#: The heavy benchmark model (ResNet50-shaped) with batches 2 and 4 timed in rounds with batch 1. Quiet: batch 2
#: gives 1.13x the samples/s of batch 1. Slowed (the machine's other core busy): 1.23x. Between: batch 4 gives
#: 1.20x, more than the old batch-8 rule's 1.15x margin, but one call of it takes 1.34x the bound.
HEAVY_QUIET = Calibration(single_s=0.0345, small_s={1: 0.0345, 2: 0.0612, 4: 0.117}, multi_s=0.231, batch_qps=33.5)
HEAVY_SLOWED = Calibration(single_s=0.0404, small_s={1: 0.0404, 2: 0.0658, 4: 0.1287}, multi_s=0.2508,
                           batch_qps=31.0)
HEAVY_FOUR = Calibration(single_s=0.0383, small_s={1: 0.0383, 2: 0.0662, 4: 0.128}, multi_s=0.257, batch_qps=31.0)
#: A GPU-like profile: a batch of 32 costs little more than one image.
GPU_LIKE = Calibration(single_s=0.0015, multi_s=0.0025, batch_qps=32 / 0.007)


def test_a_cpu_where_batching_buys_nothing_serves_batch_of_one() -> None:
    # The bound: p90 within 2.5x one call of batch 1.
    chosen = server_batch(HEAVY_CPU, 32, 2.5 * 0.146327, 90)
    assert (chosen.batch_size, chosen.policy) == (1, "measured")
    assert "queue model at p90 within 366 ms" in chosen.reason
    assert "cap 8 0.84x cap 1 (needs 1.05x)" in chosen.reason
    assert set(chosen.samples_per_s or {}) == {"1", "8", "32"}
    assert set(chosen.modelled_qps or {}) == {"1", "8", "32"}
    assert chosen.to_dict()["modelled_qps"] == chosen.modelled_qps


def test_the_heavy_model_on_a_quiet_machine_keeps_batch_of_one() -> None:
    chosen = server_batch(HEAVY_QUIET, 32, 2.5 * 0.0345, 90)
    assert chosen.batch_size == 1
    assert "cap 2 0.98x cap 1 (needs 1.05x)" in chosen.reason
    assert set(chosen.samples_per_s or {}) == {"1", "2", "4", "8", "32"}


def test_the_heavy_model_batches_2_where_batch_2_pays_enough() -> None:
    chosen = server_batch(HEAVY_SLOWED, 32, 2.5 * 0.0404, 90)
    assert chosen.batch_size == 2
    assert "cap 2 1.16x cap 1; cap 4 0.90x cap 2 (needs 1.05x)" in chosen.reason


def test_samples_per_s_alone_would_take_a_batch_whose_call_is_too_long_for_the_bound() -> None:
    rates = {int(size): rate for size, rate in (server_batch(HEAVY_FOUR, 32, None).samples_per_s or {}).items()}
    assert rates[4] / rates[1] > SERVER_BATCH_MARGIN  # what the samples/s rule would take
    chosen = server_batch(HEAVY_FOUR, 32, 2.5 * 0.0383, 90)
    assert chosen.batch_size == 1
    assert "cap 4 0.95x cap 1 (needs 1.05x)" in chosen.reason


def test_a_bound_shorter_than_one_call_keeps_batch_of_one() -> None:
    # Batch 8 measured 1.72x faster per sample (noise or not), but batch 1 alone takes 205 ms against 93 ms.
    chosen = server_batch(HEAVY_CPU_NOISY, 32, 0.093, 99)
    assert chosen.batch_size == 1
    assert chosen.reason.startswith("one call of batch 1 (205 ms) is already over the bound (p99 within 93 ms)")
    assert chosen.modelled_qps == {"1": 0.0}
    # Without a known bound only the samples/s decide.
    assert server_batch(HEAVY_CPU_NOISY, 32, None).batch_size == 8


def test_a_light_model_batches_up_to_where_a_bigger_batch_stops_paying() -> None:
    for percentile in (90, 99):
        chosen = server_batch(LIGHT_CPU, 32, 0.010, percentile)
        assert chosen.batch_size == 8
        assert "cap 8 1.61x cap 1; batch 32 gives 0.96x the samples/s of batch 8 (no faster)" in chosen.reason


def test_a_call_far_inside_the_bound_is_taken_on_a_small_gain() -> None:
    # Recorded on the light benchmark model (quiet 2-core machine): batch 32 gave 1.13x the samples/s of batch 8,
    # and one call of it takes 0.4 ms against a 10 ms bound, which costs the queries behind it nothing: under
    # LoadGen's cap 32 reached 1.19x cap 8's highest VALID target.
    cal = Calibration(single_s=3.0e-05, multi_s=8 * 3.0e-05 / 2.15, batch_qps=2.15 * 1.13 / 3.0e-05)
    chosen = server_batch(cal, 32, 0.010, 90)
    assert chosen.batch_size == 32
    assert "cap 32 1.13x cap 8" in chosen.reason


def test_a_gpu_like_model_batches_fully_unless_the_bound_is_tight() -> None:
    assert server_batch(GPU_LIKE, 32, 0.015, 99).batch_size == 32
    # 7 ms for batch 32 against a 4 ms bound: the model gives cap 32 nothing over cap 8 (2.5 ms a call).
    tight = server_batch(GPU_LIKE, 32, 0.004, 99)
    assert tight.batch_size == 8 and "cap 32 1.00x cap 8 (needs 1.05x)" in tight.reason


def test_a_bigger_batch_is_compared_with_the_cap_even_when_a_middle_one_did_not_pay() -> None:
    cal = Calibration(single_s=0.001, multi_s=0.008, batch_qps=2000.0)  # 8: 1.0x, 32: 2.0x of batch 1
    chosen = server_batch(cal, 32, 1.0)
    assert chosen.batch_size == 32
    assert "batch 8 gives 1.00x the samples/s of batch 1 (no faster)" in chosen.reason
    assert server_batch(cal, 32, None).batch_size == 32


def test_without_a_bound_the_samples_per_s_margin_is_required_not_just_any_gain() -> None:
    just_below = Calibration(single_s=0.001, multi_s=0.008 / (SERVER_BATCH_MARGIN - 0.01), batch_qps=1.0)
    assert server_batch(just_below, 32, None).batch_size == 1
    just_above = Calibration(single_s=0.001, multi_s=0.008 / (SERVER_BATCH_MARGIN + 0.01), batch_qps=1.0)
    chosen = server_batch(just_above, 32, None)
    assert chosen.batch_size == 8 and chosen.reason.startswith("no latency bound: ")


def test_the_model_margin_is_required_not_just_any_gain() -> None:
    # HEAVY_FOUR's cap 2 models at 1.03x batch-of-one: a gain, under the margin.
    chosen = server_batch(HEAVY_FOUR, 32, 2.5 * 0.0383, 90)
    assert "cap 2 1.03x cap 1 (needs 1.05x)" in chosen.reason and chosen.batch_size == 1
    assert SERVER_MODEL_MARGIN == 1.05


def test_the_ceiling_bounds_the_candidates() -> None:
    assert server_batch(GPU_LIKE, 1, 0.015).batch_size == 1
    assert server_batch(GPU_LIKE, 1, 0.015).reason == "the batch ceiling is 1"
    # Below 8 the candidates are 1, the small sizes below the ceiling, and the ceiling (batch_qps is timed there).
    four = Calibration(single_s=0.001, small_s={1: 0.001, 2: 0.0012, 4: 0.0013}, multi_s=None, batch_qps=3000.0)
    chosen = server_batch(four, 4, None)
    assert chosen.batch_size == 4
    assert set(chosen.samples_per_s or {}) == {"1", "2", "4"}
    assert (small_sizes(32), small_sizes(8), small_sizes(4), small_sizes(3), small_sizes(2)) == (
        (2, 4), (2, 4), (2,), (2,), ())


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


def test_the_reason_shows_a_long_bound_in_whole_milliseconds() -> None:
    # The embedded suites' default bound is one second: "1,000 ms", not "1e+03 ms".
    assert "queue model at p99 within 1,000 ms: " in server_batch(LIGHT_CPU, 32, 1.0, 99).reason
