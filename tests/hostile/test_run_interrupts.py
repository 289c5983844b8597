"""SIGINT and SIGTERM sent to a real pytest process in the middle of a LoadGen run end it cleanly, every time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_mlperf.results import read_document, runs_journal
from tests.conftest import TINY_CONFTEST

PROJECT_TEST = """
import os
import time
from pathlib import Path


def test_a_first(mlperf, tiny_model, tiny_dataset):
    mlperf.run(tiny_model, tiny_dataset, scenario="Offline", mode="accuracy")


def test_b_long(mlperf, tiny_model, tiny_dataset):
    # A run that finished in the interrupted test: pytest reports no such test, yet the run must be kept.
    mlperf.run(tiny_model, tiny_dataset, scenario="Offline", mode="accuracy")
    scenario = os.environ["LONG_SCENARIO"]
    if scenario == "none":  # no LoadGen run: the signal lands in plain Python code
        Path("waiting").write_text("x")
        while True:
            time.sleep(0.05)
    # A millisecond per sample keeps the calibrated load (and the queries LoadGen generates for a minute) small.
    slow = __import__("conftest").make_delayed_dataset(0.001)
    mlperf.run(tiny_model, slow, scenario=scenario, mode="performance")


def test_c_never_reached(mlperf, tiny_model, tiny_dataset):
    mlperf.run(tiny_model, tiny_dataset, scenario="Offline", mode="accuracy")
"""

#: What a crashed interpreter or an aborted C++ runtime prints.
CRASH_MARKS = ("Segmentation fault", "core dumped", "Aborted", "Fatal Python error", "terminate called",
               "INTERNALERROR")
#: A bound on the wait for exit that only a broken fix reaches (a process left hanging); a healthy one is far inside.
EXIT_LIMIT_S = 300.0


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "conftest.py").write_text(TINY_CONFTEST.read_text())
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_signals.py").write_text(PROJECT_TEST)
    return tmp_path


def _mid_case(project: Path) -> bool:
    """The long case is in its LoadGen run: LoadGen has written its detail log into the case's log folder."""
    if (project / "waiting").exists():
        return True
    logs = project / "mlperf-results" / "logs"
    return any(p.stat().st_size > 0 for p in logs.glob("test_b_long_*-performance-*/mlperf_log_detail.txt"))


def interrupt_mid_case(project: Path, signum: int, scenario: str) -> tuple[int, str, str]:
    """Start pytest, wait (by polling the file the run writes) until the long case runs, send *signum*."""
    for old in ("mlperf-results", "waiting"):
        target = project / old
        if target.is_dir():
            import shutil

            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    env = {**os.environ, "LONG_SCENARIO": scenario}
    # A minute per run: the signal arrives within a poll of LoadGen starting, far inside it (and Offline issues
    # all of its samples in one query, which a longer run would make gigabytes).
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mlperf-min-duration-ms=60000"]
    proc = subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # No clock: pytest either reaches the long case or ends (its cases are bounded by their min duration).
        while not _mid_case(project):
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"pytest ended (rc {proc.returncode}) before the long case ran:\n{out.decode()}\n"
                            f"{err.decode()}")
            time.sleep(0.05)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=EXIT_LIMIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out.decode(), err.decode()


def check_clean_interrupt(project: Path, rc: int, out: str, err: str, what: str) -> None:
    text = out + err
    assert rc == 2, f"{what}: exit code {rc}, not pytest's 2 for an interrupt\n{text[-3000:]}"
    for mark in CRASH_MARKS:
        assert mark not in text, f"{what}: {mark!r} in the output\n{text[-3000:]}"
    # pytest's own summary, and the plugin's table with the case that finished before.
    assert "KeyboardInterrupt" in out and "1 passed" in out, f"{what}: no pytest summary\n{out[-3000:]}"
    assert "mlperf results" in out and "test_a_first" in out, f"{what}: no mlperf summary\n{out[-3000:]}"
    results = project / "mlperf-results" / "results.json"
    document = read_document(results)
    assert document["status"] == "interrupted", what
    runs = [(run["id"].split("::")[-1], run["scenario"], run["mode"]) for run in document["runs"]]
    assert runs == [("test_a_first", "Offline", "accuracy"), ("test_b_long", "Offline", "accuracy")], what
    assert all(run["passed"] for run in document["runs"]), what
    assert not runs_journal(results).exists(), f"{what}: the session did not finish its results file"
    logs = project / "mlperf-results" / "logs"
    # The interrupted run's logs are kept under a name no reader takes for a finished run's.
    names = sorted(p.name for p in logs.iterdir())
    long_runs = [n for n in names if n.startswith("test_b_long_") and "-performance-" in n]
    assert len(long_runs) == (0 if "none" in what else 1), (what, names)
    assert all(n.endswith(".interrupted") for n in long_runs), (what, names)
    # The finished run's logs are where its record says.
    assert all((results.parent / run["log_dir"]).is_dir() for run in document["runs"]), what


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_a_loadgen_run_ends_the_session_cleanly(project: Path, signum: int) -> None:
    # Repeated, and in each scenario family: a crash during teardown is a race, so one clean run proves little.
    for attempt, scenario in enumerate(("Server", "Offline", "SingleStream")):
        rc, out, err = interrupt_mid_case(project, signum, scenario)
        check_clean_interrupt(project, rc, out, err, f"{signal.Signals(signum).name} #{attempt} in {scenario}")


def test_sigterm_outside_a_loadgen_run_is_an_orderly_interrupt(project: Path) -> None:
    rc, out, err = interrupt_mid_case(project, signal.SIGTERM, "none")
    check_clean_interrupt(project, rc, out, err, "SIGTERM in plain test code (none)")
