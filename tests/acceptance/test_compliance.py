"""--mlperf-compliance: TEST04 catches a SUT that caches results, TEST01 one that answers differently when timed;
each test runs in its own log folder with its audit.config, and none is ever read from or left in the cwd."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pytest_mlperf.compliance import audit_config, verify_accuracy
from pytest_mlperf.results import schema
from tests.conftest import FAST

CHEATING_BACKENDS = """

import time
import numpy as np


class CachingBackend:
    \"\"\"Remembers its last answer: the same sample again costs nothing, any other costs 2 ms of real work.\"\"\"

    name, version, thread_safe = "caching", "1", True

    def __init__(self, model, options):
        self.last_key, self.last_out = None, None

    def run(self, inputs):
        rows = []
        for row in np.atleast_2d(inputs):
            if row.tobytes() != self.last_key:
                time.sleep(0.002)
                self.last_key, self.last_out = row.tobytes(), row @ WEIGHTS + BIAS
            rows.append(self.last_out)
        return {"logits": np.stack(rows)}

    def warmup(self, sample):
        self.run(sample)


class FickleBackend:
    \"\"\"Answers a sample right the first time it sees it, and with another class ever after: an accuracy run (each
    sample once) scores well, while a timed run (samples repeated) answers differently.\"\"\"

    name, version, thread_safe = "fickle", "1", True

    def __init__(self, model, options):
        self.seen = set()

    def run(self, inputs):
        out = np.atleast_2d(inputs) @ WEIGHTS + BIAS
        for i, row in enumerate(np.atleast_2d(inputs)):
            if row.tobytes() in self.seen:
                out[i] = np.roll(out[i], 1)
            self.seen.add(row.tobytes())
        return {"logits": out}

    def warmup(self, sample):
        pass


class JitteryBackend(FickleBackend):
    \"\"\"Ranks the second and third classes the other way round for a sample it has seen before: a timed run's
    responses differ from the accuracy run's, while its top-1 answers (the score) do not.\"\"\"

    name = "jittery"

    def run(self, inputs):
        out = np.atleast_2d(inputs) @ WEIGHTS + BIAS
        for i, row in enumerate(np.atleast_2d(inputs)):
            if row.tobytes() in self.seen:
                second, third = np.argsort(-out[i])[1:3]
                out[i, second], out[i, third] = out[i, third], out[i, second]
            self.seen.add(row.tobytes())
        return {"logits": out}


def pytest_mlperf_backend_names(config):
    return ["caching", "fickle", "jittery"]


def pytest_mlperf_make_backend(config, name, model, options):
    known = {"caching": CachingBackend, "fickle": FickleBackend, "jittery": JitteryBackend}
    return known.get(name, lambda *_: None)(model, options)
"""

SUITE = """
import pytest

@pytest.mark.mlperf(accuracy=0.9, latency_ms=1000)
def test_cheat(mlperf, mlperf_scenario, mlperf_mode, tiny_dataset):
    mlperf.run("mem://linear", tiny_dataset)
"""

RANKED_SUITE = """
import pytest
from pytest_mlperf import ArrayDataset, Classification

@pytest.mark.mlperf(accuracy=0.9, latency_ms=1000)
def test_ranked(mlperf, mlperf_scenario, mlperf_mode, tiny_dataset):
    # Every class ranked in each response, so that a response can change without its top-1 answer changing.
    ranked = ArrayDataset(tiny_dataset.inputs, tiny_dataset.labels, name="tiny", task=Classification(topk=3))
    mlperf.run("mem://linear", ranked)
