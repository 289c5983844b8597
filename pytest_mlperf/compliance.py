"""MLPerf compliance tests TEST01 and TEST04: their audit.config files and their verification, as the official
scripts (compliance/TEST0x/verify_*.py in the MLCommons inference repository) judge them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_mlperf.errors import ConfigError

if TYPE_CHECKING:
    from pytest_mlperf.datasets.base import Dataset
    from pytest_mlperf.tasks.base import Task

AUDIT_CONFIG = "audit.config"
_HEADER = "# The format of this config file is 'key = value'.\n# Written by pytest-mlperf from compliance/{test}.\n"
#: TEST01 logs a sample of performance-mode responses (compliance/TEST01/<model>/audit.config).
TEST01_CONFIG = ("*.*.mode = 2\n*.*.accuracy_log_rng_seed = 720381539243781796\n"
                 "*.*.accuracy_log_sampling_target = {target}\n")
#: TEST04 issues one sample over and over: a SUT that caches answers runs faster (compliance/TEST04/audit.config).
TEST04_CONFIG = "".join(
    f"*.{s}.mode = 2\n*.{s}.performance_issue_unique = 0\n*.{s}.performance_issue_same = 1\n"
    f"*.{s}.performance_issue_same_index = 3\n"
    for s in ("MultiStream", "Offline", "SingleStream", "Server")
)
#: The tests the rules require per mlperf.conf model name; a model of the user's own gets both.
REQUIRED_TESTS: dict[str, tuple[str, ...]] = {
    "resnet50": ("TEST01", "TEST04"), "retinanet": ("TEST01",), "bert": ("TEST01",), "bert-99": ("TEST01",),
    "bert-99.9": ("TEST01",),
}  # fmt: skip
DEFAULT_TESTS = ("TEST01", "TEST04")
#: The official verify_performance.py's tolerance, relaxed where stream latencies are tiny (<= 200 us / 1.6 ms).
TOLERANCE = 0.10
RELAXED_TOLERANCE = 0.20
#: The summary/detail keys verify_performance.py scores each scenario by.
SCORE_KEYS = {"Offline": "result_samples_per_second", "SingleStream": "early_stopping_latency_ss",
              "MultiStream": "early_stopping_latency_ms", "Server": "result_completed_samples_per_sec"}


def tests_for(model_name: str | None) -> tuple[str, ...]:
    return REQUIRED_TESTS.get(model_name or "", DEFAULT_TESTS)


def audit_config(test: str, model_name: str | None) -> str:
    """The official audit.config text of *test* for *model_name*."""
    if test == "TEST01":
        body = TEST01_CONFIG.format(target=256 if model_name == "retinanet" else 4096)
    elif test == "TEST04":
        body = TEST04_CONFIG
    else:
        raise ValueError(f"unknown compliance test {test!r}")
    return _HEADER.format(test=test) + body


def refuse_stray_audit_config(directory: Path) -> None:
    """An audit.config in the working directory changes any LoadGen run that looks for one (LoadGen's default), and
    silently: refuse to start until it is gone."""
    path = directory / AUDIT_CONFIG
    if path.exists() or path.is_symlink():
        raise ConfigError(
            f"{path} exists: LoadGen reads an audit.config from the working directory and silently changes the run "
            "with it (a compliance test's settings). pytest-mlperf writes each test's audit.config into that test's "
            "own log folder; move this one away (or delete it) and run again"
        )


@dataclass
class Verdict:
    """One compliance test's outcome: the verification texts as the official scripts print them, and why it failed."""

    test: str
    passed: bool
    reasons: list[str] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)  # file name -> content (verify_*.txt)

    def to_dict(self, log_dir: str) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": list(self.reasons), "log_dir": log_dir}


def _score(detail_raw: Mapping[str, list[Any]], scenario: str) -> float | None:
    values = detail_raw.get(SCORE_KEYS[scenario]) or []
    try:
        return float(values[-1]) if values else None
    except (TypeError, ValueError):
        return None


