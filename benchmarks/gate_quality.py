"""Does the regression gate catch real slowdowns and ignore noise, on this machine? Prints rates against targets.

    python benchmarks/gate_quality.py            # 30 rounds, about 12 minutes on 2 shared cores
    python benchmarks/gate_quality.py --quick    # 20 rounds, about 3 minutes

Each round runs, interleaved (A, A', B5, B10, A, A', B5, B10, ... for --repeat rounds of runs), four configurations
of one SingleStream case through the real harness (smoke profile, ONNX Runtime, LoadGen with the trace on):

* A and A' are identical: a tiny ONNX model plus a fixed CPU-bound spin per sample (``--work-us``) standing in for
  a model's compute, so the latency is dominated by CPU work that the machine's noise really hits;
* B5 and B10 spin 5 % and 10 % longer, calibrated on A's measured median latency (not on the nominal spin), so the
  slowdown of the whole query latency is 5 % and 10 %.

Then three comparisons per round, exactly as ``--mlperf-baseline`` makes them (compare_documents, default policy
unless overridden): A vs A' (any regression is a false alarm), A vs B5 and A vs B10 (a regression is a detection).
The time per comparison is the wall time of measuring both sides (2 x repeat runs) plus the decision itself.
Nothing asserts: it prints the measured rates and PASS/MISS against the targets of issue 4.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pytest_mlperf import ArrayDataset, Classification
from pytest_mlperf.config import Overrides, RunConfig
from pytest_mlperf.gate.compare import Source, compare_documents
from pytest_mlperf.gate.statistics import GatePolicy
from pytest_mlperf.harness import Case, Harness
from pytest_mlperf.results import RunResult, new_document
from pytest_mlperf.tasks.classification import select_output

if TYPE_CHECKING:
    from pytest_mlperf.tasks.base import Outputs

FEATURES, CLASSES = 16, 4
CASE_ID = "benchmarks/gate_quality.py::test_gate[SingleStream-performance]"
TARGETS = {"false_regressions": 0.01, "detect_10": 0.90, "detect_5": 0.50, "seconds": 60.0}


@dataclass(frozen=True)
class SpinClassification(Classification):
    """Post-processing spins the CPU for ``work_s * scale`` per sample: a model whose cost we control exactly."""

    work_s: float = 0.0
    scale: float = 1.0

    def postprocess(self, outputs: Outputs) -> np.ndarray:
        deadline = time.perf_counter() + self.work_s * self.scale * len(select_output(outputs, None))
        while time.perf_counter() < deadline:
            pass
        return super().postprocess(outputs)


def write_model(path: Path) -> Path:
    rng = np.random.default_rng(3)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["logits"])],
        "gate-quality",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])],
        [numpy_helper.from_array(rng.standard_normal((FEATURES, CLASSES)).astype(np.float32), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="gate_quality")
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def make_dataset() -> ArrayDataset:
    x = np.random.default_rng(1).standard_normal((256, FEATURES)).astype(np.float32)
    return ArrayDataset(x, np.zeros(256, dtype=np.int64), name="gate-quality", task=Classification(topk=1))


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.model = write_model(root / "model.onnx")
        config = RunConfig(
            scenarios=("SingleStream",),
            modes=("performance",),
            overrides=Overrides(min_duration_ms=args.duration_ms, min_query_count=args.queries),
            log_dir=root / "logs",
            record_latencies=True,  # per-query latencies, as --mlperf-baseline sessions record them
            results_path=root / "results.json",
            threads=1,
        )
        self.harness = Harness(config, root)
        self.dataset = make_dataset()
        self.envelope = {k: v for k, v in new_document(root).items() if k != "runs"}
        self.policy = GatePolicy(alpha=args.alpha, floor=args.floor)
        self.run_seconds: list[float] = []

    def run(self, scale: float, repeat: int) -> dict[str, Any]:
        task = SpinClassification(topk=1, work_s=self.args.work_us * 1e-6, scale=scale)
        case = Case(
            id=CASE_ID,
            model=self.model,
            dataset=self.dataset,
            scenario="SingleStream",
            mode="performance",
            repeat=repeat,
            task=task,
        )
        kept: list[RunResult] = []
        started = time.perf_counter()
        self.harness.run(case, kept.append)
        self.run_seconds.append(time.perf_counter() - started)
        return kept[0].to_dict()

    def document(self, runs: list[dict[str, Any]]) -> dict[str, Any]:
        return {**self.envelope, "runs": runs}

    def compare(self, base: list[dict[str, Any]], head: list[dict[str, Any]]) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        result = compare_documents(
            [Source("base", self.document(base))], [Source("head", self.document(head))], self.policy, ids={CASE_ID}
        )
        return result, time.perf_counter() - started


def calibrate_slowdowns(bench: Bench) -> dict[str, float]:
    """Spin scales that slow A's median query latency by exactly 5 % and 10 %."""
    run = bench.run(1.0, 0)
    median_ns = float(np.median(run["latency_samples_ns"]))
    work_ns = bench.args.work_us * 1e3
    return {name: 1.0 + pct * median_ns / work_ns for name, pct in (("B5", 0.05), ("B10", 0.10))}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 rounds and shorter runs (about 3 minutes)")
    parser.add_argument("--rounds", type=int, help="comparisons per kind (default 30, quick 20)")
    parser.add_argument("--repeat", type=int, help="runs per side (--mlperf-repeat); default 5, quick 3")
    parser.add_argument("--duration-ms", type=int, help="LoadGen min_duration per run (default 800, quick 400)")
    parser.add_argument("--queries", type=int, default=100, help="LoadGen min_query_count per run")
    parser.add_argument("--work-us", type=float, default=1000.0, help="CPU spin per sample standing in for a model")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--floor", type=float, default=0.05)
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (20 if args.quick else 30)
    args.duration_ms = args.duration_ms or (400 if args.quick else 800)
    args.repeat = args.repeat or (3 if args.quick else 5)

    with tempfile.TemporaryDirectory(prefix="gate-quality-") as tmp:
        bench = Bench(args, Path(tmp))
        scales = {"A": 1.0, "A'": 1.0, **calibrate_slowdowns(bench)}
        print(
            f"config: repeat {args.repeat}, min_duration {args.duration_ms} ms, min_query_count {args.queries}, "
            f"spin {args.work_us:g} us/sample, alpha {args.alpha:g}, floor {args.floor * 100:g} %; "
            f"B5 spin x{scales['B5']:.4f}, B10 spin x{scales['B10']:.4f}",
            flush=True,
        )
        verdicts: dict[str, list[str]] = {"A/A": [], "A/B5": [], "A/B10": []}
        changes: dict[str, list[float]] = {key: [] for key in verdicts}
        compare_s: list[float] = []
        round_s: list[float] = []
        for index in range(args.rounds):
            started = time.perf_counter()
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in scales}
            order = list(scales) if index % 2 == 0 else list(reversed(scales))
            for repeat in range(args.repeat):
                for name in order:  # interleaved ABAB, the order flipping every round
                    runs[name].append(bench.run(scales[name], repeat))
            for key, head in (("A/A", "A'"), ("A/B5", "B5"), ("A/B10", "B10")):
                result, seconds = bench.compare(runs["A"], runs[head])
                compare_s.append(seconds)
                case = result["cases"][0]
                verdicts[key].append(case["verdict"])
                changes[key].append(case["change"] if case["change"] is not None else float("nan"))
            round_s.append(time.perf_counter() - started)
            print(
                f"round {index + 1}/{args.rounds}: "
                + ", ".join(f"{k} {v[-1]} ({changes[k][-1] * 100:+.1f} %)" for k, v in verdicts.items()),
                flush=True,
            )

    n = args.rounds
    fp = verdicts["A/A"].count("regression") / n
    d5 = verdicts["A/B5"].count("regression") / n
    d10 = verdicts["A/B10"].count("regression") / n
    per_comparison = 2 * args.repeat * statistics.median(bench.run_seconds) + statistics.median(compare_s)
    rows = [
        (
            "false-regression rate (A/A)",
            f"{fp * 100:.1f} % ({verdicts['A/A'].count('regression')}/{n})",
            "<= 1 %",
            fp <= TARGETS["false_regressions"],
        ),
        (
            "detection at +10 %",
            f"{d10 * 100:.0f} % ({verdicts['A/B10'].count('regression')}/{n})",
            ">= 90 %",
            d10 >= TARGETS["detect_10"],
        ),
        (
            "detection at +5 %",
            f"{d5 * 100:.0f} % ({verdicts['A/B5'].count('regression')}/{n})",
            ">= 50 %",
            d5 >= TARGETS["detect_5"],
        ),
        (
            "time per comparison",
            f"{per_comparison:.1f} s (runs {statistics.median(bench.run_seconds):.2f} s each, "
            f"decision {statistics.median(compare_s):.2f} s)",
            "< 60 s",
            per_comparison < TARGETS["seconds"],
        ),
    ]
    print()
    width = max(len(r[1]) for r in rows)
    print(f"{'measure':<30}{'measured':<{width + 2}}{'target':<10}result")
    for label, value, target, ok in rows:
        print(f"{label:<30}{value:<{width + 2}}{target:<10}{'PASS' if ok else 'MISS'}")
    for key, values in changes.items():
        finite = [v for v in values if v == v]
        if finite:
            print(
                f"{key}: median change {statistics.median(finite) * 100:+.1f} %, "
                f"range [{min(finite) * 100:+.1f}, {max(finite) * 100:+.1f}] %"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
