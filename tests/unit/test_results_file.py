"""The results file on disk: append-only writes that grow linearly, crash safety, the one reader and its versions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_mlperf import cli
from pytest_mlperf.config import build_run_config
from pytest_mlperf.results import SCHEMA_VERSION, ResultsFileError, read_document, runs_journal
from pytest_mlperf.session import MLPerfSession, comparison_journal

DATA = Path(__file__).resolve().parent.parent / "data" / "results"
REPO = Path(__file__).resolve().parents[2]
SAMPLES = 2000


def session_writing(path: Path) -> MLPerfSession:
    """The real session object of the process that writes results, configured with --mlperf-results=PATH."""
    config = build_run_config(lambda spec: str(path) if spec.name == "results" else None, path.parent)
    return MLPerfSession(config, path.parent, writes_results=True)


def run_dict(index: int) -> dict[str, Any]:
    """A run as the plugin records it with --mlperf-record-latencies: 2,000 per-query latencies of ~1-9 ms."""
    samples = [1_000_000 + (index * 7919 + i * 104_729) % 8_000_000 for i in range(SAMPLES)]
    return {
        "id": f"suites/test_digits.py::test_digits[SingleStream-performance-{index}]",
        "scenario": "SingleStream",
        "mode": "performance",
        "repeat": 0,
        "passed": True,
        "metrics": {"qps": 500.0, "latency_ns": {"p90": 8_000_000}},
        "latency_samples_ns": samples,
    }


def bytes_written_by_this_process() -> int:
    """What this process has passed to write(2) so far, counted by the kernel (not by the code under test)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("/proc/self/io has no wchar line")


def write_session(tmp_path: Path, runs: int) -> tuple[int, Path]:
    path = tmp_path / f"s{runs}" / "results.json"
    session = session_writing(path)
    session.environment()  # provenance (git, /proc reads) before the count: only the results' writes are measured
    before = bytes_written_by_this_process()
    for index in range(runs):
        session.add_run(run_dict(index))
    session.finish("complete")
    return bytes_written_by_this_process() - before, path


@pytest.mark.skipif(not Path("/proc/self/io").is_file(), reason="the kernel's write counter is Linux's /proc/self/io")
def test_bytes_written_grow_linearly_with_the_runs(tmp_path: Path) -> None:
    small, small_path = write_session(tmp_path, 100)
    large, large_path = write_session(tmp_path, 300)
    # The measurement sees the real writes: at least the final document and every appended line went to disk.
    journal_bytes = sum(len(json.dumps(run_dict(i), separators=(",", ":"))) + 1 for i in range(300))
    assert large >= large_path.stat().st_size + journal_bytes
    assert len(read_document(large_path)["runs"]) == 300
    assert not runs_journal(large_path).exists()
    # Linear: 3x the runs costs about 3x the bytes. Rewriting the document after each run would cost about 9x.
    assert large / small < 3.5, (small, large)
    assert small_path.stat().st_size * 2.9 < large_path.stat().st_size


