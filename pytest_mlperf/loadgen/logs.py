"""Parse the files LoadGen writes (detail log, summary, accuracy JSON) into plain Python values.

Pure functions over text: no ``mlperf_loadgen`` and no ``pytest`` import, so verdicts, reports and the Action
can read logs recorded on another machine. Key names were checked against LoadGen 6.0.17 output, recorded in
``tests/data/logs``.

Detail log policy (``parse_detail``):

* lines that do not start with ``:::MLLOG`` are ignored (LoadGen may share the file with other output);
* a ``:::MLLOG`` line that is not a JSON object with a string ``key`` raises :class:`LogParseError` naming the
  source and the 1-based line number;
* text with no ``:::MLLOG`` line at all, or that ends before LoadGen logged its effective scenario and mode,
  raises :class:`LogParseError`;
* a performance-mode log that ends before ``result_validity`` (LoadGen crashed or was killed) raises
  :class:`LogParseError` rather than returning a result with holes that a verdict could mistake for success;
* an ``AccuracyOnly`` log has no result keys by design: it parses to ``valid=None``, empty ``latency_ns``
  and ``None`` metrics;
* a key may repeat (``FindPeakPerformance`` logs one result block per attempt): every value is kept in
  ``raw`` and the typed fields take the last one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pytest_mlperf.errors import MLPerfError

__all__ = [
    "DetailLog",
    "LogParseError",
    "parse_accuracy_log",
    "parse_detail",
    "parse_summary",
    "read_accuracy_log",
    "read_detail",
]

_PREFIX = ":::MLLOG"
_POWER_TIME_FORMAT = "%m-%d-%Y %H:%M:%S.%f"
_PERCENTILE_KEY = re.compile(r"^result_(\d+(?:\.\d+)?)_percentile_latency_ns$")
_PER_QUERY_PERCENTILE_KEY = re.compile(r"^result_(\d+(?:\.\d+)?)_percentile_per_query_latency_ns$")
_QPS_KEY = {
    "Offline": "result_samples_per_second",
    "Server": "result_completed_samples_per_sec",
    "SingleStream": "result_qps_with_loadgen_overhead",
}
_EARLY_STOPPING_LATENCY_KEY = {
    "SingleStream": "early_stopping_latency_ss",
    "MultiStream": "early_stopping_latency_ms",
}


class LogParseError(MLPerfError, ValueError):
    """A LoadGen log is malformed or incomplete; the message starts with ``source:line:``."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source = source
        self.line = line
        self.problem = problem
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {problem}")

    def __reduce__(self) -> tuple[type[LogParseError], tuple[str, int | None, str]]:
        # The default reduce would call __init__ with the formatted message only (xdist, multiprocessing).
        return (type(self), (self.source, self.line, self.problem))


@dataclass(frozen=True)
class DetailLog:
    """What one ``mlperf_log_detail.txt`` says about a run.

    ``qps`` is the scenario's throughput key: Offline ``result_samples_per_second``, Server
    ``result_completed_samples_per_sec``, SingleStream ``result_qps_with_loadgen_overhead``; MultiStream has
    none (its metric is per-query latency), so it is ``None`` there. ``latency_ns`` maps ``min``, ``max``,
    ``mean``, ``p50`` ... ``p99.9`` to nanoseconds: per query of N samples for MultiStream, per sample
    otherwise; empty in accuracy mode. ``early_stopping_latency_ns`` is LoadGen's early-stopping estimate of
    the scenario's percentile (SingleStream ``early_stopping_latency_ss``, MultiStream
    ``early_stopping_latency_ms``), ``None`` for Server/Offline or when early stopping was not met.
    ``duration_s`` is the wall-clock span from ``power_begin`` to ``power_end`` (millisecond resolution),
    present in every mode. ``raw`` maps every key to all its values in file order.
    """

    scenario: str
    mode: str
    valid: bool | None
    invalid_reasons: tuple[str, ...]
    recommendation: str | None
    qps: float | None
    latency_ns: dict[str, int]
    early_stopping_latency_ns: int | None
    query_count: int | None
    duration_s: float | None
    settings: dict[str, Any]
    requested: dict[str, Any]
    loadgen_version: str | None
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    raw: Mapping[str, list[Any]]
    #: The run length LoadGen compared with min_duration, in seconds (None when the log does not say).
    measured_s: float | None = None


