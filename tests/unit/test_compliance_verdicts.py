"""Compliance verdicts as the official scripts and the submission checker reach them (pure functions, no LoadGen):
TEST01/TEST04 performance bands, and TEST01's part III, where sampled responses that differ from the accuracy
run's are rescored on the same samples and must agree within the checker's tolerance."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from types import SimpleNamespace

import numpy as np
import pytest

from pytest_mlperf.compliance import accuracy_delta_percent, rescore_test01, verify_performance
from pytest_mlperf.datasets.base import ArrayDataset
from pytest_mlperf.tasks.base import AccuracyCoverageError
from pytest_mlperf.tasks.classification import Classification

LABELS = np.arange(200) % 10
DATASET = ArrayDataset(np.zeros((200, 4), np.float32), LABELS, name="ten-classes")
TOP5 = Classification(topk=5)


def answers(indices: Iterable[int], wrong: Collection[int] = (), swap: Collection[int] = ()) -> dict[int, bytes]:
    """Top-5 responses: the right label first unless *wrong*; ranks 2 and 3 swapped for *swap*."""
    out = {}
    for i in indices:
        label = int(LABELS[i])
        ranked = [label + 1 if i in wrong else label, 11, 12, 13, 14]
        if i in swap:
            ranked[1], ranked[2] = ranked[2], ranked[1]
        out[i] = np.asarray(ranked, np.float32).tobytes()
    return out


def line_value(text: str) -> float:
    match = re.fullmatch(r"accuracy=(\d+\.\d{3})%, good=\d+, total=\d+\n", text)
    assert match, text
    return float(match.group(1))


def test_a_partial_log_is_scored_over_its_own_samples_as_accuracy_imagenet_does() -> None:
    metrics = TOP5.score_subset(answers([3, 7, 9], wrong={9}), DATASET)
    assert metrics["top1"] == pytest.approx(2 / 3) and metrics["count"] == 3
    assert TOP5.accuracy_line(metrics) == "accuracy=66.667%, good=2, total=3"
    with pytest.raises(AccuracyCoverageError, match=r"unknown qsl indices \[200\]"):
        TOP5.score_subset(answers([200 - 1]) | {200: answers([0])[0]}, DATASET)
    with pytest.raises(AccuracyCoverageError, match="no responses"):
        TOP5.score_subset({}, DATASET)


def test_identical_responses_write_accuracy_txt_of_the_sampled_log_only() -> None:
    baseline = answers(range(200), wrong={0, 1})
    sampled = {i: baseline[i] for i in range(0, 200, 4)}
    out = rescore_test01(TOP5, DATASET, "resnet50", baseline, sampled, identical=True)
    assert out.reasons == [] and out.record == {"mode": "identical"}
    assert set(out.files) == {"accuracy/accuracy.txt"}
    assert line_value(out.files["accuracy/accuracy.txt"]) == pytest.approx(100 * 49 / 50)


def test_responses_that_differ_but_score_alike_pass_within_tolerance() -> None:
    baseline = answers(range(200), wrong={0, 1})
    # The timed run ranks classes 2 and 3 the other way round: every response differs, top-1 does not.
    sampled = answers(range(0, 200, 4), wrong={0}, swap=set(range(200)))
    out = rescore_test01(TOP5, DATASET, "resnet50", baseline, sampled, identical=False)
    assert out.reasons == []
    assert set(out.files) == {"accuracy/accuracy.txt", "accuracy/baseline_accuracy.txt",
                              "accuracy/compliance_accuracy.txt"}
    base, comp = (line_value(out.files[f"accuracy/{n}_accuracy.txt"]) for n in ("baseline", "compliance"))
    assert base == comp == pytest.approx(98.0)
    assert out.record["mode"] == "tolerance" and out.record["delta_percent"] == 0.0
    assert out.record["allowed_percent"] == 1.0


def test_a_score_that_moves_more_than_the_checker_allows_fails_naming_both() -> None:
    baseline = answers(range(200))
    # 100 sampled, one more wrong when timed: 99 % against 100 %, a 1.01 % difference of the compliance score.
    sampled = answers(range(0, 200, 2), wrong={2})
    out = rescore_test01(TOP5, DATASET, "resnet50", baseline, sampled, identical=False)
    (reason,) = out.reasons
    assert "top1 0.99 against the accuracy run's 1 on the same 100 samples" in reason and "over the 1 %" in reason
    assert out.record["delta_percent"] == pytest.approx(100 * (1 / 0.99 - 1), rel=1e-6)
    # A 99.9 benchmark allows a tenth of that; a 1 % model name passes a 0.5 % move.
    assert accuracy_delta_percent("bert-99.9") == 0.1 and accuracy_delta_percent("bert-99") == 1.0
    sampled = answers(range(200), wrong={2})
    assert rescore_test01(TOP5, DATASET, "bert-99", baseline, sampled, identical=False).reasons == []
    assert rescore_test01(TOP5, DATASET, "bert-99.9", baseline, sampled, identical=False).reasons != []


def test_a_zero_score_on_either_side_fails_as_the_checker_does() -> None:
    baseline = answers(range(10), wrong=set(range(10)))
    out = rescore_test01(TOP5, DATASET, None, baseline, answers(range(10), swap={1}, wrong=set(range(10))),
                         identical=False)
    assert out.record["delta_percent"] is None and "not comparable (a zero score)" in out.reasons[0]


class NoSubset:
    """A user's task that scores only whole logs."""

    name, metric, higher_is_better = "mine", "top1", True

    def score(self, responses: Mapping[int, bytes], dataset: object) -> dict[str, float]:
        raise AssertionError("not called")


