"""Hostile output paths: a results file or log folder that cannot be written is a usage error before any case
runs, and a write that fails later is said in the summary and fails the session; no file is claimed unwritten."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

USER_TEST = """
def test_tiny(mlperf, tiny_model, tiny_dataset):
    assert mlperf.run(tiny_model, tiny_dataset, scenario="Offline", mode="performance").valid
"""

FAST = ["--mlperf-min-duration-ms=100", "--mlperf-min-query-count=1", "-p", "no:cacheprovider"]


def assert_usage_error(result: pytest.RunResult, *patterns: str) -> None:
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    assert "Traceback" not in text and "INTERNALERROR" not in text, text
    assert "PermissionError" not in text
    assert "passed" not in text and "failed" not in text, "a case ran before the refusal"
    result.stderr.fnmatch_lines(list(patterns))


def read_only_dir(tmp_path: Path) -> Path:
    """A folder nothing can be created in: chmod for a user, sysfs for root (whom permission bits do not stop)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    if not sys.platform.startswith("linux") or not Path("/sys/kernel").is_dir():
        pytest.skip("running as root without sysfs: no folder here refuses root's writes")
    return Path("/sys/kernel")


def test_results_pointing_at_a_directory(project: pytest.Pytester) -> None:
    (project.path / "out").mkdir()
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest("--mlperf-results=out", *FAST)
    assert_usage_error(result, "*--mlperf-results: cannot write out: *out is a directory; give a file path inside "
                       "it, e.g. *out/results.json*")


def test_results_under_a_file(project: pytest.Pytester) -> None:
    (project.path / "taken").write_text("a file\n")
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest("--mlperf-results=taken/results.json", *FAST)
    assert_usage_error(result, "*--mlperf-results: cannot write taken/results.json: *taken is a file, so nothing "
                       "can be created under it*")


def test_results_in_a_read_only_folder(project: pytest.Pytester, tmp_path: Path) -> None:
    folder = read_only_dir(tmp_path)
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest(f"--mlperf-results={folder}/sub/results.json", *FAST)
    assert_usage_error(result, f"*--mlperf-results: cannot write {folder}/sub/results.json: {folder} is not "
                       "writable (*)*")


def test_log_dir_in_a_read_only_folder(project: pytest.Pytester, tmp_path: Path) -> None:
    folder = read_only_dir(tmp_path)
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest(f"--mlperf-log-dir={folder}/logs", *FAST)
    assert_usage_error(result, f"*--mlperf-log-dir: cannot write {folder}/logs: {folder} is not writable*")


def test_log_dir_that_is_a_file(project: pytest.Pytester) -> None:
    (project.path / "logs").write_text("a file\n")
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest("--mlperf-log-dir=logs", *FAST)
    assert_usage_error(result, "*--mlperf-log-dir: cannot write logs: *logs is a file*")


def test_a_blocked_default_path_is_refused_once_a_benchmark_is_collected(project: pytest.Pytester) -> None:
    (project.path / "mlperf-results").write_text("not a folder\n")
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest(*FAST)
    assert_usage_error(result, "*--mlperf-results: cannot write mlperf-results/results.json: *mlperf-results is a "
                       "file*")


def test_a_project_without_benchmarks_never_probes_the_defaults(project: pytest.Pytester) -> None:
    (project.path / "mlperf-results").write_text("not a folder\n")
    project.makepyfile(test_plain="def test_x():\n    pass\n")
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_write_that_fails_later_is_said_and_fails_the_session(project: pytest.Pytester) -> None:
    """The results folder is blocked by a file after the checks, while the case runs: nothing is claimed."""
    project.makepyfile(
        test_user="""
from pathlib import Path

def test_tiny(mlperf, tiny_model, tiny_dataset):
    # Accuracy mode: its outcome does not depend on how busy the machine is.
    mlperf.run(tiny_model, tiny_dataset, scenario="Offline", mode="accuracy")
    Path("blocked").write_text("now a file")
"""
    )
    result = project.runpytest("--mlperf-results=blocked/results.json", "--mlperf-log-dir=logs", *FAST)
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text and "Traceback" not in text
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR, text
    result.stdout.fnmatch_lines(["*results JSON: NOT written: could not write results to *blocked/results.json*"])
    assert "results JSON: /" not in text and not (project.path / "blocked" / "results.json").exists()
