"""Smoke-profile targets: a short warm-up measures the backend so LoadGen's expected latency and QPS fit."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_mlperf import queue_model
from pytest_mlperf.backends.base import Backend
from pytest_mlperf.config import Overrides
from pytest_mlperf.datasets.base import Dataset
from pytest_mlperf.rules import SMOKE_MIN_DURATION_MS, SMOKE_MIN_QUERIES
from pytest_mlperf.tasks.base import Task

#: Expected latency is set below the measured one so LoadGen pre-generates enough queries; running out
#: of queries before min_duration makes a run INVALID, while surplus queries are simply never issued. A quarter,
#: not a half: on a busy CI machine a short warm-up was seen to measure a query 2.4x slower than the run then
#: went (0.124 s of 0.2 s done when the queries ran out); generating the surplus costs memory, not run time.
LATENCY_HEADROOM = 0.25
#: Offline's expected QPS is set above the measured one: too low ends the run before min_duration.
OFFLINE_HEADROOM = 1.5
#: Server's target is a fraction of capacity, leaving room for queueing. Capacity is the lower of batch
#: throughput and single-query throughput: for tiny models the per-query dispatch, not the math, is the limit.
SERVER_LOAD = 0.3
#: Server's p99 target in smoke runs without a latency bound: generous, because a shared CI runner has long tails.
SMOKE_SERVER_TARGET_LATENCY_NS = 100_000_000


@dataclass
class Calibration:
    """Medians of short timed runs (seconds per call, samples per second); None where not measured yet.

    The ``fastest`` figures are the quickest call of the same runs: load only ever slows a call down, so they are
    what LoadGen must be prepared for (queries to pre-generate), while the medians size loads (Server's target).
    """

    single_s: float | None = None
    multi_s: float | None = None
    batch_qps: float | None = None
    single_fastest_s: float | None = None
    multi_fastest_s: float | None = None
    batch_fastest_qps: float | None = None
    #: Median seconds per call of Server's candidates between 1 and 8 (SMALL_SERVER_BATCHES below the ceiling)
    #: and of batch 1, timed in the same rounds.
    small_s: dict[int, float] | None = None


#: What each scenario's settings are derived from. Accuracy runs need a rate only for Server, whose schedule
#: would otherwise crawl through the dataset at mlperf.conf's default target QPS; Server also sizes its batch
#: from all four (server_batch), in every mode and profile.
#: What server_batch reads.
SERVER_BATCH_NEEDS = ("single", "small", "multi", "batch")
_NEEDS = {"SingleStream": ("single",), "MultiStream": ("multi",), "Offline": ("batch",), "Server": SERVER_BATCH_NEEDS}
#: Without a latency bound, a bigger Server batch must give this many times the samples/s of the smaller one it
#: would replace: in a batch every query waits for the whole batch, so at equal samples/s batching only adds
#: latency. The margin sits above calibration noise: on a shared 2-core machine, five calibrations of the light
#: benchmark model gave batch-8/batch-1 gains of 1.47-1.67, a spread of +-7 % around their median.
SERVER_BATCH_MARGIN = 1.15
#: With a bound, a bigger cap must raise the queue model's capacity (the highest Poisson rate whose latency
#: percentile stays within the bound; pytest_mlperf.queue_model) by this much over the cap it would replace. The
#: model's own noise is about +-1 % (6,000 queries, one seed); the rest covers calibration noise in the call times,
#: since losing to batch-of-one is the failure to avoid. Measured call times of the heavy benchmark model (2 cores)
#: show why samples/s alone cannot decide: batch 4 gave 1.20x the samples/s of batch 1, and its call took 1.34x a
#: p90 bound of 2.5x batch 1's call; the model put a batcher capped at 4 at 0.96x the capacity of batch-of-one,
#: while the batch-8 rule this replaced (1.15x samples/s, a call within 1.5x the bound) would have taken it.
SERVER_MODEL_MARGIN = 1.05


_FIELDS = {"single": "single_s", "small": "small_s", "multi": "multi_s", "batch": "batch_qps"}

#: Server batch sizes timed between 1 and 8, in rounds with batch 1. Where one call takes a large share of the
#: latency bound (a ResNet50-shaped model on a CPU: about 30-45 ms against a bound of 2.5x that), batch 8 cannot fit
#: the bound even when it pays, while batch 2 can: on a 2-core machine whose other core was busy, batch 2 gave
#: 1.19-1.24x the samples/s of batch 1, and the queue model put a batcher capped at 2 at 1.07-1.18x the capacity of
#: batch-of-one.
SMALL_SERVER_BATCHES = (2, 4)


def small_sizes(ceiling: int) -> tuple[int, ...]:
    """The SMALL_SERVER_BATCHES timed for a batch *ceiling* (the ceiling itself is timed as ``batch``)."""
    return tuple(size for size in SMALL_SERVER_BATCHES if size < min(ceiling, 8))


def missing(cal: Calibration, kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The *kinds* not measured yet."""
    return tuple(kind for kind in kinds if getattr(cal, _FIELDS[kind]) is None)


def needs(scenario: str, mode: str) -> tuple[str, ...]:
    """The measurements smoke_values uses for this scenario and mode."""
    if mode != "performance" and scenario != "Server":
        return ()
    return _NEEDS[scenario]


def _times(fn: Callable[[], object], budget_s: float, max_runs: int = 200) -> tuple[float, float]:
    """The median and the fastest of at least 3 timed calls of *fn* within about *budget_s*."""
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 3 or (time.perf_counter() < deadline and len(times) < max_runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def _caller(backend: Backend, task: Task, dataset: Dataset, loaded: int, size: int) -> Callable[[], object]:
    """One inference of a batch of *size* loaded samples, postprocessed as a run does."""
    batch = dataset.one(0) if size == 1 else dataset.batch([i % loaded for i in range(size)])
    return lambda: task.postprocess(backend.run(batch))


def _rounds(calls: dict[int, Callable[[], object]], budget_s: float, min_rounds: int = 5) -> dict[int, float]:
    """The median seconds of each call, timed in rounds (one call of each per round) so that a machine slowing down
    part-way slows every size alike: at least *min_rounds*, then until about *budget_s*."""
    times: dict[int, list[float]] = {key: [] for key in calls}
    deadline, rounds = time.perf_counter() + budget_s, 0
    while rounds < min_rounds or (time.perf_counter() < deadline and rounds < 200):
        for key, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - t0)
        rounds += 1
    return {key: statistics.median(values) for key, values in times.items()}


def measure(
    backend: Backend,
    dataset: Dataset,
    task: Task,
    batch_size: int,
    kinds: tuple[str, ...],
    into: Calibration,
    budget_s: float = 0.1,
) -> Calibration:
    """Time only the missing *kinds* (batch of 1, the small Server batches, 8 or ``batch_size``) on loaded
    samples, about 0.1 s each."""
    loaded = min(dataset.performance_count, max(batch_size, 8))

    def timed(size: int) -> tuple[float, float]:
        return _times(_caller(backend, task, dataset, loaded, size), budget_s)

    if "single" in kinds and into.single_s is None:
        into.single_s, into.single_fastest_s = timed(1)
    if "small" in kinds and into.small_s is None:
        into.small_s = _rounds(
            {size: _caller(backend, task, dataset, loaded, size) for size in (1, *small_sizes(batch_size))}, budget_s
        )
    if "multi" in kinds and into.multi_s is None:
        into.multi_s, into.multi_fastest_s = timed(8)
    if "batch" in kinds and into.batch_qps is None:
        seconds, fastest = timed(batch_size)
        into.batch_qps = batch_size / max(seconds, 1e-9)
        into.batch_fastest_qps = batch_size / max(fastest, 1e-9)
    return into


@dataclass(frozen=True)
class ServerBatch:
    """The Server batch cap a run used, and why: ``measured`` (server_batch), ``forced`` (--mlperf-server-batch)
    or ``reused`` (the load document's or baseline's run, so base and head batch alike)."""

    batch_size: int
    policy: str
    reason: str
    #: Samples/s measured per batch size (the calibration), when the policy read them.
    samples_per_s: dict[str, float] | None = None
    #: The queue model's capacity (queries/s within the latency bound) per cap it weighed.
    modelled_qps: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"batch_size": self.batch_size, "policy": self.policy, "reason": self.reason}
        if self.samples_per_s is not None:
            out["samples_per_s"] = self.samples_per_s
        if self.modelled_qps is not None:
            out["modelled_qps"] = self.modelled_qps
        return out