class _Entries:
    """The parsed ``:::MLLOG`` entries of one log, with the line each value came from for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.values: dict[str, list[Any]] = {}
        self.lines: dict[str, list[int]] = {}
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.last_line = 0

    def add(self, key: str, value: Any, line: int) -> None:
        self.values.setdefault(key, []).append(value)
        self.lines.setdefault(key, []).append(line)

    def has(self, key: str) -> bool:
        return key in self.values

    def last(self, key: str) -> Any:
        return self.values[key][-1] if key in self.values else None

    def _fail(self, key: str, expected: str) -> LogParseError:
        value = self.values[key][-1]
        return LogParseError(
            self.source,
            self.lines[key][-1],
            f"{key} should be {expected}, got {value!r}; the log is corrupt: rerun LoadGen to get a new one",
        )

    def int_(self, key: str) -> int | None:
        value = self.last(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer")
        return value

    def float_(self, key: str) -> float | None:
        value = self.last(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, "a number")
        return float(value)

    def bool_(self, key: str) -> bool | None:
        value = self.last(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self._fail(key, "true or false")
        return value

    def str_(self, key: str) -> str | None:
        value = self.last(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(key, "a string")
        return value


def _read_entries(text: str, source: str) -> _Entries:
    entries = _Entries(source)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.startswith(_PREFIX):
            continue
        try:
            record = json.loads(line[len(_PREFIX) :])
        except json.JSONDecodeError as exc:
            raise LogParseError(
                source,
                number,
                f"malformed {_PREFIX} entry ({exc.msg} at column {exc.colno + len(_PREFIX)}); the line is cut "
                "or corrupt: rerun LoadGen, or delete the line if it was edited by hand",
            ) from exc
        if not isinstance(record, dict) or not isinstance(record.get("key"), str) or "value" not in record:
            raise LogParseError(
                source,
                number,
                f'{_PREFIX} entry is not an object with a string "key" and a "value"; this is not LoadGen '
                "output: rerun LoadGen to get a new log",
            )
        key, value = record["key"], record["value"]
        metadata = record.get("metadata", {})
        if not isinstance(metadata, dict):
            raise LogParseError(source, number, f'"metadata" of {key} is not an object; rerun LoadGen')
        entries.add(key, value, number)
        if metadata.get("is_error") is True:
            entries.errors.append(value if isinstance(value, str) else json.dumps(value))
        if metadata.get("is_warning") is True:
            entries.warnings.append(value if isinstance(value, str) else json.dumps(value))
        entries.last_line = number
    return entries


def parse_detail(text: str, source: str = "<string>") -> DetailLog:
    """Parse the text of an ``mlperf_log_detail.txt``; ``source`` names it in error messages.

    Raises :class:`LogParseError` for a malformed ``:::MLLOG`` line, for text with no entries, and for a
    performance log cut before its results; an accuracy-mode log gives ``valid=None`` (see the module doc).
    """
    entries = _read_entries(text, source)
    if not entries.values:
        raise LogParseError(
            source,
            None,
            f"no {_PREFIX} lines: the file is empty or is not an mlperf_log_detail.txt (LoadGen writes one "
            "per run into LogSettings.log_output.outdir)",
        )
    scenario = entries.str_("effective_scenario")
    mode = entries.str_("effective_test_mode")
    if scenario is None or mode is None:
        raise LogParseError(
            source,
            entries.last_line,
            "the log ends before LoadGen logged effective_scenario and effective_test_mode; it was cut off "
            "(disk full, or the process killed at start): rerun the test",
        )
    validity = entries.str_("result_validity")
    if validity is None and mode != "AccuracyOnly":
        last_error = f" (LoadGen's last error: {entries.errors[-1]})" if entries.errors else ""
        raise LogParseError(
            source,
            entries.last_line,
            f"the {mode} log ends before result_validity: LoadGen did not finish the run (crash, timeout or "
            f"kill){last_error}; fix the SUT and rerun",
        )
    valid: bool | None = None
    if validity is not None:
        if validity not in ("VALID", "INVALID"):
            raise entries._fail("result_validity", '"VALID" or "INVALID"')
        valid = validity == "VALID"
    recommendation = entries.str_("result_invalid_reason")
    recommendation = (recommendation.strip() or None) if recommendation is not None else None
    duration_s = _power_duration_s(entries)
    qps_key = _QPS_KEY.get(scenario)
    es_key = _EARLY_STOPPING_LATENCY_KEY.get(scenario)
    early_stopping_ns = entries.int_(es_key) if es_key is not None else None
    if entries.bool_("early_stopping_met") is False:
        early_stopping_ns = None
    version = entries.str_("loadgen_version")
    return DetailLog(
        scenario=scenario,
        mode=mode,
        valid=valid,
        invalid_reasons=_invalid_reasons(entries, scenario, duration_s) if valid is False else (),
        recommendation=recommendation,
        qps=entries.float_(qps_key) if qps_key is not None else None,
        latency_ns=_latencies(entries, per_query=scenario == "MultiStream"),
        early_stopping_latency_ns=early_stopping_ns,
        query_count=entries.int_("result_query_count"),
        duration_s=duration_s,
        settings=_prefixed(entries, "effective_"),
        requested=_prefixed(entries, "requested_"),
        # "6.0.17 @ d6147c7eb7": the commit stays available in raw.
        loadgen_version=version.split(" @ ")[0].strip() if version is not None else None,
        errors=tuple(entries.errors),
        warnings=tuple(entries.warnings),
        raw=MappingProxyType(entries.values),
        measured_s=_measured_duration_s(entries, scenario, duration_s),
    )


def read_detail(path: str | os.PathLike[str]) -> DetailLog:
    """Read and parse an ``mlperf_log_detail.txt`` file."""
    return parse_detail(Path(path).read_text(encoding="utf-8", errors="replace"), source=os.fspath(path))


def _prefixed(entries: _Entries, prefix: str) -> dict[str, Any]:
    return {key[len(prefix) :]: values[-1] for key, values in entries.values.items() if key.startswith(prefix)}


def _latencies(entries: _Entries, *, per_query: bool) -> dict[str, int]:
    # MultiStream's metric is the latency of a whole query (all its samples); LoadGen logs it under separate
    # "query" keys next to the per-sample ones.
    infix, pattern = ("_query", _PER_QUERY_PERCENTILE_KEY) if per_query else ("", _PERCENTILE_KEY)
    latencies: dict[str, int] = {}
    for name in ("min", "max", "mean"):
        value = entries.int_(f"result_{name}{infix}_latency_ns")
        if value is not None:
            latencies[name] = value
    for key in entries.values:
        match = pattern.match(key)
        if match is not None:
            value = entries.int_(key)
            if value is not None:
                latencies[percentile_name(float(match.group(1)) / 100)] = value
    return latencies


def percentile_name(fraction: float) -> str:
    """0.9 -> "p90", 0.999 -> "p99.9": the keys of ``DetailLog.latency_ns``."""
    return f"p{fraction * 100:g}"


def _power_duration_s(entries: _Entries) -> float | None:
    begin, end = entries.last("power_begin"), entries.last("power_end")
    if not isinstance(begin, str) or not isinstance(end, str):
        return None
    try:
        span = datetime.strptime(end, _POWER_TIME_FORMAT) - datetime.strptime(begin, _POWER_TIME_FORMAT)
    except ValueError:
        # Only a convenience figure: a future LoadGen changing the timestamp format must not fail parsing.
        return None
    return span.total_seconds()


def _measured_duration_s(entries: _Entries, scenario: str, fallback: float | None) -> float | None:
    """The run length LoadGen compared with min_duration, rebuilt from the logged results where possible."""
    queries = entries.int_("result_query_count")
    if scenario == "Offline":
        # Offline's one query spans the run: LoadGen checks its latency.
        longest = entries.int_("result_max_latency_ns")
        return longest / 1e9 if longest is not None else fallback
    rate_key = {"Server": "result_scheduled_samples_per_sec", "SingleStream": "result_qps_with_loadgen_overhead"}
    if scenario in rate_key and queries is not None and queries > 1:
        # LoadGen logs these rates as (samples - 1) / the time it checks (last query scheduled or issued).
        rate = entries.float_(rate_key[scenario])
        if rate:
            return (queries - 1) / rate
    return fallback


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.1f} ms" if ns >= 1e6 else f"{ns / 1e6:.3f} ms"


def _invalid_reasons(entries: _Entries, scenario: str, duration_s: float | None) -> tuple[str, ...]:
    # Same order as LoadGen's result_invalid_reason, with early stopping (which it reports apart) last.
    reasons: list[str] = []
    if entries.bool_("result_perf_constraints_met") is False:
        reasons.append("performance constraints not met" + _latency_detail(entries))
    if entries.bool_("result_min_duration_met") is False:
        ran = _measured_duration_s(entries, scenario, duration_s)
        minimum_ms = entries.int_("effective_min_duration_ms")
        detail = f" (ran {ran:.3f} s < {minimum_ms / 1000:.3f} s)" if ran is not None and minimum_ms else ""
        reasons.append("min duration not met" + detail)
    if entries.bool_("result_min_queries_met") is False:
        reasons.append(_min_queries_reason(entries))
    if entries.bool_("early_stopping_met") is False:
        text = entries.str_("early_stopping_result") or ""
        # LoadGen's text is a bullet list flattened to one line: " * a.  * b,  c."
        sentence = " ".join(text.replace(" * ", " ").split())
        reasons.append(f"early stopping not met: {sentence}" if sentence else "early stopping not met")
    if not reasons:
        # No check flag is false (a LoadGen we do not know yet?): still say why, in LoadGen's words if any.
        said = (entries.str_("result_invalid_reason") or "").strip()
        reasons.append("LoadGen marked the run INVALID" + (f": {said}" if said else " without naming a failed check"))
    return tuple(reasons)


def _latency_detail(entries: _Entries) -> str:
    fraction = entries.float_("effective_target_latency_percentile")
    target = entries.int_("effective_target_latency_ns")
    if fraction is None or target is None:
        return ""
    measured = entries.int_(f"result_{fraction * 100:.2f}_percentile_latency_ns")
    name = percentile_name(fraction)
    if measured is None:
        return f" ({name} latency above target {_ms(target)})"
    return f" ({name} latency {_ms(measured)} > target {_ms(target)})"


def _min_queries_reason(entries: _Entries) -> str:
    queries = entries.int_("result_query_count")
    min_queries = entries.int_("effective_min_query_count")
    if queries is not None and min_queries is not None and queries < min_queries:
        return f"min query count not met ({queries} < {min_queries})"
    per_query = entries.int_("effective_samples_per_query")
    min_samples = entries.int_("effective_min_sample_count")
    if queries is not None and per_query is not None and min_samples is not None:
        return f"min sample count not met ({queries * per_query} < {min_samples})"
    return "min query count not met"


def parse_accuracy_entries(text: str, source: str = "<string>") -> list[tuple[int, bytes]]:
    """Every entry of an ``mlperf_log_accuracy.json`` as (qsl_idx, response bytes), in the log's order, repeats
    included (the official compliance scripts count them).

    A trailing comma before the closing ``]`` is accepted; a file with no closing ``]`` (LoadGen stopped mid-run)
    is an error.
    """
    return [(qsl_idx, response) for qsl_idx, response, _ in _accuracy_entries(text, source)]


def _accuracy_entries(text: str, source: str) -> list[tuple[int, bytes, Any]]:
    stripped = text.strip()
    if not stripped:
        raise LogParseError(
            source,
            None,
            "empty accuracy log: LoadGen writes at least '[ ]' when it finishes; the run never ended, rerun it",
        )
    if stripped.startswith("[") and not stripped.endswith("]"):
        raise LogParseError(
            source,
            stripped.count("\n") + 1,
            "the accuracy log ends without its closing ']': LoadGen stopped mid-run (crash or kill); rerun it",
        )
    stripped = re.sub(r",\s*\]$", "]", stripped)
    try:
        document = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise LogParseError(
            source,
            _line_of(text, exc.pos),
            f"not valid JSON ({exc.msg}, column {exc.colno}); rerun LoadGen to get a new accuracy log",
        ) from exc
    if not isinstance(document, list):
        raise LogParseError(source, 1, "expected a JSON array of LoadGen responses; is this mlperf_log_accuracy.json?")
    entries: list[tuple[int, bytes, Any]] = []
    for position, entry in enumerate(document):
        where = f"entry {position}" + (
            f" (seq_id {entry['seq_id']})" if isinstance(entry, dict) and "seq_id" in entry else ""
        )
        if not isinstance(entry, dict):
            raise LogParseError(source, None, f"{where} is not an object; rerun LoadGen")
        qsl_idx, data = entry.get("qsl_idx"), entry.get("data")
        if isinstance(qsl_idx, bool) or not isinstance(qsl_idx, int) or not isinstance(data, str):
            raise LogParseError(
                source, None, f'{where} needs an integer "qsl_idx" and a hex string "data"; rerun LoadGen'
            )
        try:
            entries.append((qsl_idx, bytes.fromhex(data), entry.get("seq_id")))
        except ValueError as exc:
            raise LogParseError(source, None, f'{where}: "data" is not hex ({exc}); rerun LoadGen') from exc
    return entries


def first_responses(entries: Sequence[tuple[int, bytes]]) -> dict[int, bytes]:
    """Each qsl_idx's first response, as the MLCommons accuracy scripts keep it when a sample repeats."""
    responses: dict[int, bytes] = {}
    for qsl_idx, response in entries:
        responses.setdefault(qsl_idx, response)
    return responses


