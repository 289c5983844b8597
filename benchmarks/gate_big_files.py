"""How long and how much memory does ``pytest-mlperf compare`` take on two big results files? Prints one table.

    python benchmarks/gate_big_files.py                 # two ~262 MB files (the size of issue 10), minutes
    python benchmarks/gate_big_files.py --mb 40         # two ~40 MB files, well under a minute
    python benchmarks/gate_big_files.py --keep /tmp/big --before /path/to/older/checkout   # before/after

The files are generated, not measured: ``--cases`` SingleStream cases, each repeated until the file reaches the
size asked for, every run holding 20,000 per-query latencies (the most the plugin records) and written with
``indent=2`` as the plugin writes them. The compare CLI then runs in a child process, so that its peak resident
memory (its own ``ru_maxrss``) is its own. ``--before DIR`` also runs the CLI of
another checkout (``PYTHONPATH=DIR``) on the same files, interleaved, for a before/after table. ``--keep DIR``
keeps the files and reuses them on the next call. Nothing asserts: it prints wall time, peak memory and exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gate_noise import ENVELOPE as NOISE_ENVELOPE

SAMPLES_PER_RUN = 20_000
# The generated machine and software of gate_noise.py (the script next to this one), in schema version 2.
ENVELOPE: dict[str, Any] = {**NOISE_ENVELOPE, "schema_version": 2}


def _run(case: int, repeat: int, rng: random.Random, scale: float) -> dict[str, Any]:
    samples = [int(rng.lognormvariate(14.5, 0.1) * scale) for _ in range(SAMPLES_PER_RUN)]
    ordered = sorted(samples)
    return {
        "id": f"benchmarks/gate_big_files.py::test_big[case{case}-SingleStream-performance]", "repeat": repeat,
        "model": "generated", "model_sha256": "0" * 64, "dataset": {"name": "generated", "count": 100},
        "task": {"name": "classification", "metric": "top1", "higher_is_better": True},
        "backend": "onnxruntime", "backend_options": {"threads": 1, "batch_size": 1},
        "scenario": "SingleStream", "mode": "performance", "profile": "smoke", "synthetic_inputs": False,
        "settings": {"min_duration_ms": 1000, "min_query_count": 1000}, "overrides": {},
        "metrics": {"qps": None, "accuracy": None, "latency_ns": {
            "mean": sum(samples) / len(samples), **{k: ordered[int(q * len(ordered))] for k, q in
                                                     (("p50", .5), ("p90", .9), ("p95", .95), ("p99", .99),
                                                      ("p99.9", .999))}}},
        "latency_samples_ns": samples, "thresholds": {"latency_percentile": "p90"}, "valid": True,
        "passed": True, "reasons": [], "log_dir": "logs", "duration_s": 1.0,
    }


def generate(path: Path, megabytes: float, cases: int, seed: int, scale: float) -> int:
    """A results file of about ``megabytes`` MB; returns its number of runs."""
    rng = random.Random(seed)
    one = len(json.dumps({"runs": [_run(0, 0, rng, scale)]}, indent=2))
    total = max(cases, round(megabytes * 1e6 / one))
    runs = [_run(i % cases, i // cases, rng, scale) for i in range(total)]
    path.write_text(json.dumps({**ENVELOPE, "runs": runs}, indent=2) + "\n", encoding="utf-8")
    return total


# The CLI in a child that reports its own peak resident memory on its last stderr line.
_CHILD = (
    "import resource, sys\n"
    "from pytest_mlperf.cli import main\n"
    "code = main(['compare', *sys.argv[1:]])\n"
    "print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def measure(argv: list[str], checkout: Path | None) -> tuple[float, float, int, str]:
    """Wall seconds, peak resident MiB and exit code of one compare CLI run in a child process."""
    # `python -c` puts its working directory first on sys.path: run in the checkout whose CLI is measured.
    root = checkout or Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, *argv], env=env, cwd=root, capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - start
    err = proc.stderr.strip().splitlines()
    peak = float(err[-1].split()[1]) / 1024 if err and err[-1].startswith("peak_kib") else float("nan")
    lines = (proc.stdout.strip().splitlines() or err or [""])
    return wall, peak, proc.returncode, lines[0][:90]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=262.0, help="size of each file in MB (default 262)")
    parser.add_argument("--cases", type=int, default=40, help="distinct cases (default 40)")
    parser.add_argument("--keep", type=Path, help="keep the generated files in this folder (and reuse them)")
    parser.add_argument("--before", type=Path, help="also run the compare CLI of this checkout, for comparison")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="gate-big-"))
    folder.mkdir(parents=True, exist_ok=True)
    base, head = folder / "base.json", folder / "head.json"
    if not (args.keep and base.is_file() and head.is_file()):
        start = time.perf_counter()
        generate(base, args.mb, args.cases, 1, 1.0)
        generate(head, args.mb, args.cases, 2, 1.0)
        print(f"generated in {time.perf_counter() - start:.0f} s under {folder}")
    print(f"2 files of {base.stat().st_size / 1e6:.0f} MB")
    print(f"{'checkout':<10} {'wall s':>8} {'peak MiB':>9} {'exit':>5}  first line of output")
    sides = [("this", None)] + ([("before", args.before)] if args.before else [])
    for name, checkout in sides:
        wall, peak, code, first = measure([str(base.resolve()), str(head.resolve())], checkout)
        print(f"{name:<10} {wall:>8.1f} {peak:>9.0f} {code:>5}  {first}", flush=True)
    if not args.keep:
        base.unlink()
        head.unlink()
        folder.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