def server_batch(cal: Calibration, ceiling: int, bound_s: float | None, percentile: float = 99.0) -> ServerBatch:
    """The Server batch cap that pays under the run's latency rule: a pure function of the calibration's timings.

    The candidates are the measured sizes: 1, the small ones (2 and 4, when timed), 8 and *ceiling* (the
    --mlperf-batch-size ceiling, clamped to the model). Going up from 1, a bigger one replaces the current cap
    when the queue model (LoadGen's Poisson schedule, a greedy batcher, the measured call times) puts its capacity
    at the *percentile* latency within *bound_s* SERVER_MODEL_MARGIN over the cap's. Without a bound (None), its
    samples/s must beat the cap's by SERVER_BATCH_MARGIN instead. Without the timings the cap stays at *ceiling*.
    """
    if cal.single_s is None or cal.batch_qps is None or (cal.multi_s is None and 1 < 8 < ceiling):
        return ServerBatch(ceiling, "ceiling", "not calibrated: the batch ceiling")
    seconds = {1: cal.single_s}
    # The small sizes were timed in rounds with batch 1, so their batch 1 is the one to compare them with.
    seconds.update({size: t for size, t in (cal.small_s or {}).items() if size < min(ceiling, 8)})
    if 1 < 8 < ceiling and cal.multi_s is not None:
        seconds[8] = cal.multi_s
    if ceiling > 1:
        seconds[ceiling] = ceiling / max(cal.batch_qps, 1e-12)
    rates = {str(size): round(size / max(t, 1e-12), 3) for size, t in sorted(seconds.items())}
    if ceiling == 1:
        return ServerBatch(1, "measured", "the batch ceiling is 1", rates)
    if bound_s is None:
        return _by_samples_per_s(seconds, rates)
    measured = tuple(sorted(seconds.items()))
    modelled = {1: _capacity(measured, 1, percentile, bound_s)}
    rule = f"p{percentile:g} within {_ms(bound_s)}"
    if modelled[1] <= 0:
        return ServerBatch(1, "measured", f"one call of batch 1 ({_ms(seconds[1])}) is already over the "
                           f"bound ({rule}): batching only makes calls longer", rates, {"1": 0.0})
    cap = 1
    notes = [f"queue model at {rule}: batch-of-one {modelled[1]:.4g} queries/s"]
    for size in sorted(seconds)[1:]:
        if size / seconds[size] <= cap / seconds[cap]:
            notes.append(f"batch {size} gives {(size / seconds[size]) / (cap / seconds[cap]):.2f}x the samples/s "
                         f"of batch {cap} (no faster)")
            continue
        modelled[size] = _capacity(measured, size, percentile, bound_s)
        gain = modelled[size] / modelled[cap]
        taken = gain >= SERVER_MODEL_MARGIN
        notes.append(f"cap {size} {gain:.2f}x cap {cap}" + ("" if taken else f" (needs {SERVER_MODEL_MARGIN}x)"))
        if taken:
            cap = size
    return ServerBatch(cap, "measured", "; ".join(notes), rates,
                       {str(size): round(qps, 3) for size, qps in sorted(modelled.items())})