def verify_performance(
    test: str, scenario: str, reference: Any, candidate: Any
) -> tuple[bool, str, list[str]]:
    """TEST01: the compliance run's score within the tolerance of the submission run's, either way. TEST04: at most
    the tolerance faster (a cache would make the repeated sample faster). *reference*/*candidate* are DetailLogs."""
    lines = ["Verifying performance."]
    reasons: list[str] = []
    if reference.valid is not True:
        reasons.append("the submission run is INVALID, so nothing can be compared with it")
    if candidate.valid is not True:
        reasons.append(f"the {test} run is INVALID: {'; '.join(candidate.invalid_reasons) or 'no reason given'}")
    if scenario == "Server":
        ref_bound = reference.settings.get("target_latency_ns")
        if ref_bound != candidate.settings.get("target_latency_ns"):
            reasons.append("Server target latency mismatch")
    ref_score, test_score = _score(reference.raw, scenario), _score(candidate.raw, scenario)
    if ref_score is None or test_score is None:
        reasons.append(f"no {SCORE_KEYS[scenario]} in the {'submission' if ref_score is None else test} run's log")
    if reasons:
        lines.append(f"TEST FAIL: {reasons[0]}")
        return False, "\n".join(lines) + "\n", reasons
    assert ref_score is not None and test_score is not None
    if test == "TEST04" and scenario in ("SingleStream", "MultiStream"):
        # The official TEST04 script compares throughputs: 1e9 / latency for the stream scenarios.
        ref_score, test_score = 1e9 / ref_score, 1e9 / test_score
    # Each script's own spelling: TEST01's verify_performance.py capitalises, TEST04's does not.
    ref_label, test_label = ("Reference score", "Test score") if test == "TEST01" else ("reference score", "test score")
    lines += [f"{ref_label} = {ref_score}", f"{test_label} = {test_score}"]
    tolerance = TOLERANCE
    # The scripts' own test, on the score each computed (TEST04's stream scores are throughputs, TEST01's latencies).
    if (scenario == "SingleStream" and ref_score <= 200_000) or (scenario == "MultiStream" and ref_score <= 1_600_000):
        tolerance = RELAXED_TOLERANCE
    if test == "TEST04":
        passed = test_score < ref_score * (1 + tolerance)
        why = (f"{test_score:.6g} is more than {tolerance:.0%} faster than the submission run's {ref_score:.6g}: "
               "issuing the same sample repeatedly sped the SUT up (is it caching results?)")
    else:
        passed = ref_score * (1 - tolerance) <= test_score <= ref_score * (1 + tolerance)
        why = (f"score {test_score:.6g} is not within {tolerance:.0%} of the submission run's {ref_score:.6g}")
    lines.append("TEST PASS" if passed else "TEST FAIL: Test score invalid")
    return passed, "\n".join(lines) + "\n", [] if passed else [f"{test} performance: {why}"]


def verify_accuracy(
    baseline: Sequence[tuple[int, bytes]], sampled: Sequence[tuple[int, bytes]]
) -> tuple[bool, str, list[str]]:
    """TEST01's part II on the two logs' entries (qsl_idx, response), repeats included, counted exactly as the
    official ``verify_accuracy.py`` counts them: a sample repeated in the performance log is compared with its
    previous response. Responses are compared whole (the official script compares their first element only, so
    its verdict can pass where this one fails; a failure here goes on to the rescoring of part III)."""
    known: dict[int, bytes] = {}
    duplicate_keys = baseline_mismatch = 0
    for idx, data in baseline:
        if idx in known:
            duplicate_keys += 1
            baseline_mismatch += known[idx] != data
        else:
            known[idx] = data
    matched = mismatched = missing = 0
    first_mismatch: int | None = None
    for idx, data in sampled:
        if idx in known:
            matched += 1
            if known[idx] != data:
                mismatched += 1
                first_mismatch = idx if first_mismatch is None else first_mismatch
        else:
            missing += 1
        known[idx] = data
    passed = not mismatched and matched > 0
    lines = [
        "Verifying accuracy.",
        f"num_acc_log_entries = {len(baseline)}",
        f"num_acc_log_duplicate_keys = {duplicate_keys}",
        f"num_acc_log_data_mismatch = {baseline_mismatch}",
        f"num_perf_log_entries = {len(sampled)}",
        f"num_perf_log_qsl_idx_match = {matched}",
        f"num_perf_log_data_mismatch = {mismatched}",
        f"num_missing_qsl_idxs = {missing}",
        "TEST PASS" if passed else "TEST FAIL",
    ]
    reasons = []
    if mismatched:
        reasons.append(f"TEST01 accuracy: {mismatched} of {matched} responses logged in performance mode differ "
                       f"from the accuracy run's (or the sample's previous response) for the same samples (first: "
                       f"sample {first_mismatch}); the SUT answers differently when it is timed")
    elif not matched:
        reasons.append("TEST01 accuracy: no response was logged in performance mode")
    return passed, "\n".join(lines) + "\n", reasons


