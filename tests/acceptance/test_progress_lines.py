"""--mlperf-progress: a long run reports elapsed time, samples completed and samples/s on the terminal."""

from __future__ import annotations

import re

import pytest

TEST = """
def test_long(mlperf, mlperf_scenario, tiny_model, tiny_dataset):
    mlperf.run(tiny_model, tiny_dataset, check=False)
"""
ARGS = ["-p", "no:cacheprovider", "--mlperf-scenarios=SingleStream", "--mlperf-mode=performance",
        "--mlperf-min-duration-ms=1500"]


def test_a_long_run_reports_progress_lines(project: pytest.Pytester) -> None:
    project.makepyfile(test_long=TEST)
    result = project.runpytest(*ARGS, "--mlperf-progress=0.2")
    result.assert_outcomes(passed=1)
    lines = [line for line in result.stdout.lines if line.startswith("[mlperf] ")]
    # 1.5 s of LoadGen reported every 0.2 s: however slow the machine, the run lasts long enough for a line.
    assert lines, result.stdout.str()
    pattern = re.compile(r"\[mlperf\] test_long\[SingleStream\] performance: \d+:\d\d elapsed, ([\d,]+) samples "
                         r"completed, [\d,.]+ samples/s over the last [\d.]+ s")
    counts = []
    for line in lines:
        match = pattern.fullmatch(line)
        assert match, line
        counts.append(int(match.group(1).replace(",", "")))
    assert counts == sorted(counts)


def test_progress_off_writes_no_line(project: pytest.Pytester) -> None:
    project.makepyfile(test_long=TEST)
    result = project.runpytest(*ARGS, "--mlperf-progress=off")
    result.assert_outcomes(passed=1)
    assert not [line for line in result.stdout.lines if line.startswith("[mlperf] ")]


def test_a_bad_progress_value_is_a_usage_error(project: pytest.Pytester) -> None:
    project.makepyfile(test_long=TEST)
    result = project.runpytest(*ARGS, "--mlperf-progress=sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mlperf-progress: 'sometimes' is not auto, off or a number of seconds*"])