"""


def cheating_project(project: pytest.Pytester) -> pytest.Pytester:
    project.makeconftest(Path(project.path / "conftest.py").read_text() + CHEATING_BACKENDS)
    project.makepyfile(test_cheat=SUITE)
    return project


def runs_of(project: pytest.Pytester) -> list[dict[str, Any]]:
    doc = json.loads((project.path / "mlperf-results" / "results.json").read_text())
    jsonschema.validate(doc, schema())
    runs: list[dict[str, Any]] = doc["runs"]
    return runs


def no_audit_config_outside_logs(root: Path) -> None:
    stray = [p for p in root.rglob("audit.config") if "logs" not in p.relative_to(root).parts]
    assert stray == []


def test_test04_catches_a_sut_that_caches_results(project: pytest.Pytester) -> None:
    cheating_project(project)
    result = project.runpytest(*FAST, "--mlperf-backend=caching", "--mlperf-compliance",
                               "--mlperf-scenarios=SingleStream", "--mlperf-mode=performance")
    result.assert_outcomes(failed=1)
    (run,) = runs_of(project)
    assert set(run["compliance"]) == {"TEST01", "TEST04"}
    assert run["compliance"]["TEST04"]["passed"] is False
    # Answering from the cache is thousands of times faster; were LoadGen to run out of queries first, the
    # too-short TEST04 run is itself a failure (the official script's "Test results are invalid").
    (reason,) = run["compliance"]["TEST04"]["reasons"]
    assert "faster than the submission run's" in reason or "the TEST04 run is INVALID" in reason
    result.stdout.fnmatch_lines(["*" + reason[:60] + "*"])
    log_dir = project.path / "mlperf-results" / run["log_dir"]
    test04 = log_dir / run["compliance"]["TEST04"]["log_dir"]
    assert (test04 / "audit.config").read_text() == audit_config("TEST04", None)
    assert "performance_issue_same = 1" in (test04 / "audit.config").read_text()
    assert (test04 / "verify_performance.txt").read_text().splitlines()[-1].startswith("TEST FAIL")
    assert (test04 / "performance" / "run_1" / "mlperf_log_detail.txt").is_file()
    # Caching changes no answer: TEST01's sampled responses equal the accuracy baseline's.
    assert (log_dir / "TEST01" / "verify_accuracy.txt").read_text().splitlines()[-1] == "TEST PASS"
    no_audit_config_outside_logs(project.path)


def test_test01_catches_a_sut_that_answers_differently_when_timed(project: pytest.Pytester) -> None:
    cheating_project(project)
    # Accuracy first (pytest runs the ids in the order given): its log is TEST01's baseline, as in the official flow.
    result = project.runpytest("test_cheat.py::test_cheat[Offline-accuracy]",
                               "test_cheat.py::test_cheat[Offline-performance]", *FAST, "--mlperf-backend=fickle",
                               "--mlperf-compliance", "--mlperf-scenarios=Offline")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*TEST01 accuracy: * responses logged in performance mode differ from the "
                                 "accuracy run's*"])
    accuracy, performance = runs_of(project)
    assert accuracy["mode"] == "accuracy" and accuracy["metrics"]["accuracy"]["top1"] >= 0.9
    assert performance["compliance"]["TEST01"]["passed"] is False
    test01 = project.path / "mlperf-results" / performance["log_dir"] / "TEST01"
    verify = (test01 / "verify_accuracy.txt").read_text().splitlines()
    assert verify[-1] == "TEST FAIL"
    assert int(verify[verify.index(next(v for v in verify if v.startswith("num_perf_log_data_mismatch")))]
               .split(" = ")[1]) > 0
    assert (test01 / "accuracy" / "mlperf_log_accuracy.json").is_file()
    assert "accuracy_log_sampling_target = 4096" in (test01 / "audit.config").read_text()
    assert not (project.path / "mlperf-results" / performance["log_dir"] / "TEST01-baseline").exists()
    no_audit_config_outside_logs(project.path)


def test_test01_rescores_responses_that_differ_and_passes_them_within_tolerance(project: pytest.Pytester) -> None:
    cheating_project(project)
    project.makepyfile(test_ranked=RANKED_SUITE)
    result = project.runpytest("test_ranked.py::test_ranked[Offline-accuracy]",
                               "test_ranked.py::test_ranked[Offline-performance]", *FAST, "--mlperf-backend=jittery",
                               "--mlperf-compliance", "--mlperf-scenarios=Offline")
    accuracy, performance = runs_of(project)
    assert accuracy["passed"] is True, result.stdout.str()
    verdict = performance["compliance"]["TEST01"]
    # Only the accuracy half is judged here: TEST01's performance half compares two timed runs of a toy SUT.
    assert not [r for r in verdict["reasons"] if "TEST01 accuracy" in r], result.stdout.str()
    assert verdict["accuracy"]["mode"] == "tolerance" and verdict["accuracy"]["delta_percent"] == 0.0
    assert verdict["accuracy"]["baseline"] == verdict["accuracy"]["compliance"] == 1.0
    test01 = project.path / "mlperf-results" / performance["log_dir"] / "TEST01"
    verify = (test01 / "verify_accuracy.txt").read_text().splitlines()
    # As the official script would: the byte-exact check fails, so the checker reads the two rescored files.
    assert verify[-1] == "TEST FAIL"
    assert sorted(p.name for p in (test01 / "accuracy").iterdir()) == [
        "accuracy.txt", "baseline_accuracy.txt", "compliance_accuracy.txt", "mlperf_log_accuracy.json"]
    baseline = (test01 / "accuracy" / "baseline_accuracy.txt").read_text()
    assert baseline == (test01 / "accuracy" / "compliance_accuracy.txt").read_text()
    assert baseline.startswith("accuracy=100.000%, good=")
    # The fickle SUT's top-1 answers change when timed: rescoring catches it, naming both scores.
    project.runpytest("test_ranked.py::test_ranked[Offline-accuracy]",
                      "test_ranked.py::test_ranked[Offline-performance]", *FAST, "--mlperf-backend=fickle",
                      "--mlperf-compliance", "--mlperf-scenarios=Offline",
                      "--mlperf-results=fickle.json").assert_outcomes(passed=1, failed=1)
    fickle = json.loads((project.path / "fickle.json").read_text())["runs"][1]["compliance"]["TEST01"]
    assert fickle["passed"] is False and fickle["accuracy"]["compliance"] < fickle["accuracy"]["baseline"]
    assert any("TEST01 accuracy" in r and "over the 1 % allowed" in r for r in fickle["reasons"])


HONEST_SUITE = """
import pytest