@functools.lru_cache(maxsize=256)
def _capacity(seconds: tuple[tuple[int, float], ...], cap: int, percentile: float, bound_s: float) -> float:
    """queue_model.capacity of a greedy batcher at *cap*, kept: every Server run of a model asks again with the
    same calibration (both modes, each repeat, each find-peak point), and one answer takes about 0.1 s."""
    return queue_model.capacity(queue_model.CallTimes(dict(seconds)), queue_model.greedy(cap), percentile, bound_s)


def _ms(seconds: float) -> str:
    """Milliseconds as a reason shows them: three significant digits, and whole ones from a second up."""
    ms = seconds * 1e3
    return f"{ms:,.0f} ms" if ms >= 1000 else f"{ms:.3g} ms"


def _by_samples_per_s(seconds: dict[int, float], rates: dict[str, float]) -> ServerBatch:
    cap = 1
    notes: list[str] = []
    for size in sorted(seconds)[1:]:
        gain = (size / seconds[size]) / (cap / seconds[cap])
        taken = gain >= SERVER_BATCH_MARGIN
        notes.append(f"batch {size} gives {gain:.2f}x the samples/s of batch {cap}"
                     + ("" if taken else f" (needs {SERVER_BATCH_MARGIN}x)"))
        if taken:
            cap = size
    return ServerBatch(cap, "measured", "no latency bound: " + "; ".join(notes), rates)


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
    # Pre-generation (SingleStream, MultiStream, Offline) follows the fastest call, so that a warm-up slowed by a
    # busy machine never leaves LoadGen short of queries when the run then goes faster (INVALID: min duration).
    single = cal.single_fastest_s or cal.single_s
    multi = cal.multi_fastest_s or cal.multi_s
    if scenario == "SingleStream" and single is not None:
        values["single_stream_expected_latency_ns"] = max(1_000, int(single * LATENCY_HEADROOM * 1e9))
    elif scenario == "MultiStream" and multi is not None:
        values["multi_stream_expected_latency_ns"] = max(1_000, int(multi * LATENCY_HEADROOM * 1e9))
    elif scenario == "Offline" and (overrides.target_qps or cal.batch_qps):
        peak = cal.batch_fastest_qps or cal.batch_qps or 0.0
        values["offline_expected_qps"] = overrides.target_qps or peak * OFFLINE_HEADROOM
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


