"""The remote backend on loopback: the client's cost against the server's own capacity, in one run.

    python benchmarks/remote_overhead.py           # about 5 minutes on 2 loaded cores
    python benchmarks/remote_overhead.py --quick   # about 2 minutes

Starts two KServe model servers on 127.0.0.1 (tests/e2e/remote_server.py: a no-op model and the digits CNN, from
the server's own venv, .ci/oip-venv or $PYTEST_MLPERF_OIP_PYTHON) and prints:

1. **clients**: per-request latency (1 thread) and throughput (16 threads) of plain loops, batch 1 and 32, against
   the no-op model: our client with binary tensors, with JSON and over gRPC, and tritonclient.http (where the
   server's venv has tritonclient[http]). The best loop is the server's own capacity.
2. **Server**: the highest target QPS whose LoadGen Server run stays VALID through ``Harness.run`` (smoke profile,
   1 s runs, p99 <= --bound-ms) with the no-op model over REST, searched geometrically, over the best plain REST
   loop at batch 1 and at batch 32 (the harness batches Server queries under load, so batch 32 is its ceiling).
3. **Offline**: digits samples/s through ``Harness.run``, remote (REST with 2 and 16 in flight, gRPC with 16) over
   local onnxruntime and over plain REST loops against the same server, interleaved.

Client and server share this machine's cores: on 2 cores every figure is a lower bound of both. Nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_mlperf import ArrayDataset, Classification  # noqa: E402
from pytest_mlperf.config import Overrides, RunConfig  # noqa: E402
from pytest_mlperf.harness import Case, Harness  # noqa: E402
from pytest_mlperf.models.digits import ensure_digits_model, load_digits, split_indices  # noqa: E402
from pytest_mlperf.results import RunResult  # noqa: E402
from tests.e2e.remote_server import oip_server, server_python  # noqa: E402

LOOP = Path(__file__).with_name("oip_client_loop.py")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def client_loop(python: str, client: str, base: str, model: str, batch: int, threads: int, seconds: float
                ) -> dict[str, Any] | None:
    command = [python, str(LOOP), "--client", client, "--base", base, "--model", model, "--batch", str(batch),
               "--threads", str(threads), "--seconds", str(seconds)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        log(f"  {client}: failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
        return None
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _drop(result: RunResult) -> None:
    return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--bound-ms", type=float, default=50.0, help="Server p99 latency bound")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    seconds = 3.0 if args.quick else 6.0
    try:
        venv = server_python()
    except BaseException as exc:  # pytest.skip's exception, outside pytest: say how to make the server's venv
        log(str(exc))
        return 2
    figures: dict[str, Any] = {"clients": [], "machine_note": "client and server share the machine's cores"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        onnx = ensure_digits_model(root / "cache")
        with (oip_server(root / "noop", name="noop", grpc=True) as noop,
              oip_server(root / "digits", "--onnx", str(onnx), grpc=True) as digits):
            # 1. Plain loops.
            log("plain client loops against the no-op model (rounds interleaved, medians):")
            grpc_base = noop.grpc_url.removeprefix("kserve-v2+").rsplit("/models/", 1)[0]
            arms = [(client, python, batch, threads)
                    for client, python in (("ours", sys.executable), ("ours-json", sys.executable),
                                           ("ours-grpc", sys.executable), ("tritonclient", venv))
                    for batch in (1, 32) for threads in (1, 4)]
            samples: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
            for round_ in range(1 if args.quick else 3):
                for client, python, batch, threads in arms[round_ % len(arms):] + arms[:round_ % len(arms)]:
                    base_url = grpc_base if client == "ours-grpc" else noop.base
                    row = client_loop(python, client, base_url, "noop", batch, threads, seconds)
                    if row:
                        samples.setdefault((client, batch, threads), []).append(row)
            for (client, batch, threads), rows in samples.items():
                row = {"client": client, "batch": batch, "threads": threads,
                       **{key: statistics.median(r[key] for r in rows)
                          for key in ("rps", "samples_per_s", "p50_ms", "p90_ms")}}
                figures["clients"].append(row)
                log(f"  {client:12} batch {batch:2} threads {threads:2}: {row['rps']:8.1f} req/s "
                    f"{row['samples_per_s']:9.1f} samples/s  p50 {row['p50_ms']:.2f} ms")
            # The Server search below speaks REST, so its yardstick is the best REST loop (gRPC is faster on KServe).
            capacity = max((r["rps"] for r in figures["clients"] if r["batch"] == 1 and r["client"] != "ours-grpc"),
                           default=0.0)
            figures["server_rest_capacity_batch1_rps"] = capacity

            # 2. Server: highest VALID target with the no-op model.
            images, labels = load_digits()
            _, held_out = split_indices(labels)
            data = ArrayDataset(images[held_out], labels[held_out], name="digits", task=Classification())
            # Server's p99 early stopping needs several hundred queries before any run can be VALID.
            overrides = Overrides(min_duration_ms=1000, min_query_count=1000 if args.quick else 2000,
                                  target_latency_ms=args.bound_ms)
            base = RunConfig(profile="smoke", log_dir=root / "logs", overrides=overrides)
            harness = Harness(base, root)
            runs = [0]

            def server_run(target: float) -> bool:
                harness.config = base.with_(overrides=replace(overrides, target_qps=target))
                runs[0] += 1
                result = harness.run(Case("noop", noop.url, data, "Server", "performance", repeat=runs[0]), _drop)
                p99 = (result.metrics.latency_ns or {}).get("p99", 0) / 1e6
                why = "" if result.valid else f" ({'; '.join(result.validity_reasons)[:150]})"
                log(f"  Server target {target:8.1f}: {'VALID' if result.valid else 'INVALID'} p99 {p99:.1f} ms{why}")
                return bool(result.valid)

            log(f"Server search (p99 <= {args.bound_ms:g} ms), no-op model:")
            # Bracket from a quarter of the loop's capacity (doubling while VALID, halving while not), then bisect.
            lo, hi, target = 0.0, 0.0, max(capacity / 2, 25.0)
            for _ in range(6):
                if server_run(target):
                    lo, target = target, target * 2
                    if hi:
                        break
                else:
                    hi, target = target, target / 2
                    if lo:
                        break
                if lo and hi:
                    break
            for _ in range(2 if args.quick else 4):
                if not (lo and hi):
                    break
                middle = (lo * hi) ** 0.5
                lo, hi = (middle, hi) if server_run(middle) else (lo, middle)
            harness.close()
            figures["server_valid_qps"] = round(lo, 1)
            figures["server_valid_over_batch1_loop"] = round(lo / capacity, 3) if capacity else None
            # The harness batches Server queries dynamically under load, so the batch-32 loop is its ceiling.
            rest32 = max((r["samples_per_s"] for r in figures["clients"]
                          if r["batch"] == 32 and r["client"] != "ours-grpc"), default=0.0)
            figures["server_rest_capacity_batch32_samples_per_s"] = rest32
            figures["server_valid_over_batch32_loop"] = round(lo / rest32, 3) if rest32 else None

            # 3. Offline: digits remote over local, interleaved.
            log("Offline digits, remote vs local onnxruntime:")
            rates: dict[str, list[float]] = {}
            def offline_config(concurrency: int) -> RunConfig:
                return RunConfig(profile="smoke", log_dir=root / "offline", overrides=Overrides(min_duration_ms=2000),
                                 backend_options=(("remote.concurrency", str(concurrency)),))

            harnesses = {arm: Harness(offline_config(concurrency), root)
                         for arm, concurrency in (("remote-c2", 2), ("remote-c16", 16), ("remote-grpc-c16", 16),
                                                  ("local", 1))}
            loops: dict[str, list[float]] = {}
            for repeat in range(2 if args.quick else 3):
                for arm, harness in harnesses.items():
                    model = {"local": str(onnx), "remote-grpc-c16": digits.grpc_url}.get(arm, digits.url)
                    result = harness.run(Case(f"digits-{arm}", model, data, "Offline", "performance",
                                              repeat=repeat), _drop)
                    rates.setdefault(arm, []).append(result.metrics.qps or 0.0)
                    log(f"  {arm:10} {result.metrics.qps or 0:9.1f} samples/s")
                for client, python in (("ours", sys.executable), ("tritonclient", venv)):
                    row = client_loop(python, client, digits.base, "digits", 32, 4, seconds)
                    if row:
                        loops.setdefault(client, []).append(row["samples_per_s"])
                        log(f"  plain loop {client} batch 32 threads 4: {row['samples_per_s']:9.1f} samples/s")
            for harness in harnesses.values():
                harness.close()
            figures["offline_samples_per_s"] = {arm: statistics.median(v) for arm, v in rates.items()}
            local = figures["offline_samples_per_s"]["local"]
            figures["offline_remote_over_local"] = {
                arm: round(rate / local, 3) if local else None
                for arm, rate in figures["offline_samples_per_s"].items() if arm != "local"
            }
            figures["digits_plain_loop_samples_per_s"] = {c: statistics.median(v) for c, v in loops.items()}
            best_loop = max(figures["digits_plain_loop_samples_per_s"].values(), default=0.0)
            figures["offline_remote_over_plain_loop_batch32"] = {
                arm: round(rate / best_loop, 3) if best_loop else None
                for arm, rate in figures["offline_samples_per_s"].items() if arm != "local"
            }
    print(json.dumps({k: v for k, v in figures.items() if k != "clients"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
