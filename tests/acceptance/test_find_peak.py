"""--mlperf-find-peak: the peak recorded is a load LoadGen judged VALID, the next load up one it judged INVALID.

Nothing here depends on how fast the machine is: the assertions are on what the search recorded, and each
recorded verdict is checked against LoadGen's own detail log of that point's run in this session.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pytest_mlperf.loadgen.logs import read_detail
from pytest_mlperf.results import schema
from tests.conftest import FAST

TEST = """
def test_peak(mlperf, mlperf_scenario, tiny_model, tiny_dataset):
    mlperf.run(tiny_model, tiny_dataset)
"""

RESOLUTION = 0.25


def _search(project: pytest.Pytester, scenario: str, *args: str) -> dict[str, Any]:
    project.makepyfile(test_peak=TEST)
    result = project.runpytest(
        *FAST, f"--mlperf-scenarios={scenario}", "--mlperf-mode=performance", "--mlperf-find-peak",
        f"--mlperf-find-peak-resolution={RESOLUTION}", *args,
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*- mlperf find-peak -*", f"test_peak[[]{scenario}[]]: peak * run(s)"])
    document = json.loads((project.path / "mlperf-results" / "results.json").read_text())
    jsonschema.validate(document, schema())
    (run,) = document["runs"]
    return dict(run)


@pytest.mark.parametrize("backend", ["noop", "onnxruntime"])
def test_server_peak_is_valid_and_the_next_load_up_is_not(project: pytest.Pytester, backend: str) -> None:
    run = _search(project, "Server", f"--mlperf-backend={backend}", "--mlperf-find-peak-confirm=1")
    search = run["find_peak"]
    points = search["points"]
    peak, above = search["peak"], search["first_invalid_above"]
    assert search["converged"] is True, points
    assert peak is not None and above is not None and above > peak
    # The bracket is as tight as asked.
    assert (above - peak) / peak <= RESOLUTION
    at_peak = [p for p in points if p["load"] == peak]
    at_above = [p for p in points if p["load"] == above]
    # The peak held on the first run and the confirmation rerun; the next load up failed at least once.
    assert len(at_peak) >= 2 and all(p["valid"] for p in at_peak), points
    assert any(not p["valid"] for p in at_above), points
    # No load strictly between them was tried: the bracket is what the search saw.
    assert not [p for p in points if peak < p["load"] < above]
    # The run standing for the case is one at the peak, VALID, under the case's latency bound.
    assert run["valid"] is True and run["passed"] is True
    assert run["settings"]["target_qps"] == pytest.approx(peak, rel=1e-5)  # the log keeps 6 digits
    assert search["bound"] == {"latency_percentile": run["thresholds"]["latency_percentile"],
                               "latency_ms": run["thresholds"]["latency_ms"]}
    assert search["bound"]["latency_ms"] == pytest.approx(100.0)  # the smoke profile's Server bound
    # Every recorded verdict is LoadGen's own, read back from that point's detail log.
    log_root = project.path / "mlperf-results" / Path(run["log_dir"]).parent  # relative to the results
    assert len({p["log_dir"] for p in points}) == len(points)
    for point in points:
        detail = read_detail(log_root / point["log_dir"] / "mlperf_log_detail.txt")
        assert detail.valid is point["valid"], point
        assert detail.settings["target_qps"] == pytest.approx(point["load"], rel=1e-5)


def test_offline_peak_is_the_best_valid_samples_per_second(project: pytest.Pytester) -> None:
    run = _search(project, "Offline", "--mlperf-find-peak-confirm=1")
    search = run["find_peak"]
    points = search["points"]
    valid = [p for p in points if p["valid"]]
    assert search["converged"] is True and len(valid) >= 2
    assert search["peak"] == max(p["qps"] for p in valid)
    assert search["first_invalid_above"] is None
    assert search["bound"] == {"latency_percentile": None, "latency_ms": None}
    assert run["valid"] is True and run["metrics"]["qps"] == search["peak"]
    log_root = project.path / "mlperf-results" / Path(run["log_dir"]).parent  # relative to the results
    for point in points:
        assert read_detail(log_root / point["log_dir"] / "mlperf_log_detail.txt").valid is point["valid"]


def test_find_peak_options_are_checked(project: pytest.Pytester) -> None:
    project.makepyfile(test_peak=TEST)
    result = project.runpytest(*FAST, "--mlperf-find-peak-resolution=0.9")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mlperf-find-peak-resolution: 0.9 is not valid; it must be from 0.005 to 0.5*"])
    result = project.runpytest(*FAST, "--mlperf-find-peak-confirm=11")
    result.stderr.fnmatch_lines(["*--mlperf-find-peak-confirm: 11 is not valid; it must be from 0 to 10 runs*"])