def parse_accuracy_log(text: str, source: str = "<string>") -> dict[int, bytes]:
    """Map each qsl_idx of an ``mlperf_log_accuracy.json`` to its response bytes, one entry per sample.

    LoadGen logs one entry per completed response, so a sample issued several times (performance runs with
    accuracy logging, compliance TEST01) appears several times: identical duplicates collapse, differing ones
    raise :class:`LogParseError`.
    """
    responses: dict[int, bytes] = {}
    first_seq: dict[int, Any] = {}
    for qsl_idx, response, seq_id in _accuracy_entries(text, source):
        if qsl_idx not in responses:
            responses[qsl_idx] = response
            first_seq[qsl_idx] = seq_id
        elif responses[qsl_idx] != response:
            raise LogParseError(
                source,
                None,
                f"qsl_idx {qsl_idx} has two different responses: seq_id {first_seq[qsl_idx]} gave "
                f"{_short_hex(responses[qsl_idx])}, seq_id {seq_id} gave {_short_hex(response)}; "
                "the same sample must always get the same answer: make the SUT deterministic, and keep each "
                "response buffer alive until QuerySamplesComplete returns",
            )
    return responses


def read_accuracy_entries(path: str | os.PathLike[str]) -> list[tuple[int, bytes]]:
    """Read an ``mlperf_log_accuracy.json`` file's entries, repeats included."""
    return parse_accuracy_entries(Path(path).read_text(encoding="utf-8", errors="replace"), source=os.fspath(path))


def _line_of(text: str, position: int) -> int:
    # JSON positions count from the first non-blank character; line numbers must match the file.
    offset = len(text) - len(text.lstrip())
    return text.count("\n", 0, offset + position) + 1


def _short_hex(data: bytes) -> str:
    return data[:16].hex() + ("..." if len(data) > 16 else "")


def read_accuracy_log(path: str | os.PathLike[str]) -> dict[int, bytes]:
    """Read and parse an ``mlperf_log_accuracy.json`` file."""
    return parse_accuracy_log(Path(path).read_text(encoding="utf-8", errors="replace"), source=os.fspath(path))


def parse_summary(text: str) -> dict[str, str]:
    """The ``key : value`` lines of an ``mlperf_log_summary.txt``, keys and values stripped.

    Banner lines, section titles and the bullet lines of recommendations and early-stopping results are
    skipped. For a key that repeats, the first value wins (the results section comes before the settings).
    """
    summary: dict[str, str] = {}
    for line in text.splitlines():
        content = line.strip()
        if not content or content.startswith(("*", "=")) or ":" not in content:
            continue
        key, _, value = content.partition(":")
        key, value = " ".join(key.split()), value.strip()
        if key and value:
            summary.setdefault(key, value)
    return summary
