"""A queue model of LoadGen's Server scenario: the highest Poisson rate a batch cap keeps within a latency bound.

LoadGen issues Server queries on a Poisson schedule and judges a percentile of their latencies against a bound.
Whether a batch cap pays is a question about that schedule, not about samples/s alone: a batch serves its queries
faster per sample, but every query in it waits for the whole call, and a call that takes a large share of the bound
pushes the queries behind it over. The model replays the schedule through one engine whose calls take the measured
time for their batch size, with a greedy batcher (everything queued, up to the cap, in one call, never waiting for
more), which is what the harness's Server SUT does. It is a pure function of the call times: the same arrivals (one
fixed seed, scaled to each rate) for every cap, so that caps are compared on the same schedule.

Per-query Python and LoadGen costs are not modelled; they are alike for every cap and are what
``benchmarks/harness_overhead.py`` measures.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Queries replayed per rate: p90 and p99 of 6,000 Poisson arrivals settle within about 2 % of their long-run
#: values for the loads where the bound binds, and a whole cap search stays under about 0.1 s on a 2-core machine.
QUERIES = 6_000
#: Geometric bisection steps of the rate: 2^-14 of the bracket's log range is far finer than calibration noise.
STEPS = 14
SEED = 20_260_501

#: How many queries the next call takes, given how many are queued (at least 1).
Policy = Callable[[int], int]


def greedy(cap: int) -> Policy:
    """Everything queued, up to *cap*, in one call: the harness's Server batcher."""
    return lambda queued: min(cap, queued)


@dataclass(frozen=True)
class CallTimes:
    """Measured seconds of one call per batch size; other sizes are interpolated linearly between the measured
    ones, and past the largest they cost its time per sample."""

    seconds: Mapping[int, float]

    def of(self, size: int) -> float:
        if size in self.seconds:
            return self.seconds[size]
        sizes = sorted(self.seconds)
        above = next((s for s in sizes if s > size), None)
        if above is None:
            return self.seconds[sizes[-1]] * size / sizes[-1]
        below = max((s for s in sizes if s < size), default=None)
        if below is None:
            return self.seconds[above] * size / above
        return self.seconds[below] + (self.seconds[above] - self.seconds[below]) * (size - below) / (above - below)


def latencies(
    times: CallTimes,
    policy: Policy,
    rate: float,
    queries: int = QUERIES,
    seed: int = SEED,
    spread: float = 0.0,
    late_after_s: float | None = None,
) -> np.ndarray:
    """The latency (s) of each of *queries* Poisson arrivals at *rate* per second on one engine under *policy*.

    *spread* varies each call's time (normal, relative standard deviation). *late_after_s*, when given, replaces
    the policy with a reference that no SUT here uses: serve first, one at a time, the oldest query that can still
    finish within it, and the late ones afterwards (it games a percentile by starving the queries already late).
    """
    arrivals = list(itertools.accumulate((np.random.default_rng(seed).exponential(1.0 / rate, queries)).tolist()))
    noise = (1.0 + spread * np.random.default_rng(seed + 1).standard_normal(queries)).clip(0.5).tolist()
    if late_after_s is not None:
        return _reorder_late(arrivals, noise, times.of(1), late_after_s)
    cost: dict[int, float] = {}
    finish = [0.0] * queries
    now, head, arrived, call = 0.0, 0, 0, 0
    while head < queries:
        if now < arrivals[head]:
            now = arrivals[head]
        arrived = bisect.bisect_right(arrivals, now, arrived)
        take = max(1, min(policy(arrived - head), arrived - head))
        seconds = cost.get(take)
        if seconds is None:
            seconds = cost[take] = times.of(take)
        now += seconds * noise[call]
        call += 1
        finish[head : head + take] = [now] * take
        head += take
    waited: np.ndarray = np.asarray(finish) - np.asarray(arrivals)
    return waited


def _reorder_late(arrivals: list[float], noise: list[float], single: float, bound: float) -> np.ndarray:
    queries = len(arrivals)
    finish = [0.0] * queries
    waiting: collections.deque[int] = collections.deque()  # arrival order; the late ones move to `late`
    late: collections.deque[int] = collections.deque()
    now, arrived, done, call = 0.0, 0, 0, 0
    while done < queries:
        if not waiting and not late:
            now = max(now, arrivals[arrived])
        while arrived < queries and arrivals[arrived] <= now:
            waiting.append(arrived)
            arrived += 1
        while waiting and now + single - arrivals[waiting[0]] > bound:
            late.append(waiting.popleft())
        query = waiting.popleft() if waiting else late.popleft()
        now += single * noise[call]
        call += 1
        finish[query] = now
        done += 1
    waited: np.ndarray = np.asarray(finish) - np.asarray(arrivals)
    return waited


def capacity(
    times: CallTimes,
    policy: Policy,
    percentile: float,
    bound_s: float,
    queries: int = QUERIES,
    seeds: Sequence[int] = (SEED,),
    spread: float = 0.0,
    late_after_s: float | None = None,
) -> float:
    """The highest Poisson rate (queries/s) at which the *percentile* (e.g. 90) latency, the median over *seeds*,
    stays within *bound_s*; 0.0 when even an idle engine misses it (one call of batch 1 is over the bound).

    No rate at or above the policy's peak (its best samples/s) is within: such a queue grows without limit, even
    where a bound long against the replayed stretch of arrivals would not show it.
    """
    largest = 1 if late_after_s is not None else max(1, policy(1 << 30))
    peak = max(size / max(times.of(size), 1e-12) for size in range(1, largest + 1))

    def within(rate: float) -> bool:
        if rate >= peak:
            return False
        tails = sorted(
            float(np.percentile(latencies(times, policy, rate, queries, seed, spread, late_after_s), percentile))
            for seed in seeds
        )
        return tails[len(tails) // 2] <= bound_s

    lo, hi = peak * 1e-3, peak
    if not within(lo):
        return 0.0
    for _ in range(STEPS):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if within(mid) else (lo, mid)
    return lo