def accuracy_delta_percent(model_name: str | None) -> float:
    """How far TEST01's two rescored accuracies may differ, in percent of the compliance score: 0.1 for a "99.9"
    benchmark, 1 for the others (the submission checker's ``get_delta_perc``)."""
    return 0.1 if "99.9" in (model_name or "") else 1.0


@dataclass
class Rescored:
    """TEST01's accuracy logs scored by the task: the sampled responses (``compliance``) and, when they differ from
    the accuracy run's, the accuracy run's responses for the same samples (``baseline``), with the verdict."""

    files: dict[str, str] = field(default_factory=dict)  # path under TEST01/ -> content
    reasons: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)


def rescore_test01(task: Task, dataset: Dataset, model_name: str | None, baseline: Mapping[int, bytes],
                   sampled: Mapping[int, bytes], identical: bool) -> Rescored:
    """TEST01's part III: ``accuracy/accuracy.txt`` scores the sampled log; when the responses are not *identical*,
    ``baseline_accuracy.txt`` and ``compliance_accuracy.txt`` score the accuracy run's and the sampled responses of
    the same samples, and the test passes only when they differ by at most :func:`accuracy_delta_percent` of the
    compliance score, as the submission checker requires."""
    out = Rescored(record={"mode": "identical" if identical else "tolerance"})
    scorer = getattr(task, "score_subset", None)
    if scorer is None:
        if not identical:
            out.reasons.append(
                f"TEST01 accuracy: the responses differ and the task {task.name!r} has no score_subset() to rescore "
                "them within tolerance; give it one (scoring a partial log as its MLCommons script does)")
        return out
    from pytest_mlperf.tasks.base import AccuracyCoverageError

    try:
        compliance = scorer(dict(sampled), dataset)
        out.files["accuracy/accuracy.txt"] = task.accuracy_line(compliance) + "\n"
        if identical:
            return out
        common = {idx: baseline[idx] for idx in sampled if idx in baseline}
        reference = scorer(common, dataset)
    except (AccuracyCoverageError, ValueError, KeyError) as exc:
        out.reasons.append(f"TEST01 accuracy: the sampled responses cannot be rescored: {exc}")
        return out
    out.files["accuracy/baseline_accuracy.txt"] = task.accuracy_line(reference) + "\n"
    out.files["accuracy/compliance_accuracy.txt"] = out.files["accuracy/accuracy.txt"]
    ours, theirs = float(reference[task.metric]), float(compliance[task.metric])
    allowed = accuracy_delta_percent(model_name)
    # The checker's own test: |1 - baseline / compliance| * 100 <= delta, and a zero on either side fails.
    delta = abs(1 - ours / theirs) * 100 if theirs and ours and math.isfinite(ours / theirs) else math.inf
    out.record.update({"metric": task.metric, "baseline": ours, "compliance": theirs,
                       "delta_percent": round(delta, 6) if math.isfinite(delta) else None,
                       "allowed_percent": allowed})
    if delta > allowed:
        shown = f"{delta:.3g} %" if math.isfinite(delta) else "not comparable (a zero score)"
        out.reasons.append(
            f"TEST01 accuracy: the responses logged in performance mode differ from the accuracy run's and score "
            f"{task.metric} {theirs:.6g} against the accuracy run's {ours:.6g} on the same {len(common)} samples: "
            f"a difference of {shown}, over the {allowed:g} % allowed; the SUT answers differently when it is timed")
    return out
