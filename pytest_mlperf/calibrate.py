"""Smoke-profile targets: a short warm-up measures the backend so LoadGen's expected latency and QPS fit."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_mlperf.backends.base import Backend
from pytest_mlperf.config import Overrides
from pytest_mlperf.datasets.base import Dataset
from pytest_mlperf.rules import SMOKE_MIN_DURATION_MS, SMOKE_MIN_QUERIES
from pytest_mlperf.tasks.base import Task

#: Expected latency is set below the measured one so LoadGen pre-generates enough queries; running out
#: of queries before min_duration makes a run INVALID, while surplus queries are simply never issued.
LATENCY_HEADROOM = 0.5
#: Offline's expected QPS is set above the measured one: too low ends the run before min_duration.
OFFLINE_HEADROOM = 1.5
#: Server's target is a fraction of capacity, leaving room for queueing. Capacity is the lower of batch
#: throughput and single-query throughput: for tiny models the per-query dispatch, not the math, is the limit.
SERVER_LOAD = 0.3
#: Server's p99 target in smoke runs without a latency bound: generous, because a shared CI runner has long tails.
SMOKE_SERVER_TARGET_LATENCY_NS = 100_000_000


@dataclass
class Calibration:
    """Medians of short timed runs (seconds per call, samples per second); None where not measured yet."""

    single_s: float | None = None
    multi_s: float | None = None
    batch_qps: float | None = None


#: What each scenario's smoke settings are derived from. Accuracy runs need a rate only for Server, whose
#: schedule would otherwise crawl through the dataset at mlperf.conf's default target QPS.
_NEEDS = {"SingleStream": ("single",), "MultiStream": ("multi",), "Offline": ("batch",), "Server": ("single", "batch")}


_FIELDS = {"single": "single_s", "multi": "multi_s", "batch": "batch_qps"}


def missing(cal: Calibration, kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The *kinds* not measured yet."""
    return tuple(kind for kind in kinds if getattr(cal, _FIELDS[kind]) is None)


def needs(scenario: str, mode: str) -> tuple[str, ...]:
    """The measurements smoke_values uses for this scenario and mode."""
    if mode != "performance" and scenario != "Server":
        return ()
    return _NEEDS[scenario]


def _median_time(fn: Callable[[], object], budget_s: float, max_runs: int = 200) -> float:
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 3 or (time.perf_counter() < deadline and len(times) < max_runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(
    backend: Backend,
    dataset: Dataset,
    task: Task,
    batch_size: int,
    kinds: tuple[str, ...],
    into: Calibration,
    budget_s: float = 0.1,
) -> Calibration:
    """Time only the missing *kinds* (batch of 1, 8 or ``batch_size``) on loaded samples, about 0.1 s each."""
    loaded = min(dataset.performance_count, max(batch_size, 8))
    if "single" in kinds and into.single_s is None:
        one = dataset.one(0)
        into.single_s = _median_time(lambda: task.postprocess(backend.run(one)), budget_s)
    if "multi" in kinds and into.multi_s is None:
        eight = dataset.batch([i % loaded for i in range(8)])
        into.multi_s = _median_time(lambda: task.postprocess(backend.run(eight)), budget_s)
    if "batch" in kinds and into.batch_qps is None:
        full = dataset.batch([i % loaded for i in range(batch_size)])
        seconds = _median_time(lambda: task.postprocess(backend.run(full)), budget_s)
        into.batch_qps = batch_size / max(seconds, 1e-9)
    return into


def smoke_values(scenario: str, mode: str, cal: Calibration, overrides: Overrides) -> dict[str, Any]:
    """TestSettings values of the smoke profile; explicit overrides always win over calibration."""
    values: dict[str, Any] = {}
    if mode == "performance":
        values["min_duration_ms"] = (
            overrides.min_duration_ms if overrides.min_duration_ms is not None else SMOKE_MIN_DURATION_MS
        )
        values["min_query_count"] = (
            overrides.min_query_count if overrides.min_query_count is not None else SMOKE_MIN_QUERIES[scenario]
        )
    if scenario == "SingleStream" and cal.single_s is not None:
        values["single_stream_expected_latency_ns"] = max(1_000, int(cal.single_s * LATENCY_HEADROOM * 1e9))
    elif scenario == "MultiStream" and cal.multi_s is not None:
        values["multi_stream_expected_latency_ns"] = max(1_000, int(cal.multi_s * LATENCY_HEADROOM * 1e9))
    elif scenario == "Offline" and (overrides.target_qps or cal.batch_qps):
        values["offline_expected_qps"] = overrides.target_qps or (cal.batch_qps or 0.0) * OFFLINE_HEADROOM
    elif scenario == "Server" and (overrides.target_qps or (cal.batch_qps and cal.single_s)):
        capacity = min(cal.batch_qps or 0.0, 1.0 / max(cal.single_s or 0.0, 1e-9))
        values["server_target_qps"] = overrides.target_qps or capacity * SERVER_LOAD
        values["server_target_latency_ns"] = SMOKE_SERVER_TARGET_LATENCY_NS
    return values


def official_values(scenario: str, mode: str, overrides: Overrides) -> dict[str, Any]:
    """The official profile changes only what the user explicitly overrode."""
    values: dict[str, Any] = {}
    if overrides.min_duration_ms is not None:
        values["min_duration_ms"] = overrides.min_duration_ms
    if overrides.min_query_count is not None:
        values["min_query_count"] = overrides.min_query_count
    if overrides.target_qps is not None:
        if scenario == "Offline":
            values["offline_expected_qps"] = overrides.target_qps
        elif scenario == "Server":
            values["server_target_qps"] = overrides.target_qps
    return values
