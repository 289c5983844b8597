"""The harness on BERT-shaped inputs against a bare loop: Offline and Server, at batch 1 and the default batch.

    python benchmarks/bert_overhead.py            # about 5 minutes on 2 cores
    python benchmarks/bert_overhead.py --rounds 1 # about 2 minutes

The model is the BERT-shaped stand-in (``pytest_mlperf.models.bert_standin``: three int64 inputs of 384 tokens,
embeddings and a QA head, 30,522 tokens, hidden size 64), the inputs synthetic SQuAD-shaped tokens (512 samples).
Per round and batch size, interleaved: ``Harness.run`` (smoke profile, onnxruntime, the question-answering task's
post-processing) in Offline and in Server (its calibrated target, the batch forced to the same size), and a bare
loop of ``InferenceSession.run`` over the same samples in batches of that size with the outputs stacked as the
reference does. The table gives medians; nothing here asserts (a shared machine varies run to run).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pytest_mlperf.config import RunConfig
from pytest_mlperf.datasets.squad import synthetic_squad
from pytest_mlperf.harness import Case, Harness
from pytest_mlperf.models.bert_standin import build_bert_standin
from pytest_mlperf.provenance import usable_cpus

SAMPLES = 512
VOCAB = 30522


def bare_offline(session: ort.InferenceSession, inputs: dict[str, np.ndarray], batch: int) -> float:
    """Samples/s of session.run over every sample in batches of *batch*, outputs stacked to [N, 384, 2]."""
    count = len(next(iter(inputs.values())))
    t0 = time.perf_counter()
    for start in range(0, count, batch):
        feeds = {k: v[start : start + batch] for k, v in inputs.items()}
        np.stack(session.run(None, feeds), axis=-1)
    return count / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    threads = len(usable_cpus())
    default_batch = RunConfig().batch_size
    root = Path(tempfile.mkdtemp(prefix="bert-overhead-"))
    model = root / "bert_standin.onnx"
    rng = np.random.default_rng(0)
    scores = {int(t): float(rng.standard_normal()) for t in rng.integers(0, VOCAB, 2000)}
    model.write_bytes(build_bert_standin(VOCAB, scores, scores, width=64))
    dataset = synthetic_squad(SAMPLES)
    inputs = {k: np.ascontiguousarray(v) for k, v in dataset.inputs.items()}  # type: ignore[union-attr]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

    table: dict[tuple[int, str], list[float]] = {}
    notes: list[str] = []
    for batch in (1, default_batch):
        config = RunConfig(profile="smoke", threads=threads, batch_size=batch, server_batch=batch,
                           log_dir=root / f"logs-{batch}")  # fmt: skip
        harness = Harness(config, root)
        for rnd in range(args.rounds):
            for scenario in ("Offline", "Server"):
                case = Case(f"bert-{scenario}-{batch}", model, dataset, scenario, "performance", repeat=rnd)
                result = harness.run(case, lambda _: None)
                if not result.valid:
                    why = "; ".join(result.validity_reasons) or "no reason given"
                    notes.append(f"batch {batch} {scenario} round {rnd}: INVALID ({why})")
                table.setdefault((batch, f"harness {scenario}"), []).append(result.metrics.qps or float("nan"))
                if scenario == "Server":
                    p99 = (result.metrics.latency_ns or {}).get("p99", 0) / 1e6
                    table.setdefault((batch, "harness Server p99 ms"), []).append(p99)
            table.setdefault((batch, "bare loop"), []).append(bare_offline(session, inputs, batch))
        harness.close()

    print(f"BERT-shaped stand-in, {SAMPLES} synthetic samples of 384 tokens, {threads} threads, "
          f"{args.rounds} rounds (medians)")  # fmt: skip
    header = ("batch", "bare loop/s", "Offline/s", "ratio", "Server/s", "ratio", "p99 ms")
    print("  ".join(f"{h:>{w}}" for h, w in zip(header, (5, 12, 10, 6, 9, 6, 7), strict=True)))
    for batch in (1, default_batch):
        bare = statistics.median(table[(batch, "bare loop")])
        offline = statistics.median(table[(batch, "harness Offline")])
        server = statistics.median(table[(batch, "harness Server")])
        p99 = statistics.median(table[(batch, "harness Server p99 ms")])
        print(f"{batch:>5}  {bare:>12.1f}  {offline:>10.1f}  {offline / bare:>6.2f}  {server:>9.1f}  "
              f"{server / bare:>6.2f}  {p99:>7.2f}")  # fmt: skip
    for note in notes:
        print(f"  note: {note}", file=sys.stderr)
    print("Server/s is the completed rate at the smoke profile's calibrated target, not a search for the highest "
          "VALID target.")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
