"""The verdict lists every unmet condition with its numbers, and nothing when all conditions hold."""

from __future__ import annotations

from pytest_mlperf.config import Thresholds
from pytest_mlperf.verdict import judge

LAT = {"mean": 1e6, "p50": 1e6, "p90": 12.4e6, "p95": 13e6, "p99": 20e6, "p99.9": 30e6}


def test_all_conditions_met() -> None:
    verdict = judge(scenario="SingleStream", mode="performance", thresholds=Thresholds(latency_ms=15, min_qps=10),
                    valid=True, qps=80.0, latency_ns=LAT)
    assert verdict.passed
    assert verdict.reasons == ()


def test_every_unmet_condition_is_listed() -> None:
    verdict = judge(
        scenario="SingleStream", mode="performance", thresholds=Thresholds(latency_ms=10, min_qps=100),
        valid=False, validity_reasons=["min duration not met (ran 0.8 s < 1.0 s)"],
        recommendation="Decrease the expected latency so the loadgen pre-generates more queries. ",
        qps=80.1, latency_ns=LAT, loadgen_errors=["Ending early"],
    )
    assert not verdict.passed
    assert verdict.reasons == (
        "INVALID: min duration not met (ran 0.8 s < 1.0 s) (LoadGen recommends: Decrease the expected latency so "
        "the loadgen pre-generates more queries.)",
        "p90 latency 12.400 ms > bound 10 ms",
        "throughput 80.1 samples/s < floor 100.0 samples/s",
    )


def test_server_and_multistream_use_p99() -> None:
    for scenario in ("Server", "MultiStream"):
        verdict = judge(scenario=scenario, mode="performance", thresholds=Thresholds(latency_ms=15),
                        valid=True, qps=1.0, latency_ns=LAT)
        assert verdict.reasons == ("p99 latency 20.000 ms > bound 15 ms",)


def test_offline_ignores_latency_bound() -> None:
    verdict = judge(scenario="Offline", mode="performance", thresholds=Thresholds(latency_ms=0.001),
                    valid=True, qps=1.0, latency_ns=LAT)
    assert verdict.passed


def test_valid_run_with_loadgen_errors_fails() -> None:
    verdict = judge(scenario="Offline", mode="performance", thresholds=Thresholds(), valid=True, qps=5.0,
                    loadgen_errors=["QuerySamplesComplete called with unknown id"])
    assert verdict.reasons == ("LoadGen error: QuerySamplesComplete called with unknown id",)


def test_missing_validity_is_not_a_pass() -> None:
    verdict = judge(scenario="Offline", mode="performance", thresholds=Thresholds(), valid=None)
    assert verdict.reasons == ("INVALID: LoadGen wrote no result_validity; the run did not finish",)


def test_accuracy() -> None:
    ok = judge(scenario="Offline", mode="accuracy", thresholds=Thresholds(accuracy=0.97), valid=None,
               accuracy={"top1": 0.98, "count": 359})
    assert ok.passed
    low = judge(scenario="Offline", mode="accuracy", thresholds=Thresholds(accuracy=0.97), valid=None,
                accuracy={"top1": 0.9, "count": 359})
    assert low.reasons == ("top-1 accuracy 90.00 % < target 97.00 % (on 359 samples)",)
    unscored = judge(scenario="Offline", mode="accuracy", thresholds=Thresholds(accuracy=0.97), valid=None)
    assert unscored.reasons == ("accuracy was not measured: mlperf_log_accuracy.json was not scored",)