@pytest.mark.mlperf(accuracy=0.9, latency_ms=1000)
def test_honest(mlperf, mlperf_scenario, mlperf_mode, tiny_model, tiny_dataset):
    mlperf.run(tiny_model, tiny_dataset)
"""


def test_an_honest_sut_passes_test01_accuracy_with_its_own_baseline(project: pytest.Pytester) -> None:
    project.makepyfile(test_honest=HONEST_SUITE)
    result = project.runpytest(*FAST, "--mlperf-compliance", "--mlperf-scenarios=Offline",
                               "--mlperf-mode=performance")
    (run,) = runs_of(project)
    log_dir = project.path / "mlperf-results" / run["log_dir"]
    # No accuracy run in this session: TEST01 made its own baseline next to the test's folder.
    assert (log_dir / "TEST01-baseline" / "mlperf_log_accuracy.json").is_file()
    assert (log_dir / "TEST01" / "verify_accuracy.txt").read_text().splitlines()[-1] == "TEST PASS"
    assert not any("TEST01 accuracy" in r for r in run["reasons"]), result.stdout.str()


def test_an_audit_config_in_the_working_directory_is_refused(project: pytest.Pytester) -> None:
    project.makepyfile(test_cheat=SUITE)
    (project.path / "audit.config").write_text("*.*.mode = 2\n")
    result = project.runpytest(*FAST, "--mlperf-compliance")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mlperf-compliance: *audit.config exists: LoadGen reads an audit.config*"])


def test_accuracy_verification_counts_like_the_official_script() -> None:
    # Counted by hand as compliance/TEST01/verify_accuracy.py counts: the accuracy log's repeated key 2 is one
    # duplicate (same data); in the performance log, 2 differs, 9 is missing the first time and then matches its
    # own previous response, and 1's second entry matches too.
    baseline = [(1, b"a"), (2, b"b"), (2, b"b")]
    sampled = [(1, b"a"), (2, b"c"), (9, b"z"), (9, b"z"), (1, b"a")]
    passed, text, reasons = verify_accuracy(baseline, sampled)
    assert not passed
    assert text.splitlines()[1:] == [
        "num_acc_log_entries = 3", "num_acc_log_duplicate_keys = 1", "num_acc_log_data_mismatch = 0",
        "num_perf_log_entries = 5", "num_perf_log_qsl_idx_match = 4", "num_perf_log_data_mismatch = 1",
        "num_missing_qsl_idxs = 1", "TEST FAIL"]
    assert "1 of 4 responses" in reasons[0] and "first: sample 2" in reasons[0]
    # A sample answered differently the second time it is issued in the timed run fails too.
    assert verify_accuracy([(1, b"a")], [(1, b"a"), (1, b"b")])[0] is False
    assert verify_accuracy([(1, b"a")], [(1, b"a"), (1, b"a")])[0] is True
    assert verify_accuracy([(1, b"a")], [])[0] is False  # nothing compared is no pass
