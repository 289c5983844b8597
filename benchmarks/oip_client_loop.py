"""A plain concurrent client loop against an Open Inference Protocol server: requests/s and per-request latency.

    python oip_client_loop.py --client {ours,ours-json,ours-grpc,tritonclient} --base http://127.0.0.1:P --model M
                              --shape 1,8,8 --batch 1 --threads 16 --seconds 5

Prints one JSON line: {"client", "threads", "batch", "requests", "seconds", "rps", "samples_per_s", "p50_ms",
"p90_ms"}. ``tritonclient`` runs where tritonclient[http] is installed (the server's venv: in the test environment
it would downgrade ml_dtypes and pull gevent); ``ours`` is pytest-mlperf's remote backend (``ours-grpc``: give
``--base grpc://127.0.0.1:G``).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def make_call(client: str, base: str, model: str, x: np.ndarray) -> Callable[[], Any]:
    """One inference of *x* with *client*, as a closure (each thread makes its own: tritonclient's is not shared)."""
    if client == "tritonclient":
        import tritonclient.http as http

        conn = http.InferenceServerClient(base.split("://", 1)[1], connection_timeout=30, network_timeout=30)
        tensor = http.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        return lambda: conn.infer(model, [tensor]).as_numpy("output")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pytest_mlperf.backends import BackendOptions, create_backend

    options = BackendOptions(extra=(("binary", "false" if client == "ours-json" else "true"),))
    backend = create_backend("remote", f"kserve-v2+{base}/models/{model}", options)
    return lambda: backend.run(x)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", required=True, choices=("ours", "ours-json", "ours-grpc", "tritonclient"))
    parser.add_argument("--base", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--shape", default="1,8,8")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    x = np.random.default_rng(0).random((args.batch, *map(int, args.shape.split(","))), dtype=np.float32)
    latencies: list[list[float]] = [[] for _ in range(args.threads)]
    window: list[float] = []
    # The window opens once every thread is warm: the barrier's action runs once, before any thread goes on.
    ready = threading.Barrier(args.threads + 1, action=lambda: window.append(time.perf_counter() + args.seconds))

    def loop(n: int) -> None:
        # Each thread makes and warms up its own client: tritonclient's gevent connection belongs to its thread.
        call, mine = make_call(args.client, args.base, args.model, x), latencies[n]
        call()
        ready.wait()
        stop = window[0]
        while (start := time.perf_counter()) < stop:
            call()
            mine.append(time.perf_counter() - start)

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(args.threads)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = window[0] - args.seconds
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    flat = np.asarray([v for mine in latencies for v in mine])
    print(json.dumps({
        "client": args.client, "threads": args.threads, "batch": args.batch, "requests": int(flat.size),
        "seconds": round(elapsed, 3), "rps": round(flat.size / elapsed, 1),
        "samples_per_s": round(flat.size * args.batch / elapsed, 1),
        "p50_ms": round(float(np.percentile(flat, 50)) * 1e3, 3),
        "p90_ms": round(float(np.percentile(flat, 90)) * 1e3, 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
