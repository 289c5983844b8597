"""The smoke profile reruns once a run that LoadGen found too short because its warm-up ran slower than the run."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from pytest_mlperf.results import schema
from tests.conftest import FAST

#: An engine slow while it warms up and calibrates (on pytest's thread) and fast in the run (on LoadGen's and the
#: SUT's threads): what a CI neighbour that stops between the warm-up and the run does to timings. The calibration
#: then asks LoadGen for far too few queries.
SLOW_START_BACKEND = """

def pytest_mlperf_backend_names(config):
    return ["slow-start"]


def pytest_mlperf_make_backend(config, name, model, options):
    return ToyLinear(name, options) if name == "slow-start" else None
"""

TEST = """
def test_case(mlperf, mlperf_scenario, tiny_dataset):
    mlperf.run("slow://linear", tiny_dataset)
"""


@pytest.mark.parametrize("scenario", ["SingleStream", "Offline"])
def test_a_run_short_of_queries_is_rerun_once_with_scaled_pre_generation(
    project: pytest.Pytester, scenario: str
) -> None:
    project.makeconftest(Path(project.path / "conftest.py").read_text() + SLOW_START_BACKEND)
    project.makepyfile(test_case=TEST)
    result = project.runpytest(
        *FAST, f"--mlperf-scenarios={scenario}", "--mlperf-mode=performance", "--mlperf-backend=slow-start",
        "--mlperf-backend-option=main_thread_ms=1"
    )
    result.assert_outcomes(passed=1)
    doc = json.loads((project.path / "mlperf-results" / "results.json").read_text())
    jsonschema.validate(doc, schema())
    (run,) = doc["runs"]
    assert run["valid"] is True
    note = run["overrides"]["pre_generation_rerun"]
    assert note.startswith("a run ran out of pre-generated queries (min ")
    key = "single_stream_expected_latency_ns" if scenario == "SingleStream" else "offline_expected_qps"
    steps = [tuple(float(v) for v in part.rsplit(f"{key} ", 1)[1].split(" -> ")) for part in note.split("; then ")]
    assert 1 <= len(steps) <= 2
    for before, after in steps:
        assert (after < before) if scenario == "SingleStream" else (after > before)
    assert run["overrides"][key] == pytest.approx(after, rel=1e-5)
    # Only the rerun's logs are there: its detail log holds the scaled value and says VALID.
    detail = (project.path / "mlperf-results" / run["log_dir"] / "mlperf_log_detail.txt").read_text()
    assert '"result_validity", "value": "VALID"' in detail
