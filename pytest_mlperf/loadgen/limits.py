"""The accepted range of every LoadGen setting this plugin lets through, and the check of an assembled TestSettings.

LoadGen checks almost nothing: it reads whole-number keys with ``strtoull`` (``-5`` wraps to 2**64 - 5, ``2e3``
is 2, ``010`` is octal 8), converts durations to signed nanoseconds (a wrapped value turns into a negative run
length) and builds every query of a run in memory before the first one is issued. Values outside these ranges
crash the process, run forever or produce a run that measured nothing, so they are refused before LoadGen sees
them, with the range and the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The longest run, in ms: a week (an official run lasts 10 minutes; LoadGen's ns clock holds ~292 years).
MAX_DURATION_MS = 7 * 24 * 3600 * 1000
#: The largest query or sample count: LoadGen builds every query before the run (about 100 bytes a sample).
MAX_QUERY_COUNT = 100_000_000
#: The largest latency bound or expected latency, in ms: an hour.
MAX_LATENCY_MS = 3600 * 1000
#: Target QPS bounds: below one query per 1000 s a Server run never ends; above a billion nothing serves it.
MIN_QPS, MAX_QPS = 0.001, 1e9
#: Samples in one MultiStream query (MLPerf uses 8).
MAX_SAMPLES_PER_QUERY = 100_000
#: A uint64 seed's range, as LoadGen stores it.
MAX_SEED = 2**64 - 1
#: The most samples LoadGen may be asked to build before a run starts: its memory, not the SUT's, is the limit.
MAX_GENERATED_SAMPLES = MAX_QUERY_COUNT
#: LoadGen over-generates queries by these factors so a faster-than-expected SUT never runs out (loadgen.cc).
_GENERATION_SLACK = {"SingleStream": 2.0, "MultiStream": 2.0, "Server": 1.0, "Offline": 1.1}


@dataclass(frozen=True)
class Bound:
    """An accepted closed range [low, high] (``low_open``: low itself excluded) and what it is measured in."""

    low: float
    high: float
    unit: str = ""
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def text(self) -> str:
        """``from 1 to 4096``, ``above 0 to 3600000 ms``, ``above 0 to below 1``: what the messages say."""
        unit = f" {self.unit}" if self.unit else ""
        low = f"above {fmt_number(self.low)}" if self.low_open else f"from {fmt_number(self.low)}"
        if math.isinf(self.high):  # any finite number above the low end
            return f"a finite number {low.replace('from ', '')}{' or more' if not self.low_open else ''}{unit}"
        high = f"below {fmt_number(self.high)}" if self.high_open else fmt_number(self.high)
        return f"{low} to {high}{unit}"


def fmt_number(value: float) -> str:
    """A number as a person writes it: 4096, 0.001, 1e-06, nan (never 4096.0 or 3.6e+06 for 3600000)."""
    return str(int(value)) if math.isfinite(value) and float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"


def estimate(scenario: str, fields: Mapping[str, Any]) -> tuple[float, float]:
    """(samples LoadGen generates before the run, seconds the run lasts at least) for TestSettings *fields*.

    Mirrors loadgen.cc's GenerateQueries: queries until both the (slackened) duration at the target rate and the
    minimum query count are reached.
    """
    duration_s = float(fields.get("min_duration_ms", 0)) / 1000.0
    count = float(fields.get("min_query_count", 1))
    if scenario == "SingleStream":
        qps = 1e9 / max(float(fields.get("single_stream_expected_latency_ns", 1)), 1.0)
    elif scenario == "MultiStream":
        qps = 1e9 / max(float(fields.get("multi_stream_expected_latency_ns", 1)), 1.0)
    elif scenario == "Server":
        qps = float(fields.get("server_target_qps", 1.0))
    else:
        qps = float(fields.get("offline_expected_qps", 1.0))
    per_query = float(fields.get("multi_stream_samples_per_query", 1)) if scenario == "MultiStream" else 1.0
    generated = max(count, _GENERATION_SLACK[scenario] * duration_s * qps) * per_query
    # Offline issues its one query at once; the others need min_query_count queries at the target rate.
    lasting = duration_s if scenario == "Offline" else max(duration_s, count / qps if qps > 0 else math.inf)
    return generated, lasting


#: TestSettings fields the plugin sets or reads back, with their ranges (floats must also be finite).
SETTINGS_BOUNDS: dict[str, Bound] = {
    "min_duration_ms": Bound(0, MAX_DURATION_MS, "ms"),
    "max_duration_ms": Bound(0, MAX_DURATION_MS, "ms"),
    "min_query_count": Bound(1, MAX_QUERY_COUNT),
    "max_query_count": Bound(0, MAX_QUERY_COUNT),
    "server_target_qps": Bound(MIN_QPS, MAX_QPS, "QPS"),
    "offline_expected_qps": Bound(MIN_QPS, MAX_QPS, "QPS"),
    "server_target_latency_ns": Bound(0, MAX_LATENCY_MS * 1e6, "ns"),
    "single_stream_expected_latency_ns": Bound(1, MAX_LATENCY_MS * 1e6, "ns"),
    "multi_stream_expected_latency_ns": Bound(1, MAX_LATENCY_MS * 1e6, "ns"),
    "multi_stream_samples_per_query": Bound(1, MAX_SAMPLES_PER_QUERY),
    "performance_sample_count_override": Bound(0, MAX_QUERY_COUNT),
}


def settings_problems(scenario: str, mode: str, fields: Mapping[str, Any]) -> list[str]:
    """What is wrong with an assembled TestSettings (mlperf.conf, user.conf and the plugin's values together)."""
    problems: list[str] = []
    for name, bound in SETTINGS_BOUNDS.items():
        value = fields.get(name)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not bound.contains(float(value)):
            problems.append(f"{name} = {value} is outside its range ({bound.text()})")
    if problems or mode != "performance":
        return problems
    generated, lasting = estimate(scenario, fields)
    if generated > MAX_GENERATED_SAMPLES:
        problems.append(
            f"LoadGen would build {generated:.3g} samples before the run starts (more than {MAX_GENERATED_SAMPLES:.0e}"
            ", about 100 bytes each); lower the target QPS, min_duration or min_query_count"
        )
    if lasting * 1000.0 > MAX_DURATION_MS:
        problems.append(
            f"the run would last at least {lasting:.3g} s (min_query_count {fields.get('min_query_count')} at the "
            f"target rate, or min_duration), longer than a week; raise the target QPS or lower min_query_count"
        )
    return problems
