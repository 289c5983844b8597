"""The results document through pytester: the machine-info and results-JSON hooks, and version-1 baselines."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from pytest_mlperf.results import read_document, schema
from tests.acceptance.test_gate_plugin import PERF, gated  # noqa: F401 (a fixture)
from tests.conftest import TINY_CONFTEST

HOOKS_CONFTEST = """

def pytest_mlperf_update_machine_info(config, machine_info):
    machine_info["container_image"] = "ghcr.io/example/bench@sha256:" + "ab" * 32
    machine_info["accelerator_driver"] = config.getini("python_files")[0]


def pytest_mlperf_update_results_json(config, document):
    document["ci"] = {"job": "nightly", "runs_seen": len(document["runs"]), "status_seen": document["status"]}
"""

USER_TEST = """
def test_tiny(mlperf, mlperf_scenario, mlperf_mode, tiny_model, tiny_dataset):
    mlperf.run(tiny_model, tiny_dataset)
"""


def results(pytester: pytest.Pytester, name: str = "mlperf-results/results.json") -> dict:
    loaded: dict = json.loads((pytester.path / name).read_text())
    return loaded


def test_hooks_add_a_machine_field_and_a_document_key(project: pytest.Pytester) -> None:
    project.makeconftest(TINY_CONFTEST.read_text() + HOOKS_CONFTEST)
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest("-p", "no:cacheprovider", "--mlperf-scenarios=Offline,Server", "--mlperf-mode=accuracy")
    result.assert_outcomes(passed=2)
    doc = results(project)
    jsonschema.validate(doc, schema())
    assert doc["machine"]["container_image"] == "ghcr.io/example/bench@sha256:" + "ab" * 32
    assert doc["machine"]["accelerator_driver"] == "test_*.py"  # the hook got pytest's config
    assert doc["machine"]["cores"] >= 1  # added to, not replaced
    # The results-JSON hook sees the final document: every run, the final status.
    assert doc["ci"] == {"job": "nightly", "runs_seen": 2, "status_seen": "complete"}
    assert sorted(p.name for p in (project.path / "mlperf-results").iterdir() if p.is_file()) == ["results.json"]


def as_release_1(path: Path) -> None:
    """Rewrite a results file as release 1 wrote it: schema version 1, no task per run."""
    doc = json.loads(path.read_text())
    doc["schema_version"] = 1
    for run in doc["runs"]:
        run.pop("task", None)
    path.write_text(json.dumps(doc, indent=2))


@pytest.mark.usefixtures("gated")  # the tiny project whose samples sleep 1 ms: its latency is steady
def test_a_version_1_baseline_still_gates_a_new_session(pytester: pytest.Pytester) -> None:
    first = pytester.runpytest(*PERF, "--mlperf-scenarios=SingleStream", "--mlperf-results=base.json")
    first.assert_outcomes(passed=1)
    base = pytester.path / "base.json"
    assert results(pytester, "base.json")["schema_version"] == 2
    as_release_1(base)

    # A floor of 90 % keeps warm-up noise between two sessions of the same code from counting as a change.
    result = pytester.runpytest(
        *PERF, "--mlperf-scenarios=SingleStream", f"--mlperf-baseline={base}", "--mlperf-floor=0.9"
    )
    result.assert_outcomes(passed=1)
    comparison = results(pytester, "mlperf-results/results.comparison.json")
    assert comparison["verdict"] == "no-change"  # the same code, 1 ms per sample on both sides
    (case,) = comparison["cases"]
    assert case["verdict"] == "no-change" and case["n_base"] >= 100 and case["n_head"] >= 100
    assert results(pytester)["schema_version"] == 2


def test_a_baseline_of_an_unknown_version_is_refused_with_the_fix(project: pytest.Pytester) -> None:
    (project.path / "future.json").write_text(json.dumps({"schema_version": 3, "runs": []}))
    result = project.runpytest("--mlperf-baseline=future.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*--mlperf-baseline: future.json cannot be used as a baseline: future.json: schema_version 3; this "
        "pytest-mlperf reads versions 1 and 2. A newer pytest-mlperf wrote it: upgrade pytest-mlperf*"
    ])


def test_a_hook_that_breaks_the_document_costs_no_run(project: pytest.Pytester) -> None:
    project.makeconftest(
        TINY_CONFTEST.read_text() + "\n\ndef pytest_mlperf_update_results_json(config, document):\n"
        "    document['when'] = object()\n"
    )
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest("-p", "no:cacheprovider", "--mlperf-scenarios=Offline", "--mlperf-mode=accuracy")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*a pytest_mlperf_update_results_json hook added a value JSON cannot hold*"])
    doc = read_document(project.path / "mlperf-results" / "results.json")
    assert doc["status"] == "partial" and len(doc["runs"]) == 1
