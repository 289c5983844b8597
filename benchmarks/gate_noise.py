"""How often does the gate cry wolf, and what does it catch, under a stated noise model? Prints one table.

    python benchmarks/gate_noise.py               # 200 comparisons per cell, a few minutes on 2 cores
    python benchmarks/gate_noise.py --quick       # 60 per cell, under a minute

No LoadGen: results documents are generated from an explicit noise model and decided exactly as the plugin and
the Action decide them (``compare_documents``, default policy unless overridden). Each generated run holds a
SingleStream case (per-query latencies, gated on p90) and an Offline case (one samples/s value, gated on qps):

* run level: every case of every run is scaled as a whole by its own lognormal factor, sigma 1, 2 or 4 %: the
  runner's state during that run (other jobs, clocks, caches), the noise that one run alone cannot see;
* query level: lognormal jitter (sigma 10 %) per query, and a rare heavy tail: 1 % of queries take 2x to 20x+
  longer (Pareto); Offline's samples/s gets 0.5 % of per-run measurement jitter;
* a regression multiplies head's latencies by 1.05 or 1.10, or its samples/s by 0.95 or 0.90.

Designs, each for A/A (identical code: any regression is a false alarm) and for the regressions:

* ``1+1``: one run per side (the plugin's default with a one-run baseline);
* ``1 vs 5``: one head run against a baseline recorded with 5 repeats (a nightly baseline);
* ``3+3``: three interleaved rounds (the Action's former default);
* ``auto``: rounds until every gated metric is decided, 3 to 10 (``repeat: auto``), Pocock-type alpha spending.

Nothing asserts: it prints the measured rates next to the targets of issue 11.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_mlperf.gate.compare import compare_documents
from pytest_mlperf.gate.statistics import AUTO_ROUNDS, GatePolicy, Look

SS = "benchmarks/gate_noise.py::test_noise[SingleStream-performance]"
OFF = "benchmarks/gate_noise.py::test_noise[Offline-performance]"
METRICS = {"latency": (SS, "p90_latency"), "throughput": (OFF, "qps")}
ENVELOPE: dict[str, Any] = {
    "schema_version": 1,
    "datetime": "2026-12-01T12:00:00+00:00",
    "status": "complete",
    "versions": {"plugin": "0.1.0", "loadgen": "6.0.17", "onnxruntime": "1.32.0", "python": "3.11.7"},
    "machine": {"cpu": "Generated CPU", "cores": 2, "logical_cpus": 2, "memory_bytes": 8 << 30,
                "os": "Linux", "arch": "x86_64", "gpus": []},
    "commit": None,
}
LATENCY_NS, QPS = 2e6, 5000.0
TARGETS = {"false": 0.01, "detect_10": 0.90, "detect_5": 0.50}


@dataclass(frozen=True)
class NoiseModel:
    run_sigma: float
    queries: int = 1000
    query_sigma: float = 0.10
    tail_fraction: float = 0.01
    qps_jitter: float = 0.005


def _run(
    case_id: str, scenario: str, repeat: int, metrics: dict[str, Any], samples: list[float] | None
) -> dict[str, Any]:
    return {
        "id": case_id, "repeat": repeat, "model": "generated", "model_sha256": "0" * 64,
        "dataset": {"name": "generated", "count": 100}, "backend": "onnxruntime",
        "backend_options": {"providers": ["CPUExecutionProvider"], "threads": 1, "batch_size": 1},
        "scenario": scenario, "mode": "performance", "profile": "smoke", "synthetic_inputs": False,
        "settings": {"min_duration_ms": 1000, "min_query_count": 1000}, "overrides": {},
        "metrics": metrics, "latency_samples_ns": samples,
        "thresholds": {"latency_percentile": "p90"}, "valid": True, "passed": True, "reasons": [],
        "log_dir": "logs", "duration_s": 1.0,
    }


def generate_runs(
    rng: np.random.Generator, model: NoiseModel, repeat: int, latency_scale: float = 1.0, qps_scale: float = 1.0
) -> list[dict[str, Any]]:
    """One round of one side: a SingleStream and an Offline run, each with its own run-level factor."""
    latency_factor, qps_factor = rng.lognormal(0.0, model.run_sigma, 2)
    values = rng.lognormal(np.log(LATENCY_NS), model.query_sigma, model.queries)
    tail = rng.random(model.queries) < model.tail_fraction
    values[tail] *= 2.0 + rng.pareto(1.5, int(tail.sum()))
    values *= latency_scale * latency_factor
    samples = np.round(values).tolist()
    ordered = np.sort(values)
    latency = {name: float(ordered[min(int(len(ordered) * q), len(ordered) - 1)])
               for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))}
    qps = QPS * qps_scale / qps_factor * float(rng.lognormal(0.0, model.qps_jitter))
    return [
        _run(SS, "SingleStream", repeat, {"qps": None, "latency_ns": latency, "accuracy": None}, samples),
        _run(OFF, "Offline", repeat, {"qps": qps, "latency_ns": None, "accuracy": None}, None),
    ]


def document(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {**ENVELOPE, "runs": runs}


@dataclass
class Outcome:
    verdicts: dict[str, str]
    rounds: int


Design = Callable[[np.random.Generator, NoiseModel, float, GatePolicy], Outcome]


def _side(rng: np.random.Generator, model: NoiseModel, rounds: int, effect: float = 0.0) -> list[dict[str, Any]]:
    return [run for r in range(rounds) for run in generate_runs(rng, model, r, 1.0 + effect, 1.0 - effect)]


def _verdicts(comparison: dict[str, Any]) -> dict[str, str]:
    cases = {(c["id"], c["metric"]): c["verdict"] for c in comparison["cases"]}
    return {name: cases[key] for name, key in METRICS.items()}


def fixed(base_rounds: int, head_rounds: int) -> Design:
    def design(rng: np.random.Generator, model: NoiseModel, effect: float, policy: GatePolicy) -> Outcome:
        base, head = _side(rng, model, base_rounds), _side(rng, model, head_rounds, effect)
        return Outcome(_verdicts(compare_documents([document(base)], [document(head)], policy)), head_rounds)

    return design


def adaptive(min_rounds: int, max_rounds: int) -> Design:
    def design(rng: np.random.Generator, model: NoiseModel, effect: float, policy: GatePolicy) -> Outcome:
        base: list[dict[str, Any]] = []
        head: list[dict[str, Any]] = []
        for rnd in range(1, max_rounds + 1):
            base += generate_runs(rng, model, rnd - 1)
            head += generate_runs(rng, model, rnd - 1, 1.0 + effect, 1.0 - effect)
            if rnd < min_rounds:
                continue
            look = Look(rnd, min_rounds, max_rounds)
            comparison = compare_documents([document(base)], [document(head)], policy, look=look)
            if comparison["sequential"]["decided"] or look.last:
                return Outcome(_verdicts(comparison), rnd)
        raise AssertionError("unreachable: the last look always returns")

    return design


@dataclass
class Cell:
    flagged: dict[str, int] = field(default_factory=lambda: {name: 0 for name in METRICS})
    total: int = 0
    rounds: list[int] = field(default_factory=list)


def measure(design: Design, model: NoiseModel, effect: float, n: int, policy: GatePolicy, seed: int) -> Cell:
    rng = np.random.default_rng(seed)
    cell = Cell()
    for _ in range(n):
        outcome = design(rng, model, effect, policy)
        cell.total += 1
        cell.rounds.append(outcome.rounds)
        for name, verdict in outcome.verdicts.items():
            cell.flagged[name] += verdict == "regression"
    return cell


def _rate(count: int, total: int) -> str:
    return f"{count / total * 100:.1f} %" if total else "-"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 comparisons per cell")
    parser.add_argument("--comparisons", type=int, help="comparisons per cell (default 200, quick 60)")
    parser.add_argument("--sigmas", default="0.01,0.02,0.04", help="run-level lognormal sigmas, comma-separated")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--floor", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    n = args.comparisons or (60 if args.quick else 200)
    policy = GatePolicy(alpha=args.alpha, floor=args.floor)
    designs: dict[str, Design] = {
        "1+1": fixed(1, 1),
        "1 vs 5": fixed(5, 1),
        "3+3": fixed(3, 3),
        f"auto {AUTO_ROUNDS[0]}-{AUTO_ROUNDS[1]}": adaptive(*AUTO_ROUNDS),
    }
    effects = (0.0, 0.05, 0.10)
    print(
        f"noise model: run-level lognormal sigma {args.sigmas}; {NoiseModel(0).queries} queries per run with "
        f"lognormal jitter 10 % and a 1 % Pareto tail; alpha {args.alpha:g}, floor {args.floor * 100:g} %; "
        f"{n} comparisons per cell",
        flush=True,
    )
    header = (
        "| run noise | design | A/A false regressions (lat / thr) | 10 % caught (lat / thr) "
        "| 5 % caught (lat / thr) | rounds median / p90: A/A; 5 %; 10 % |"
    )
    lines = [header, "|" + "---|" * 6]
    started = time.perf_counter()
    for sigma in (float(s) for s in args.sigmas.split(",")):
        model = NoiseModel(sigma)
        for index, (name, design) in enumerate(designs.items()):
            cells = {e: measure(design, model, e, n, policy, args.seed + 1000 * index + int(e * 100)) for e in effects}

            def pair(cell: Cell) -> str:
                return f"{_rate(cell.flagged['latency'], cell.total)} / {_rate(cell.flagged['throughput'], cell.total)}"

            def rounds(cell: Cell) -> str:
                return f"{statistics.median(cell.rounds):g} / {np.percentile(cell.rounds, 90):g}"

            lines.append(
                f"| {sigma * 100:g} % | {name} | {pair(cells[0.0])} | {pair(cells[0.10])} | {pair(cells[0.05])} "
                f"| {rounds(cells[0.0])}; {rounds(cells[0.05])}; {rounds(cells[0.10])} |"
            )
            print(lines[-1], flush=True)
    print()
    print("\n".join(lines))
    print(
        f"\ntargets: A/A false regressions <= {TARGETS['false'] * 100:g} %; auto at 2 % noise catches >= "
        f"{TARGETS['detect_10'] * 100:g} % of 10 % and >= {TARGETS['detect_5'] * 100:g} % of 5 % regressions. "
        f"{time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
