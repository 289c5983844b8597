"""Which Server batching policy could reach the highest p90-bounded target, from measured batch costs and a queue model.

    python benchmarks/server_policy_model.py           # about 1 minute on 2 cores
    python benchmarks/server_policy_model.py --quick   # fewer simulated queries

``server_capacity.py`` measures the harness against a bare batch-of-one SUT with LoadGen, one noisy run per point.
This script asks the question under it without the noise: given what one call of batch N costs on this machine
(measured here, interleaved, on the same ONNX graphs), what is the highest Poisson arrival rate at which a policy
keeps the p90 latency under the bound? LoadGen's Server scenario issues queries on a Poisson schedule, so the model
replays that: one engine, calls that take the measured time for their batch (with the measured spread), and each
policy deciding what the next call takes from what has arrived:

* ``fifo-1``: every query alone, in arrival order (the bare SUT of ``server_capacity.py``, and the harness at cap 1);
* ``greedy-N``: everything queued, up to N, in one call (the harness's Server batcher at cap N without a wait);
* ``backlog-T-N``: alone, unless T or more are queued, then up to N at once (batching only once a backlog builds).

``reorder-late`` (serve first the oldest query that can still meet the bound, the late ones afterwards) is printed
for reference only: it raises the p90 capacity by starving the queries that are already late, which moves their
latency into the tail that p90 ignores. pytest-mlperf does not do this, and would not: it games the percentile, and
a SUT that does it misleads whoever reads its Server result.

Nothing here asserts: it prints each policy's modelled capacity and its ratio over ``fifo-1``. Per-query Python and
LoadGen costs are not modelled (they are what ``server_capacity.py`` and ``harness_overhead.py`` measure).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from models import bare_session, ensure_model, random_inputs

from pytest_mlperf.provenance import usable_cpus
from pytest_mlperf.queue_model import CallTimes, Policy, capacity, greedy, latencies

#: The heavy model's bound, as in server_capacity.py: this multiple of its median batch-1 time; the light model's
#: is fixed.
HEAVY_BOUND_MULTIPLE = 2.5
LIGHT_BOUND_MS = 10.0
BATCHES = {"heavy": (1, 2, 3, 4, 8), "light": (1, 2, 4, 8, 16, 32, 64)}


@dataclass(frozen=True)
class Costs:
    """Median call time per batch size and the batch-1 calls' relative spread (stdev / median)."""

    times: CallTimes
    spread: float


def measure(name: str, budget_s: float) -> Costs:
    """Each batch size's call time on the bare session the scripts use, sizes interleaved round by round."""
    sess = bare_session(ensure_model(name), len(usable_cpus()))
    inp, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    pool, _ = random_inputs(name)
    times: dict[int, list[float]] = {b: [] for b in BATCHES[name]}
    feeds = {b: np.ascontiguousarray(np.resize(pool, (b, *pool.shape[1:]))) for b in BATCHES[name]}
    for b in feeds:
        sess.run([out], {inp: feeds[b]})  # first-call allocations out of the timing
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline or min(len(t) for t in times.values()) < 5:
        for b, feed in feeds.items():
            t0 = time.perf_counter()
            sess.run([out], {inp: feed})
            times[b].append(time.perf_counter() - t0)
    single = times[1]
    spread = statistics.stdev(single) / statistics.median(single)
    return Costs(CallTimes({b: statistics.median(t) for b, t in times.items()}), spread)


def fifo(queued: int) -> int:
    return 1


def backlog(threshold: int, cap: int) -> Policy:
    return lambda queued: min(cap, queued) if queued >= threshold else 1


def policies(name: str) -> dict[str, Policy | None]:
    caps = (2, 4, 8) if name == "heavy" else (8, 32, 64)
    out: dict[str, Policy | None] = {"fifo-1": fifo}
    out.update({f"greedy-{c}": greedy(c) for c in caps})
    out.update({f"backlog-{t}-{c}": backlog(t, c) for t in (3, 5) for c in caps})
    out["reorder-late (not used)"] = None  # queue_model's late_after_s reference
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer simulated queries and seeds")
    parser.add_argument("--models", default="heavy,light", help="comma-separated subset of: heavy, light")
    args = parser.parse_args(argv)
    queries, seeds = (20_000, (1,)) if args.quick else (60_000, (1, 2, 3))  # the harness's own decision: 6,000, one
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        costs = measure(name, budget_s=4.0 if name == "heavy" else 2.0)
        bound = costs.times.of(1) * HEAVY_BOUND_MULTIPLE if name == "heavy" else LIGHT_BOUND_MS / 1e3
        shown = ", ".join(f"{b}: {seconds * 1e3:.3g} ms" for b, seconds in costs.times.seconds.items())
        print(f"{name}: call time by batch size {shown}; batch-1 spread {costs.spread:.1%}; "
              f"p90 bound {bound * 1e3:.3g} ms")
        base = None
        for label, policy in policies(name).items():
            late = bound if policy is None else None
            rule = policy or fifo
            cap = capacity(costs.times, rule, 90, bound, queries, seeds, costs.spread, late)
            p99 = np.percentile(latencies(costs.times, rule, cap, queries, seeds[0], costs.spread, late), 99) * 1e3
            base = base or cap
            print(f"  {label:<24} {cap:10,.1f} queries/s  {cap / base:6.3f}x fifo-1  p99 there {p99:8.3g} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