#: LoadGen's reasons (loadgen/logs.py) that mean the run was too short for the rules, not too slow.
_TOO_SHORT = ("min duration not met", "min query count not met", "min sample count not met")


def official_hint(
    scenario: str, model_name: str | None, qps: float | None, latency_ns: dict[str, int], invalid: tuple[str, ...]
) -> str | None:
    """What to do when an official-profile run was too short: mlperf.conf's defaults suit only its own
    benchmarks, so a user's model needs its speed in a user.conf (the lines, from this run's figures) or a known
    ``model_name``. None when the run was long enough or its figures say nothing."""
    if not any(reason.startswith(_TOO_SHORT) for reason in invalid):
        return None
    model = model_name or "*"
    if scenario in ("SingleStream", "MultiStream"):
        measured = latency_ns.get("p90" if scenario == "SingleStream" else "p99")
        if not measured:
            return None
        line = f"{model}.{scenario}.target_latency = {max(1, int(measured * (1 - LATENCY_HEADROOM) / 1e6))}"
    elif qps:
        factor = OFFLINE_HEADROOM if scenario == "Offline" else 1.0
        line = f"{model}.{scenario}.target_qps = {qps * factor:.6g}"
    else:
        return None
    return (
        "--mlperf-profile official runs mlperf.conf unchanged (at least 600 s per performance case), whose speed "
        f"settings fit only MLPerf's own benchmarks, so LoadGen ran out of queries. Tell LoadGen this model's "
        f"speed in a user.conf given with --mlperf-user-conf (from this run: `{line}`), or give "
        "@pytest.mark.mlperf(model_name=...) the name of the MLPerf benchmark it is (e.g. resnet50); "
        "--mlperf-profile smoke measures and sets these itself"
    )


#: The pre-generation setting of each scenario the smoke profile sizes from calibration, and which way to move it
#: when LoadGen ran out of queries: a latency goes down, a rate goes up.
_PRE_GENERATION = {
    "SingleStream": ("single_stream_expected_latency_ns", -1),
    "MultiStream": ("multi_stream_expected_latency_ns", -1),
    "Offline": ("offline_expected_qps", 1),
}
#: At most this much more pre-generation per rerun: beyond it the calibration was not the problem.
MAX_RERUN_FACTOR = 50.0
#: Reruns of one run at most; each is a whole LoadGen run of min_duration.
MAX_SHORT_RERUNS = 2


def short_run_retry(
    scenario: str, values: dict[str, Any], invalid: tuple[str, ...], ran_s: float | None, min_duration_ms: int | None
) -> tuple[dict[str, Any], str] | None:
    """Smoke profile: the settings of a rerun when LoadGen ran out of pre-generated queries, and why.

    The warm-up that sized pre-generation can run on a busier machine than the run itself (a CI neighbour stops):
    the run then finishes its queries before min_duration and LoadGen calls it INVALID for being short, which says
    nothing about the SUT. The rerun scales the setting by how short the run fell, with 2.5x headroom. None when the
    run failed for anything else, or the setting was not the calibration's (a user's value is never overridden).
    """
    entry = _PRE_GENERATION.get(scenario)
    if entry is None or not invalid or not all(reason.startswith(_TOO_SHORT) for reason in invalid):
        return None
    key, direction = entry
    current = values.get(key)
    if not isinstance(current, (int, float)) or current <= 0:
        return None
    if ran_s and min_duration_ms and ran_s * 1000 < min_duration_ms:
        # 2.5x: a short run's fixed costs (threads, the first batches) make it look slower than a longer one goes.
        factor = min(MAX_RERUN_FACTOR, 2.5 * min_duration_ms / (ran_s * 1000))
    else:
        factor = 2.0  # short on queries, not time: the count LoadGen needs is not in the log
    scaled = current * factor if direction > 0 else max(1_000, int(current / factor))
    if scaled == current:
        return None
    note = (f"a run ran out of pre-generated queries ({'; '.join(invalid)}); rerun with {key} "
            f"{current:.6g} -> {scaled:.6g}")
    return {**values, key: scaled}, note
