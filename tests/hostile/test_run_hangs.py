"""Waits that could last for ever are bounded and say what they waited for: locks, reused loads, special files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_mlperf.errors import ProvisioningError
from pytest_mlperf.fileio import bounded_lock
from pytest_mlperf.results import read_document
from tests.conftest import FAST

HOLD_LOCK = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
open(sys.argv[2], "w").close()
time.sleep(600)
"""


@pytest.fixture
def held_lock(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real second process holding a file lock, as another pytest-mlperf process would; yields a function that
    starts it on a path and returns once it holds the lock."""
    procs: list[subprocess.Popen[bytes]] = []

    def hold(lock: Path) -> None:
        lock.parent.mkdir(parents=True, exist_ok=True)
        ready = tmp_path / f"held-{len(procs)}"
        procs.append(subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock), str(ready)]))
        # No clock: the holder either takes the fresh lock and says so, or dies (it sleeps 600 s at most).
        while not ready.exists():
            assert procs[-1].poll() is None, "the lock holder died before taking the lock"
            time.sleep(0.05)

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_lock_wait_is_bounded_and_names_the_lock_file(tmp_path: Path, held_lock) -> None:  # type: ignore[no-untyped-def]
    lock = tmp_path / "model.onnx.lock"
    held_lock(lock)
    waited: list[str] = []
    with (
        pytest.raises(ProvisioningError) as caught,
        bounded_lock(lock, 0.5, "model 'm' (building x)", lambda: waited.append("waiting")),
    ):
        pytest.fail("the lock was taken although another process holds it")
    assert waited == ["waiting"]
    message = str(caught.value)
    assert message.startswith(f"model 'm' (building x): another process still holds {lock} after 0 s of waiting; ")
    assert f"if no pytest-mlperf process is running, delete {lock}" in message


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_an_asset_override_that_is_no_regular_file_is_refused(pytester: pytest.Pytester, kind: str) -> None:
    if kind == "device":
        special = Path("/dev/zero")
    else:
        special = pytester.path / "pipe"
        os.mkfifo(special)
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    # A subprocess with a time limit: before the fix, hashing /dev/zero or opening the FIFO never returned.
    result = pytester.runpytest_subprocess(f"--mlperf-asset=resnet50-v1.5-onnx={special}", timeout=300)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"*--mlperf-asset resnet50-v1.5-onnx={special}: not a regular file or a directory (a device, FIFO or socket)*"
    ])


def test_a_results_file_that_is_a_device_is_refused(tmp_path: Path) -> None:
    from pytest_mlperf.results import ResultsFileError

    with pytest.raises(ResultsFileError, match="is not a regular file"):
        read_document(Path("/dev/zero"))


def test_a_reused_server_load_too_small_to_ever_finish_is_refused(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_server="""
def test_server(mlperf, tiny_model, tiny_dataset):
    mlperf.run(tiny_model, tiny_dataset, scenario="Server", mode="performance")
"""
    )
    project.runpytest(*FAST).assert_outcomes(passed=1)
    document = read_document(project.path / "mlperf-results" / "results.json")
    # In the range LoadGen accepts (configure refuses less than 0.001 QPS), yet 500 smoke queries would take 14 h.
    document["runs"][0]["settings"]["target_qps"] = 0.01
    damaged = project.path / "damaged.json"
    damaged.write_text(json.dumps(document))
    # A subprocess with a time limit: before the fix, LoadGen waited hours for the queries' scheduled times.
    result = project.runpytest_subprocess(*FAST, f"--mlperf-reuse-load={damaged}", timeout=600)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*the Server target of 0.01 QPS reused from --mlperf-reuse-load (or --mlperf-baseline) would make "
        "LoadGen spread its * queries over *",
    ])
    run = read_document(project.path / "mlperf-results" / "results.json")["runs"][0]
    assert run["error"].startswith("LoadGenError: ") and run["valid"] is False


STALLING_TEST = """
import itertools
import threading

import pytest

from pytest_mlperf import ArrayDataset, Classification

CALLS = itertools.count()


class Stalls(Classification):
    \"\"\"The third batch of the LoadGen run (not of the warm-up, in the main thread) never returns.\"\"\"

    def postprocess(self, outputs):
        if threading.current_thread() is not threading.main_thread() and next(CALLS) == 2:
            threading.Event().wait()
        return super().postprocess(outputs)


def test_a_first(mlperf, tiny_model, tiny_dataset):
    mlperf.run(tiny_model, tiny_dataset, scenario="Offline", mode="accuracy")


@pytest.mark.parametrize("scenario", ["SCENARIO"])
def test_b_stalls(mlperf, tiny_model, scenario):
    base = __import__("conftest").make_dataset()
    data = ArrayDataset(base.inputs, base.labels, name="tiny", task=Stalls(topk=1))
    mlperf.run(tiny_model, data, scenario=scenario, mode="performance")


def test_c_never_reached(mlperf, tiny_model, tiny_dataset):
    mlperf.run(tiny_model, tiny_dataset, scenario="Offline", mode="accuracy")
"""


@pytest.mark.parametrize("scenario", ["SingleStream", "Offline"])
def test_an_engine_call_that_never_returns_fails_the_run_and_ends_the_session(
    project: pytest.Pytester, scenario: str
) -> None:
    project.makepyfile(test_stall=STALLING_TEST.replace("SCENARIO", scenario))
    # A subprocess with a time limit: before the fix, the session waited for the engine for ever.
    result = project.runpytest_subprocess(*FAST, "--mlperf-batch-size=4", "--mlperf-stall-timeout-s=2", timeout=600)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([
        "*Exit: test_stall.py::test_b_stalls*: backend onnxruntime answered none of the * waiting samples for 2 s "
        "(--mlperf-stall-timeout-s): a call into the engine does not return; LoadGen cannot finish this run nor "
        "start another one, so the session ends here*",
    ])
    assert "Fatal Python error" not in result.stderr.str() and "Segmentation" not in result.stderr.str()
    document = read_document(project.path / "mlperf-results" / "results.json")
    assert document["status"] == "interrupted"
    runs = [(run["id"].split("::")[-1], run["passed"]) for run in document["runs"]]
    assert runs == [("test_a_first", True), (f"test_b_stalls[{scenario}]", False)]
    stalled = document["runs"][1]
    assert "does not return" in stalled["error"] and stalled["valid"] is False and stalled["metrics"]["qps"] is None
