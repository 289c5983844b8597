"""A run whose inference raised on some of its queries, wherever it raised, is failed: never VALID, never a figure."""

from __future__ import annotations

import json

import pytest

from pytest_mlperf.export import export
from pytest_mlperf.gate.compare import Source, compare_documents
from pytest_mlperf.gate.statistics import GatePolicy
from pytest_mlperf.results import read_document
from tests.conftest import FAST

FLAKY_TEST = """
import itertools
import threading

import numpy as np
import pytest

from pytest_mlperf import ArrayDataset, Classification

CALLS = itertools.count()
FAIL_AT = {fail_at!r}


class NoBuffer:
    \"\"\"A response row numpy cannot turn into a buffer: completing it raises.\"\"\"

    def __array__(self, *args, **kwargs):
        raise RuntimeError("this response has no buffer")


class Flaky(Classification):
    \"\"\"Every fifth batch fails where FAIL_AT says: in postprocess, or in the response LoadGen gets.\"\"\"

    def postprocess(self, outputs):
        rows = super().postprocess(outputs)
        where = FAIL_AT
        if not where or threading.current_thread() is threading.main_thread() or next(CALLS) % 5 != 3:
            return rows
        if where == "postprocess":
            raise RuntimeError("postprocess broke on this batch")
        return [NoBuffer() for _ in range(len(rows))]  # where == "completion"


@pytest.mark.parametrize("scenario", ["SingleStream", "Server", "Offline"])
def test_flaky(mlperf, tiny_model, scenario):
    base = __import__("conftest").make_dataset()
    data = ArrayDataset(base.inputs, base.labels, name="tiny", task=Flaky(topk=1))
    mlperf.run(tiny_model, data, scenario=scenario, mode="performance")
"""


def run_flaky(project: pytest.Pytester, fail_at: str, results: str) -> pytest.RunResult:
    project.makepyfile(test_flaky=FLAKY_TEST.replace("{fail_at!r}", repr(fail_at)))
    # A subprocess: before the fix, a raising completion aborted the interpreter or hung LoadGen for ever.
    return project.runpytest_subprocess(*FAST, f"--mlperf-results={results}", "--mlperf-batch-size=4",
                                        timeout=600)


@pytest.mark.parametrize("fail_at", ["postprocess", "completion"])
def test_inference_that_raised_on_some_queries_is_a_failed_run(project: pytest.Pytester, fail_at: str) -> None:
    result = run_flaky(project, fail_at, "head.json")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*InferenceError*inference or sample loading raised during the*run*"])
    assert "Fatal Python error" not in result.stderr.str()
    document = read_document(project.path / "head.json")
    assert document["status"] == "complete"
    assert len(document["runs"]) == 3
    for run in document["runs"]:
        assert run["valid"] is False, run["scenario"]
        assert run["passed"] is False
        assert run["metrics"]["qps"] is None and run["metrics"]["latency_ns"] is None, run["scenario"]
        assert run["latency_samples_ns"] is None
        assert any("inference failed: RuntimeError" in reason for reason in run["reasons"])
        assert run["validity_reasons"] == [
            "the SUT failed: LoadGen's own verdict does not count for a run whose inference raised"
        ]
    # Exports carry no figure of a failed run: not its throughput, not its latency.
    for fmt in ("gab-smaller", "gab-bigger", "bmf"):
        exported = json.dumps(export(document, fmt))
        assert "throughput" not in exported and "latency" not in exported, (fmt, exported)


def test_the_gate_never_compares_a_failed_run_as_a_measurement(project: pytest.Pytester) -> None:
    baseline = run_flaky(project, "", "base.json")
    baseline.assert_outcomes(passed=3)
    run_flaky(project, "postprocess", "head.json").assert_outcomes(failed=3)
    base = read_document(project.path / "base.json")
    head = read_document(project.path / "head.json")
    comparison = compare_documents([Source("base", base)], [Source("head", head)], GatePolicy(), force=True)
    verdicts = {case["id"].split("[")[-1]: case["verdict"] for case in comparison["cases"]}
    assert len(verdicts) == 3, comparison
    # The failed head runs give the gate nothing to measure: no improvement, no "no change", no regression.
    assert set(verdicts.values()) == {"missing-in-head"}, comparison
    for case in comparison["cases"]:
        assert "every head run of it failed" in case["message"], case
        assert case["head"] is None

