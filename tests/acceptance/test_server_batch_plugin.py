"""Server runs size their batch from measurement, record the cap and why, and the Server SUT keeps to it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from pytest_mlperf.gate.fingerprint import run_fingerprint
from pytest_mlperf.results import schema
from tests.conftest import FAST

#: A real engine (the tiny linear model in numpy) whose call time is set by backend options: ``per_sample_ms``
#: makes a batch cost as much as its samples one by one (batching buys nothing), ``per_call_ms`` makes any batch
#: cost one call (batching pays fully). It notes the batch sizes the Server SUT's threads gave it.
TIMED_BACKEND = """

def pytest_mlperf_backend_names(config):
    return ["timed-toy"]


def pytest_mlperf_make_backend(config, name, model, options):
    return ToyLinear(name, options) if name == "timed-toy" else None
"""

SERVER_TEST = """
import json
import pathlib

import pytest
from conftest import SERVED


@pytest.mark.mlperf(accuracy=0.95)
def test_server(mlperf, mlperf_scenario, mlperf_mode, tiny_dataset):
    SERVED.clear()
    # Validity under load is not what these tests check; a shared machine may miss the latency bound.
    result = mlperf.run("timed://linear", tiny_dataset, check=False)
    assert result.sut is not None
    with open(f"served-{mlperf_mode}.json", "w") as out:
        json.dump(SERVED, out)
"""

ARGS = [*FAST, "--mlperf-scenarios=Server", "--mlperf-backend=timed-toy"]


def run_server(
    project: pytest.Pytester, *args: str, modes: tuple[str, ...] = ("performance", "accuracy")
) -> tuple[list[dict], dict[str, list[int]]]:
    if "TimedToy" not in Path(project.path / "conftest.py").read_text():
        project.makeconftest(Path(project.path / "conftest.py").read_text() + TIMED_BACKEND)
    project.makepyfile(test_server=SERVER_TEST)
    result = project.runpytest(*ARGS, *args)
    result.assert_outcomes(passed=len(modes))
    doc = json.loads((project.path / "mlperf-results" / "results.json").read_text())
    jsonschema.validate(doc, schema())
    served = {mode: json.loads((project.path / f"served-{mode}.json").read_text()) for mode in modes}
    return doc["runs"], served


def test_a_server_case_where_batching_buys_nothing_records_a_measured_batch_of_one(project: pytest.Pytester) -> None:
    # 5 ms a sample: a loaded machine oversleeps each call by up to ~0.5 ms, which at 1 ms a sample made batch 32
    # look 1.15x faster than batch 1 (per-call overhead that batching really does amortise).
    runs, served = run_server(project, "--mlperf-backend-option=per_sample_ms=5")
    assert {run["mode"] for run in runs} == {"performance", "accuracy"}
    for run in runs:
        sut = run["sut"]
        assert (sut["batch_size"], sut["policy"]) == (1, "measured"), sut
        assert set(sut["samples_per_s"]) == {"1", "2", "4", "8", "32"}
        assert sut["reason"].startswith("queue model at p99 within 100 ms: batch-of-one ")
        assert sut["modelled_qps"]["1"] > 0
        # The batch policy is a how, not a what: it stays out of the gate's fingerprint.
        assert "sut" not in json.dumps(run_fingerprint(run))
    assert served["performance"] and set(served["performance"]) == {1}
    assert served["accuracy"] and set(served["accuracy"]) == {1}


def test_a_server_case_where_batching_pays_records_the_full_batch(project: pytest.Pytester) -> None:
    runs, served = run_server(project, "--mlperf-backend-option=per_call_ms=2")
    for run in runs:
        assert (run["sut"]["batch_size"], run["sut"]["policy"]) == (32, "measured"), run["sut"]
    assert max(served["performance"] + served["accuracy"]) <= 32


def test_a_server_case_whose_bound_fits_batch_2_but_not_4_records_batch_2(project: pytest.Pytester) -> None:
    # Batch n costs 10 + 10n ms: batch 2 serves 1.5x the samples/s of batch 1 in a 30 ms call, batch 4 1.2x more
    # in 50 ms, which the queue model finds too long for a p99 bound of 50 ms (samples/s alone would take 4).
    runs, served = run_server(
        project, "--mlperf-backend-option=per_call_ms=10", "--mlperf-backend-option=per_sample_ms=10",
        "--mlperf-target-latency-ms=50", "--mlperf-mode=performance", "--mlperf-min-query-count=30",
        modes=("performance",),
    )
    (run,) = runs
    assert (run["sut"]["batch_size"], run["sut"]["policy"]) == (2, "measured"), run["sut"]
    assert "queue model at p99 within 50 ms" in run["sut"]["reason"]
    assert "cap 4" in run["sut"]["reason"] and "x cap 2 (needs 1.05x)" in run["sut"]["reason"]
    assert max(served["performance"]) <= 2


def test_a_forced_server_batch_is_recorded_and_kept(project: pytest.Pytester) -> None:
    runs, served = run_server(project, "--mlperf-backend-option=per_call_ms=2", "--mlperf-server-batch=2")
    for run in runs:
        assert run["sut"] == {"batch_size": 2, "policy": "forced", "reason": "--mlperf-server-batch 2"}
    assert max(served["performance"] + served["accuracy"]) <= 2
    # Batching does happen under the cap: at 0.3x capacity a Poisson arrival lands within a running 2 ms call about
    # a quarter of the time, so over the accuracy run's 64 queries two are queued together (all but surely).
    assert max(served["accuracy"]) == 2


def test_a_session_reusing_a_load_reuses_its_server_batch(project: pytest.Pytester) -> None:
    perf = ("performance",)
    options = ("--mlperf-backend-option=per_call_ms=2", "--mlperf-mode=performance")
    run_server(project, *options, "--mlperf-server-batch=3", modes=perf)
    Path(project.path / "base.json").write_text((project.path / "mlperf-results" / "results.json").read_text())
    (run,), served = run_server(project, *options, "--mlperf-reuse-load=base.json", modes=perf)
    # Measured, this backend would batch 32: the load's batch wins, so base and head batch alike.
    assert run["sut"] == {"batch_size": 3, "policy": "reused", "reason": "--mlperf-reuse-load's run of this case"}
    assert max(served["performance"]) <= 3


def test_server_batch_above_the_ceiling_is_a_usage_error(project: pytest.Pytester) -> None:
    result = project.runpytest("--mlperf-server-batch=64", "--mlperf-batch-size=16")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mlperf-server-batch: 64 is above --mlperf-batch-size 16*"])
