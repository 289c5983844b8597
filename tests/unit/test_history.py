"""The results history: add, add again, a fuller copy of a session, refusals of foreign files, concurrent writers."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_mlperf import history
from pytest_mlperf.cli import main

DATA = Path(__file__).resolve().parent.parent / "data" / "results"
REPO = Path(__file__).resolve().parents[2]


def _session(tmp_path: Path, name: str, when: str, qps_factor: float = 1.0, sha: str = "a" * 40) -> Path:
    document: dict[str, Any] = json.loads((DATA / "base.json").read_text(encoding="utf-8"))
    document["datetime"] = when
    document["commit"] = {**document["commit"], "sha": sha}
    for run in document["runs"]:
        if run["metrics"].get("qps") is not None:
            run["metrics"]["qps"] *= qps_factor
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as connection:
        count: int = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    connection.close()
    return count


def test_add_then_add_again_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.sqlite"
    first = _session(tmp_path, "one", "2026-11-01T10:00:00+00:00")
    assert main(["history", "add", str(first), "--db", str(db)]) == 0
    measures = _count(db, "measures")
    assert _count(db, "sessions") == 1 and measures > 0
    assert main(["history", "add", str(first), "--db", str(db)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "added" in out[0] and "unchanged" in out[1]
    assert (_count(db, "sessions"), _count(db, "measures")) == (1, measures)
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA application_id").fetchone()[0] == history.APPLICATION_ID
        row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    connection.close()
    assert row == (str(history.HISTORY_SCHEMA_VERSION),)


def test_a_fuller_copy_of_the_same_session_replaces_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.sqlite"
    first = _session(tmp_path, "one", "2026-11-01T10:00:00+00:00")
    document = json.loads(first.read_text(encoding="utf-8"))
    partial = {**document, "status": "partial", "runs": document["runs"][:1]}
    partial_path = tmp_path / "partial.json"
    partial_path.write_text(json.dumps(partial), encoding="utf-8")
    assert main(["history", "add", str(partial_path), "--db", str(db)]) == 0
    assert main(["history", "add", str(first), "--db", str(db)]) == 0
    assert "replaced" in capsys.readouterr().out.splitlines()[1]
    assert _count(db, "sessions") == 1
    assert len(history.sessions(db)[0]["runs"]) == len(document["runs"])


def test_show_lists_cases_with_their_trend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.sqlite"
    paths = [
        _session(tmp_path, f"s{i}", f"2026-11-0{i + 1}T10:00:00+00:00", qps_factor=f, sha=str(i) * 40)
        for i, f in enumerate((1.0, 1.0, 0.5))
    ]
    # Added out of order: the trend follows the sessions' own datetimes, not the order of adding.
    assert main(["history", "add", str(paths[2]), str(paths[0]), str(paths[1]), "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["history", "show", "--db", str(db), "--case", "Offline-performance"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["case", "measure", "sessions", "latest", "change", "commit", "trend"]
    throughput = [line for line in lines if " throughput " in line]
    assert len(throughput) == 1
    assert "-50.0% worse" in throughput[0] and "2222222222" in throughput[0] and throughput[0].endswith("██▁")
    data = history.series(db, "Offline-performance")
    assert [p.commit for p in data[next(k for k in data if k[1] == "throughput")]] == ["0" * 40, "1" * 40, "2" * 40]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a database at all, just some text that goes on" * 20, "not an SQLite database"),
        (None, "an SQLite database that pytest-mlperf did not write"),
    ],
)
def test_corrupt_or_foreign_database_exits_2(
    tmp_path: Path, content: bytes | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "h.sqlite"
    if content is None:
        with sqlite3.connect(db) as connection:
            connection.execute("CREATE TABLE other (x)")
        connection.close()
    else:
        db.write_bytes(content)
    before = db.read_bytes()
    first = _session(tmp_path, "one", "2026-11-01T10:00:00+00:00")
    for argv in (["history", "add", str(first), "--db", str(db)], ["history", "show", "--db", str(db)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{db}: {message}" in err and "give --db a pytest-mlperf history database" in err
        assert "Traceback" not in err
    assert db.read_bytes() == before


def test_a_newer_schema_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.sqlite"
    first = _session(tmp_path, "one", "2026-11-01T10:00:00+00:00")
    assert main(["history", "add", str(first), "--db", str(db)]) == 0
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    connection.close()
    assert main(["history", "show", "--db", str(db)]) == 2
    assert "history schema version '99'; this pytest-mlperf reads version 1" in capsys.readouterr().err


def test_show_without_a_database_says_how_to_make_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "missing.sqlite"
    assert main(["history", "show", "--db", str(db)]) == 2
    assert f"{db}: no such history database; create one with: pytest-mlperf history add" in capsys.readouterr().err
    assert not db.exists()


def test_bad_results_file_exits_2_and_leaves_no_session(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.sqlite"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert main(["history", "add", str(bad), "--db", str(db)]) == 2
    assert f"{bad}: not valid JSON" in capsys.readouterr().err


def test_concurrent_adds_lose_nothing(tmp_path: Path) -> None:
    """Real processes add different sessions to one new database at once; every session and figure arrives."""
    db = tmp_path / "h.sqlite"
    writers, per_writer = 6, 3
    batches = [
        [
            _session(tmp_path, f"w{w}-{i}", f"2026-10-{w + 10}T0{i}:00:00+00:00", sha=f"{w}{i}".ljust(40, "0"))
            for i in range(per_writer)
        ]
        for w in range(writers)
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pytest_mlperf.cli", "history", "add", *map(str, batch), "--db", str(db)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for batch in batches
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
        assert out.decode().count(": added (") == per_writer
    assert _count(db, "sessions") == writers * per_writer
    one = tmp_path / "one.sqlite"
    assert main(["history", "add", str(batches[0][0]), "--db", str(one)]) == 0
    assert _count(db, "measures") == writers * per_writer * _count(one, "measures")
