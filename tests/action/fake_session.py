"""A stand-in for ``python -m pytest`` with the plugin: writes a results JSON from the checkout's bench.json.

The Action's tests run it as their "runner" so that A/B orchestration, comparison and reporting are exercised
without LoadGen. It reads ``bench.json`` in the current directory (the checkout being measured):
``{"latency_ms": 1.0, "qps": 2000, "exit": 0, "write": true}``, and appends one JSON line per call to the file
named by ``FAKE_SESSION_LOG`` (cwd and argv), so tests can check the order of base and head sessions. It
echoes ``-k`` and ``--mlperf-mirror`` verbatim, as the real ones may. Its ``--help``
lists ``--mlperf-reuse-load`` unless ``FAKE_SESSION_NO_REUSE_LOAD`` is set (a plugin without that option).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import zlib
from pathlib import Path
from typing import Any

MACHINE = {
    "cpu": "Fake CPU 9000", "cores": 2, "logical_cpus": 2, "memory_bytes": 8 << 30,
    "os": "Linux-6.1-x86_64", "arch": "x86_64", "gpus": [],
}
VERSIONS = {"plugin": "0.1.0", "loadgen": "6.0.17", "onnxruntime": "1.32.0", "python": "3.11.7"}
SETTINGS = {"min_duration_ms": 200, "min_query_count": 100}


def _run(case: str, scenario: str, rng: random.Random, bench: dict[str, Any], repeat: int) -> dict[str, Any]:
    latency_ns = float(bench.get("latency_ms", 1.0)) * 1e6
    qps = float(bench.get("qps", 2000.0))
    samples = sorted(int(rng.gauss(latency_ns, latency_ns * 0.03)) for _ in range(100))
    passed = not bench.get("fail", False)
    return {
        "id": f"suites/test_fake.py::test_fake[{case}]", "repeat": repeat, "model": "fake", "model_sha256": "0" * 64,
        "dataset": {"name": "fake", "count": 100}, "backend": "onnxruntime",
        "backend_options": {"providers": ["CPUExecutionProvider"], "threads": 1, "batch_size": 1},
        "scenario": scenario, "mode": "performance", "profile": "smoke", "synthetic_inputs": False,
        "settings": SETTINGS, "overrides": {"min_duration_ms": 200},
        "metrics": {
            "qps": qps * (1 + rng.uniform(-0.005, 0.005)) if scenario == "Offline" else None,
            "latency_ns": {"mean": latency_ns, "p50": samples[50], "p90": samples[90], "p95": samples[95],
                           "p99": samples[99], "p99.9": samples[99]},
            "accuracy": None,
        },
        "latency_samples_ns": samples if scenario == "SingleStream" else None,
        "thresholds": {"latency_percentile": "p90"}, "valid": True, "passed": passed,
        "reasons": [] if passed else ["p90 latency over the bound"], "log_dir": "logs", "duration_s": 0.1,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mlperf-results", type=Path, required=True)
    parser.add_argument("--mlperf-log-dir", type=Path, required=True)
    # As the plugin: without --mlperf-baseline (which the Action never passes) `auto` runs its minimum, 3.
    parser.add_argument("--mlperf-repeat", type=lambda v: 3 if v == "auto" else int(v), default=1)
    if not os.environ.get("FAKE_SESSION_NO_REUSE_LOAD"):
        parser.add_argument("--mlperf-reuse-load", type=Path, help="reuse each case's load from a results JSON")
    # As pytest and the plugin do, it prints what it was given as it was given: a -k expression, a mirror URL.
    parser.add_argument("-k", dest="keyword")
    parser.add_argument("--mlperf-mirror")
    args, _ = parser.parse_known_args()
    if args.keyword:
        print(f"selected by -k: {args.keyword}")
    if args.mlperf_mirror:
        print(f"assets from the mirror {args.mlperf_mirror}")
    if os.environ.get("FAKE_SESSION_LOG"):
        with open(os.environ["FAKE_SESSION_LOG"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"cwd": os.getcwd(), "argv": sys.argv[1:]}) + "\n")
    bench: dict[str, Any] = json.loads(Path("bench.json").read_text(encoding="utf-8"))
    if bench.get("write", True):
        # Seeded by the output name, so every session differs yet every test run is the same.
        rng = random.Random(zlib.crc32(args.mlperf_results.name.encode()))
        runs = [
            _run(case, scenario, rng, bench, r)
            for r in range(args.mlperf_repeat)
            for case, scenario in (("SingleStream", "SingleStream"), ("Offline", "Offline"))
        ]
        doc = {"schema_version": 1, "datetime": "2026-11-29T13:40:00+00:00", "status": "complete",
               "versions": VERSIONS, "machine": MACHINE, "commit": None, "runs": runs}
        args.mlperf_results.parent.mkdir(parents=True, exist_ok=True)
        args.mlperf_results.write_text(json.dumps(doc), encoding="utf-8")
        args.mlperf_log_dir.mkdir(parents=True, exist_ok=True)
    print(f"fake session in {os.getcwd()}: {len(bench)} settings")
    return int(bench.get("exit", 0))


if __name__ == "__main__":
    sys.exit(main())
