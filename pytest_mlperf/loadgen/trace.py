"""Extract every query's latency from LoadGen's ``mlperf_log_trace.json`` (pure parser).

LoadGen 6.0 writes per-sample timing only to the trace, and only with ``LogSettings.enable_trace = True``; the detail
log holds the aggregate percentiles alone. Each completed sample is a Chrome-trace "begin" event::

    {"name":"Sample","cat":"default","ph":"b",...,"args":{"sample_seq":0,"query_seq":0,"sample_idx":60,
     "issue_start_ns":0,"complete_ns":213076}},

``complete_ns`` is completion minus the query's *scheduled* time: the exact value LoadGen sorts for its percentiles
(so Server's queueing delay is included). A query's latency is its slowest sample (MultiStream: 8 samples a query).

The file is not valid JSON (LoadGen writes ``"key":""name""`` in LogDetail events), so it is scanned line by line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pytest_mlperf.errors import LoadGenError

TRACE_FILENAME = "mlperf_log_trace.json"

_SAMPLE = re.compile(r'"name"\s*:\s*"Sample".*?"ph"\s*:\s*"b".*?"query_seq"\s*:\s*(\d+).*?"complete_ns"\s*:\s*(-?\d+)')


def _lines(path_or_text: str | Path) -> tuple[Iterable[str], str]:
    """The trace's lines and a name for error messages; a str holding a newline or a brace is the text itself."""
    if isinstance(path_or_text, Path) or ("\n" not in path_or_text and "{" not in path_or_text):
        path = Path(path_or_text)
        if path.is_dir():
            path = path / TRACE_FILENAME
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            raise LoadGenError(
                f"{path}: no LoadGen trace; run with LogSettings.enable_trace = True to record per-query latencies"
            ) from None
        return text.splitlines(), str(path)
    return path_or_text.splitlines(), "trace text"


def _parse(path_or_text: str | Path) -> tuple[NDArray[np.int64], NDArray[np.int64], str]:
    queries: list[int] = []
    latencies: list[int] = []
    lines, name = _lines(path_or_text)
    for line in lines:
        # Cheap prefilter: most lines are IssueQuery/QuerySamplesComplete/LogDetail spans.
        if '"Sample"' not in line:
            continue
        match = _SAMPLE.search(line)
        if match:
            queries.append(int(match.group(1)))
            latencies.append(int(match.group(2)))
    if not latencies:
        raise LoadGenError(
            f"{name}: no per-sample events; was LogSettings.enable_trace set, and did the run issue any query?"
        )
    return np.asarray(queries, dtype=np.int64), np.asarray(latencies, dtype=np.int64), name


def per_sample_latencies_ns(path_or_text: str | Path) -> NDArray[np.int64]:
    """Every sample's latency in ns (completion minus scheduled issue), in trace order."""
    return _parse(path_or_text)[1]


def per_query_latencies_ns(path_or_text: str | Path) -> NDArray[np.int64]:
    """Every query's latency in ns (its slowest sample), ordered by query sequence number.

    Accepts the trace file, the log directory holding it, or the trace's text. Sorting these values and taking
    ``sorted[int(n * q)]`` reproduces ``result_<q>_percentile_latency_ns`` of the detail log for SingleStream,
    MultiStream and Server. Offline issues one query, so this returns one value: gate Offline on throughput.
    """
    queries, latencies, name = _parse(path_or_text)
    if np.any(latencies < 0):
        raise LoadGenError(f"{name}: negative complete_ns in a Sample event; the trace is corrupt, rerun the case")
    order = np.argsort(queries, kind="stable")
    queries, latencies = queries[order], latencies[order]
    starts = np.flatnonzero(np.r_[True, queries[1:] != queries[:-1]])
    result: NDArray[np.int64] = np.maximum.reduceat(latencies, starts)
    return result
