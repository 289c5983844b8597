"""The results history: sessions appended to an SQLite database, and each case's trend over them.

One database holds many sessions. A session is keyed by what identifies it (its ``datetime``, ``commit`` and
``machine``), so adding the same results file twice adds it once; adding a later, fuller copy of the same session
(a partial file that has since completed) replaces the earlier one. Each session keeps its whole results document
(compressed) and, per case, the figures :func:`pytest_mlperf.export.bencher_metric_format` exports: the median
latency (ns) at the scenario's percentile, throughput (samples/s) and accuracy (%), with their range over repeats.

Writers take SQLite's write lock up front (``BEGIN IMMEDIATE``) and wait for one another (a busy timeout), so
concurrent adds serialise instead of losing data. A file that is not an SQLite database, or one that another
program wrote, is refused with :class:`HistoryError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_mlperf.errors import MLPerfError

#: Version of the tables below; a database of a newer version is refused, never rewritten.
HISTORY_SCHEMA_VERSION = 1
#: Marks the file as ours in the SQLite header (``PRAGMA application_id``): "MLPf".
APPLICATION_ID = 0x4D4C5066
#: How long a writer waits for another one's transaction before giving up.
BUSY_TIMEOUT_S = 60.0

_TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    session_key TEXT NOT NULL UNIQUE,
    content_sha256 TEXT NOT NULL,
    datetime TEXT,
    commit_sha TEXT,
    branch TEXT,
    machine TEXT,
    status TEXT,
    source TEXT NOT NULL,
    added_at TEXT NOT NULL,
    document BLOB NOT NULL
);
CREATE TABLE measures (
    session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    case_id TEXT NOT NULL,
    measure TEXT NOT NULL,
    value REAL NOT NULL,
    lower_value REAL,
    upper_value REAL,
    PRIMARY KEY (session_id, case_id, measure)
);
CREATE INDEX measures_by_case ON measures (case_id, measure);
"""


class HistoryError(MLPerfError, ValueError):
    """A history database that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Added:
    """What :func:`add` did: ``added``, ``replaced`` (a fuller copy of a known session) or ``unchanged``."""

    action: str
    session_key: str
    cases: int


@dataclass(frozen=True)
class Point:
    """One session's figure for one case and measure."""

    datetime: str | None
    commit: str | None
    value: float
    lower: float | None
    upper: float | None


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def session_key(document: Mapping[str, Any]) -> str:
    """What identifies a session: the digest of its start time, commit and machine."""
    ident = {key: document.get(key) for key in ("datetime", "commit", "machine")}
    return hashlib.sha256(_canonical(ident)).hexdigest()


def _content_digest(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in document.items() if k != "notes"})).hexdigest()


def _refuse(path: Path, why: str) -> HistoryError:
    return HistoryError(
        f"{path}: {why}; give --db a pytest-mlperf history database, or a new file name to start one"
    )


def _connect(path: Path) -> sqlite3.Connection:
    try:
        # isolation_level=None: this module opens its transactions itself (BEGIN IMMEDIATE).
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise HistoryError(f"{path}: cannot open the history database ({exc})") from None
    connection.execute("PRAGMA foreign_keys = ON")
    return connection


def _check_ours(path: Path, connection: sqlite3.Connection) -> bool:
    """True when the database holds our tables, False when it is empty; refuses anything else."""
    try:
        app_id = connection.execute("PRAGMA application_id").fetchone()[0]
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise _refuse(path, f"not an SQLite database ({exc})") from None
    if not tables and app_id == 0:
        return False
    if app_id != APPLICATION_ID or "meta" not in tables:
        raise _refuse(path, "an SQLite database that pytest-mlperf did not write")
    try:
        row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise _refuse(path, f"the history tables are damaged ({exc})") from None
    version = row[0] if row else None
    if version != str(HISTORY_SCHEMA_VERSION):
        raise HistoryError(
            f"{path}: history schema version {version!r}; this pytest-mlperf reads version "
            f"{HISTORY_SCHEMA_VERSION}. Upgrade pytest-mlperf (pip install -U pytest-mlperf) to use it"
        )
    return True


@contextmanager
def _write_transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """The write lock, taken before reading anything, so two writers never both act on a stale read."""
    connection = _connect(path)
    try:
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise HistoryError(f"{path}: could not lock the history database ({exc})") from None
        except sqlite3.DatabaseError as exc:
            raise _refuse(path, f"not an SQLite database ({exc})") from None
        try:
            if not _check_ours(path, connection):
                # One statement at a time: executescript would COMMIT the transaction first.
                for statement in _TABLES.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                connection.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?), ('created_by', 'pytest-mlperf')",
                    (str(HISTORY_SCHEMA_VERSION),),
                )
            yield connection
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
    finally:
        connection.close()