def test_a_task_without_score_subset_fails_only_when_responses_differ() -> None:
    baseline = answers(range(4))
    assert rescore_test01(NoSubset(), DATASET, None, baseline, baseline, identical=True).reasons == []  # type: ignore[arg-type]
    (reason,) = rescore_test01(NoSubset(), DATASET, None, baseline, answers(range(4), swap={0}),  # type: ignore[arg-type]
                               identical=False).reasons
    assert "the task 'mine' has no score_subset()" in reason


def test_a_sampled_response_that_cannot_be_decoded_is_a_reason_not_a_traceback() -> None:
    baseline = answers(range(4))
    out = rescore_test01(TOP5, DATASET, None, baseline, {0: b"abc"}, identical=False)
    assert "cannot be rescored" in out.reasons[0] and "not float32 labels" in out.reasons[0]


def detail(scenario: str, score: float, valid: bool = True) -> SimpleNamespace:
    key = {"Offline": "result_samples_per_second", "SingleStream": "early_stopping_latency_ss"}[scenario]
    return SimpleNamespace(valid=valid, invalid_reasons=[] if valid else ["min duration not met"], settings={},
                           raw={key: [score]})


@pytest.mark.parametrize(
    ("test", "scenario", "reference", "candidate", "passed"),
    [
        # TEST01: within 10 % either way; 20 % for a SingleStream latency <= 200 us (both from verify_performance.py).
        ("TEST01", "Offline", 1000.0, 1099.0, True),
        ("TEST01", "Offline", 1000.0, 899.0, False),
        ("TEST01", "SingleStream", 150_000.0, 179_000.0, True),
        ("TEST01", "SingleStream", 250_000.0, 279_000.0, False),
        # TEST04: only faster is suspect; stream latencies become throughputs (1e9 / ns) before the 10 %/20 % band.
        ("TEST04", "Offline", 1000.0, 1099.0, True),
        ("TEST04", "Offline", 1000.0, 1101.0, False),
        ("TEST04", "Offline", 1000.0, 500.0, True),
        ("TEST04", "SingleStream", 1e6, 0.85e6, True),  # 1176/s against 1000/s: within the relaxed 20 %
        ("TEST04", "SingleStream", 1e6, 0.80e6, False),  # 1250/s
    ],
)
def test_performance_bands_are_the_official_scripts(
    test: str, scenario: str, reference: float, candidate: float, passed: bool
) -> None:
    ok, text, reasons = verify_performance(test, scenario, detail(scenario, reference), detail(scenario, candidate))
    assert ok is passed and (reasons == []) is passed
    lines = text.splitlines()
    # Each script's own spelling of its two score lines, and its last line.
    assert lines[1].startswith("Reference score = " if test == "TEST01" else "reference score = ")
    assert lines[2].startswith("Test score = " if test == "TEST01" else "test score = ")
    assert lines[-1] == ("TEST PASS" if passed else "TEST FAIL: Test score invalid")


def test_an_invalid_compliance_run_fails_with_loadgens_reason() -> None:
    ok, text, reasons = verify_performance("TEST04", "Offline", detail("Offline", 1000.0),
                                           detail("Offline", 1000.0, valid=False))
    assert not ok and "the TEST04 run is INVALID: min duration not met" in reasons[0]
    assert text.splitlines()[-1].startswith("TEST FAIL")