def test_a_finished_session_leaves_one_complete_document(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    session = session_writing(path)
    for index in range(3):
        session.add_run(run_dict(index))
        partial = json.loads(path.read_text())
        assert partial["status"] == "partial" and partial["runs"] == []  # the envelope is written once
        assert partial["journal"] == "results.runs.jsonl"
        assert len(read_document(path)["runs"]) == index + 1
    session.finish("interrupted")
    document = json.loads(path.read_text())
    assert document["status"] == "interrupted"
    assert "journal" not in document
    assert [run["id"] for run in document["runs"]] == [run_dict(i)["id"] for i in range(3)]
    assert sorted(os.listdir(tmp_path)) == ["results.json"]


def test_comparisons_are_appended_and_merged_once_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    session = session_writing(path)
    parts = [
        {"verdict": verdict, "policy": {}, "refused_reason": None, "fingerprint": {"differences": []},
         "cases": [{"id": f"t::{verdict}", "verdict": verdict, "message": verdict}], "counts": {"regressions": n}}
        for verdict, n in (("no-change", 0), ("regression", 1))
    ]
    session.comparison_path.write_text('{"verdict": "regression"}')  # an earlier session's, never to be mistaken
    for part in parts:
        session.add_comparison(part)
    journal = comparison_journal(path)
    assert [json.loads(line) for line in journal.read_text().splitlines()] == parts  # each line is one case's
    assert not session.comparison_path.exists()
    session.add_run(run_dict(0))
    session.finish("complete")
    merged = json.loads(session.comparison_path.read_text())
    assert merged["verdict"] == "regression"
    assert [case["id"] for case in merged["cases"]] == ["t::no-change", "t::regression"]
    assert not journal.exists()


CRASHING_SESSION = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from tests.unit.test_results_file import run_dict, session_writing

session = session_writing(Path({path!r}))
for index in range({runs}):
    session.add_run(run_dict(index))
if {torn}:
    # A kill in the middle of the next append: half of its line reached the file.
    line = ('{{"id": "torn", "latency_samples_ns": [' + "1," * 500).encode()
    with open(session.results_path.with_name("results.runs.jsonl"), "ab") as fh:
        fh.write(line)
os.kill(os.getpid(), signal.SIGKILL) if {kill} else os._exit(3)
"""


@pytest.mark.parametrize(("kill", "torn"), [(True, False), (False, True)], ids=["SIGKILL", "torn-last-line"])
def test_a_killed_session_keeps_every_finished_run(
    tmp_path: Path, kill: bool, torn: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "results.json"
    script = CRASHING_SESSION.format(tests=str(REPO), path=str(path), runs=7, torn=torn, kill=kill)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode == (-signal.SIGKILL if kill else 3), proc.stderr
    document = read_document(path)
    assert document["status"] == "partial"
    assert [run["id"] for run in document["runs"]] == [run_dict(i)["id"] for i in range(7)]
    assert document["runs"][6]["latency_samples_ns"] == run_dict(6)["latency_samples_ns"]
    assert "journal" not in document
    if torn:
        assert len(document["notes"]) == 1
        assert "the last line was cut short (the session was killed while writing it); ignored, 7 finished" in (
            document["notes"][0]
        )
        # The command line reads it too, and says what it skipped.
        assert cli.main(["compare", str(path), str(path), "--json", str(tmp_path / "c.json")]) == 0
        assert f"pytest-mlperf: note: {runs_journal(path)}: the last line was cut short" in capsys.readouterr().err
        assert json.loads((tmp_path / "c.json").read_text())["counts"]["unchanged"] == 7
    else:
        assert "notes" not in document


def partial_file(tmp_path: Path, journal: str = "results.runs.jsonl") -> Path:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema_version": 2, "status": "partial", "journal": journal, "runs": []}))
    return path


def test_damage_before_the_last_line_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = partial_file(tmp_path)
    runs_journal(path).write_text('{"id": "a"}\n{"id": \n{"id": "c"}\n')
    with pytest.raises(ResultsFileError, match=r"results.runs.jsonl: line 2 is not valid JSON; the file was changed"):
        read_document(path)


def test_a_journal_outside_the_results_folder_is_refused(tmp_path: Path) -> None:
    path = partial_file(tmp_path, journal="../elsewhere.jsonl")
    with pytest.raises(ResultsFileError, match=r"'journal' must name a file next to it, got '../elsewhere.jsonl'"):
        read_document(path)


def test_a_missing_journal_is_a_note_not_a_crash(tmp_path: Path) -> None:
    document = read_document(partial_file(tmp_path))
    assert document["runs"] == []
    assert document["notes"] == [f"{tmp_path / 'results.runs.jsonl'} (the runs of this partial session) is "
                                 "missing; no run could be read"]


def test_untrusted_reads_refuse_a_symlinked_journal(tmp_path: Path) -> None:
    path = partial_file(tmp_path)
    (tmp_path / "secret").write_text('{"id": "x"}\n')
    runs_journal(path).symlink_to(tmp_path / "secret")
    with pytest.raises(ResultsFileError, match=r"runs file is a symbolic link; refusing to follow it"):
        read_document(path, max_bytes=1 << 20)


def test_a_version_1_file_is_upgraded_in_memory() -> None:
    original = json.loads((DATA / "base.json").read_text())
    assert original["schema_version"] == 1
    document = read_document(DATA / "base.json")
    assert document["schema_version"] == SCHEMA_VERSION == 2
    assert document["upgraded_from"] == 1
    assert len(document["runs"]) == len(original["runs"])
    for run, old in zip(document["runs"], original["runs"], strict=True):
        assert run["task"] == {"name": "classification", "metric": "top1", "higher_is_better": True}
        assert {k: v for k, v in run.items() if k != "task"} == old


@pytest.mark.parametrize(
    ("version", "fix"),
    [
        (3, "A newer pytest-mlperf wrote it: upgrade pytest-mlperf (pip install -U pytest-mlperf) to read it"),
        (0, "No released pytest-mlperf writes that: re-run the session that produced it with this version"),
        ("2", "No released pytest-mlperf writes that: re-run the session"),
        (1.0, "No released pytest-mlperf writes that"),
        (True, "No released pytest-mlperf writes that"),
        (None, "No released pytest-mlperf writes that"),
    ],
)
def test_other_versions_are_refused_with_the_fix(tmp_path: Path, version: object, fix: str) -> None:
    path = tmp_path / "other.json"
    document: dict[str, Any] = {"versions": {"plugin": "9.0"}, "runs": []}
    if version is not None:
        document["schema_version"] = version
    path.write_text(json.dumps(document))
    with pytest.raises(ResultsFileError) as info:
        read_document(path)
    message = str(info.value)
    assert message.startswith(f"{path}: schema_version {version!r} (written by pytest-mlperf 9.0); ")
    assert "this pytest-mlperf reads versions 1 and 2. " in message
    assert fix in message


def test_a_release_1_file_compares_against_a_version_2_file(tmp_path: Path) -> None:
    head = json.loads((DATA / "head_same.json").read_text())
    assert head["schema_version"] == 1
    head["schema_version"] = 2
    for run in head["runs"]:
        run["task"] = {"name": "classification", "metric": "top1", "higher_is_better": True}
    new = tmp_path / "head.json"
    new.write_text(json.dumps(head))
    for base, compared in ((DATA / "base.json", new), (new, DATA / "base.json")):
        out = tmp_path / "comparison.json"
        assert cli.main(["compare", str(base), str(compared), "--json", str(out)]) == 0
        comparison = json.loads(out.read_text())
        assert comparison["verdict"] == "no-change"
        assert comparison["counts"] == {"regressions": 0, "improvements": 0, "unchanged": 3, "missing": 0}


def test_the_reader_needs_only_the_standard_library(tmp_path: Path) -> None:
    """The Action's reporter has no pytest-mlperf installed: it imports the reader from the Action's own folder."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from pytest_mlperf.results import read_document;"
        "from pathlib import Path;"
        "print(read_document(Path(sys.argv[2]))['upgraded_from'], sorted(sys.modules.keys() & {'numpy', 'pytest'}))"
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-c", script, str(REPO), str(DATA / "base.json")],
        capture_output=True, text=True, check=False, env={},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "[]"]