def _read_connection(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise HistoryError(f"{path}: no such history database; create one with: pytest-mlperf history add "
                           f"RESULTS.json --db {path}")
    connection = _connect(path)
    if not _check_ours(path, connection):
        connection.close()
        raise _refuse(path, "an empty SQLite database")
    return connection


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def add(db: Path, document: Mapping[str, Any], source: str) -> Added:
    """Append one results document (as :func:`pytest_mlperf.results.read_document` returns it) to *db*."""
    from pytest_mlperf.export import bencher_metric_format

    key = session_key(document)
    digest = _content_digest(document)
    try:
        measures = bencher_metric_format(document)
    except (KeyError, TypeError) as exc:
        raise HistoryError(f"{source}: a run lacks a field the history needs ({exc})") from None
    commit: Mapping[str, Any] = document["commit"] if isinstance(document.get("commit"), Mapping) else {}
    machine: Mapping[str, Any] = document["machine"] if isinstance(document.get("machine"), Mapping) else {}
    blob = zlib.compress(_canonical(document))
    with _write_transaction(db) as connection:
        row = connection.execute(
            "SELECT id, content_sha256 FROM sessions WHERE session_key = ?", (key,)
        ).fetchone()
        if row is not None and row[1] == digest:
            return Added("unchanged", key, len(measures))
        if row is not None:
            connection.execute("DELETE FROM sessions WHERE id = ?", (row[0],))
        cursor = connection.execute(
            "INSERT INTO sessions (session_key, content_sha256, datetime, commit_sha, branch, machine, status, "
            "source, added_at, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                digest,
                _str(document.get("datetime")),
                _str(commit.get("sha")),
                _str(commit.get("branch")),
                _str(machine.get("cpu")),
                _str(document.get("status")),
                source,
                datetime.now(timezone.utc).isoformat(timespec="seconds"),
                blob,
            ),
        )
        session_id = cursor.lastrowid
        connection.executemany(
            "INSERT INTO measures (session_id, case_id, measure, value, lower_value, upper_value) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (session_id, case, measure, m["value"], m.get("lower_value"), m.get("upper_value"))
                for case, by_measure in measures.items()
                for measure, m in by_measure.items()
            ],
        )
    return Added("replaced" if row is not None else "added", key, len(measures))


def series(db: Path, case_filter: str | None = None) -> dict[tuple[str, str], list[Point]]:
    """Per (case, measure), the sessions' figures oldest first; *case_filter* keeps case ids containing it."""
    connection = _read_connection(db)
    try:
        rows = connection.execute(
            "SELECT m.case_id, m.measure, s.datetime, s.commit_sha, m.value, m.lower_value, m.upper_value "
            "FROM measures m JOIN sessions s ON s.id = m.session_id "
            "ORDER BY m.case_id, m.measure, s.datetime, s.id"
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        raise _refuse(db, f"the history tables are damaged ({exc})") from None
    finally:
        connection.close()
    out: dict[tuple[str, str], list[Point]] = {}
    for case, measure, when, commit, value, lower, upper in rows:
        if case_filter and case_filter not in case:
            continue
        out.setdefault((case, measure), []).append(Point(when, commit, value, lower, upper))
    return out


def sessions(db: Path) -> list[dict[str, Any]]:
    """Every session's results document, oldest first."""
    connection = _read_connection(db)
    try:
        rows = connection.execute("SELECT document FROM sessions ORDER BY datetime, id").fetchall()
        return [json.loads(zlib.decompress(row[0])) for row in rows]
    except (sqlite3.DatabaseError, zlib.error, ValueError) as exc:
        raise _refuse(db, f"the history tables are damaged ({exc})") from None
    finally:
        connection.close()


# --- the trend table -------------------------------------------------------------------------------------------

#: Per measure: the unit shown, the factor from the stored unit, and whether a larger value is better.
_SHOWN = {"latency": ("ms", 1e-6, False), "throughput": ("samples/s", 1.0, True), "accuracy": ("%", 1.0, True)}
_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """One character per value, its height within the values' range."""
    low, high = min(values), max(values)
    if high == low:
        return _BARS[len(_BARS) // 2] * len(values)
    return "".join(_BARS[round((v - low) / (high - low) * (len(_BARS) - 1))] for v in values)


def _figure(value: float) -> str:
    """Four significant digits, never an exponent: 245,513 and 16.63."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def trend_table(data: Mapping[tuple[str, str], Sequence[Point]], last: int) -> list[str]:
    """Rows: case, measure, sessions, latest value, change against the session before, sparkline of *last*."""
    rows = [("case", "measure", "sessions", "latest", "change", "commit", "trend")]
    for (case, measure), points in data.items():
        unit, factor, bigger = _SHOWN.get(measure, ("", 1.0, True))
        latest = points[-1]
        change = "-"
        if len(points) > 1 and points[-2].value:
            delta = (latest.value - points[-2].value) / points[-2].value
            better = (delta > 0) == bigger
            change = f"{delta:+.1%}" + ("" if delta == 0 else (" better" if better else " worse"))
        rows.append((
            case.split("::")[-1],
            measure,
            str(len(points)),
            f"{_figure(latest.value * factor)} {unit}",
            change,
            (latest.commit or "-")[:10],
            sparkline([p.value for p in points[-last:]]),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
