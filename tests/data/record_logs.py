"""Record real LoadGen logs, one folder per case, as golden inputs for the log parser tests.

Run it by hand when LoadGen changes (it is not a test and is not collected):

    python tests/data/record_logs.py            # every case
    python tests/data/record_logs.py server_invalid offline_valid

Each case runs the installed ``mlperf_loadgen`` against a tiny in-memory SUT whose "inference" is a sleep
followed by an int32 "argmax" answer, so the recorded files are what LoadGen really writes. The huge
``loadgen_file_sha1`` line (a hash of every LoadGen source file, about 3 kB) is dropped from the detail logs
to keep the fixtures small; nothing in ``pytest_mlperf.loadgen.logs`` reads it. ``accuracy_conflict`` is
hand-made (see tests/data/logs/README.md); this script does not write it.
"""

from __future__ import annotations

import argparse
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mlperf_loadgen as lg
import numpy as np
import numpy.typing as npt

LOGS_DIR = Path(__file__).resolve().parent / "logs"
KEPT_FILES = ("mlperf_log_detail.txt", "mlperf_log_summary.txt", "mlperf_log_accuracy.json")
DROPPED_KEYS = ('"key": "loadgen_file_sha1"',)
SAMPLE_COUNT = 64
CLASSES = 10


@dataclass(frozen=True)
class Case:
    """One recorded run: the scenario, mode, how slow the fake SUT is, and the LoadGen settings to change."""

    scenario: str
    mode: str
    sample_cost_s: float
    settings: dict[str, float | int] = field(default_factory=dict)
    perf_sample_count: int = SAMPLE_COUNT


# Durations are kept short (300 ms) so that recording everything takes seconds; each INVALID case breaks one
# rule for the reason its name says, with everything else as in the VALID case.
CASES: dict[str, Case] = {
    "singlestream_valid": Case(
        "SingleStream",
        "PerformanceOnly",
        0.0005,
        {"min_duration_ms": 300, "min_query_count": 100, "single_stream_expected_latency_ns": 500_000},
    ),
    # An expected latency 1000x too high makes LoadGen generate only min_query_count queries, which the SUT
    # answers in far less than min_duration: "min duration not met".
    "singlestream_invalid": Case(
        "SingleStream",
        "PerformanceOnly",
        0.0005,
        {"min_duration_ms": 300, "min_query_count": 100, "single_stream_expected_latency_ns": 500_000_000},
    ),
    # A max_query_count below min_query_count stops the run early: "min queries not met".
    "singlestream_min_queries": Case(
        "SingleStream",
        "PerformanceOnly",
        0.0005,
        {
            "min_duration_ms": 50,
            "min_query_count": 200,
            "max_query_count": 150,
            "single_stream_expected_latency_ns": 500_000,
        },
    ),
    # 662 queries is the fewest for which MultiStream early stopping can give a p99 estimate.
    "multistream_valid": Case(
        "MultiStream",
        "PerformanceOnly",
        0.00005,
        {"min_duration_ms": 600, "min_query_count": 662, "multi_stream_expected_latency_ns": 400_000},
    ),
    # As singlestream_invalid: 662 queries of ~0.5 ms end well before the 600 ms minimum.
    "multistream_invalid": Case(
        "MultiStream",
        "PerformanceOnly",
        0.00005,
        {"min_duration_ms": 600, "min_query_count": 662, "multi_stream_expected_latency_ns": 400_000_000},
    ),
    # Server early stopping needs a few hundred queries even when none is over the latency target.
    "server_valid": Case(
        "Server",
        "PerformanceOnly",
        0.0002,
        {
            "min_duration_ms": 300,
            "min_query_count": 600,
            "server_target_qps": 2000,
            "server_target_latency_ns": 20_000_000,
        },
    ),
    # 1 ms of work per sample at 2000 queries/s overloads the SUT: the queue, and the latency, only grow.
    "server_invalid": Case(
        "Server",
        "PerformanceOnly",
        0.001,
        {
            "min_duration_ms": 300,
            "min_query_count": 600,
            "server_target_qps": 2000,
            "server_target_latency_ns": 20_000_000,
        },
    ),
    "offline_valid": Case(
        "Offline",
        "PerformanceOnly",
        0.001,
        {"min_duration_ms": 300, "offline_expected_qps": 1000},
    ),
    # Expecting 100 samples/s, LoadGen issues 100 samples (its floor), done in ~100 ms: "min duration not met".
    "offline_invalid": Case(
        "Offline",
        "PerformanceOnly",
        0.001,
        {"min_duration_ms": 300, "offline_expected_qps": 100},
    ),
    "offline_accuracy": Case(
        "Offline",
        "AccuracyOnly",
        0.0001,
        {"min_duration_ms": 300, "offline_expected_qps": 1000},
    ),
    # Logging every response of a performance run whose 16 loaded samples are each issued many times: LoadGen
    # writes the same qsl_idx (with the same bytes) over and over in mlperf_log_accuracy.json.
    "accuracy_duplicates": Case(
        "Offline",
        "PerformanceOnly",
        0.001,
        {"min_duration_ms": 50, "offline_expected_qps": 1000, "accuracy_log_probability": 1.0},
        perf_sample_count=16,
    ),
}


def answers() -> npt.NDArray[np.int32]:
    """The fake model's int32 "argmax" per sample: deterministic, so the tests can check decoded bytes."""
    return (np.arange(SAMPLE_COUNT, dtype=np.int32) * 7 + 3) % CLASSES


class SleepySUT:
    """A SUT whose worker thread "infers" a query by sleeping, then answers from a preallocated array."""

    def __init__(self, sample_cost_s: float) -> None:
        self._cost = sample_cost_s
        self._answers = answers()
        # The buffer must outlive every QuerySamplesComplete call; it lives as long as this object.
        self._base, _ = self._answers.__array_interface__["data"]
        self._queue: queue.SimpleQueue[tuple[list[int], list[int]] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, daemon=True)
        self._worker.start()

    def issue(self, ids: list[int], indices: list[int]) -> None:
        self._queue.put((ids, indices))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join()

    def _work(self) -> None:
        itemsize = self._answers.itemsize
        while (item := self._queue.get()) is not None:
            ids, indices = item
            time.sleep(self._cost * len(ids))
            lg.QuerySamplesComplete(
                [
                    lg.QuerySampleResponse(i, self._base + itemsize * j, itemsize)
                    for i, j in zip(ids, indices, strict=True)
                ]
            )


def _keep_in_memory(_indices: list[int]) -> None:
    """QSL load/unload callback: the answers array is always in memory, so there is nothing to do."""


def record(name: str, case: Case, dest_root: Path) -> None:
    """Run one case under LoadGen and copy the kept log files into ``dest_root/name``."""
    sut = SleepySUT(case.sample_cost_s)
    sut_handle = lg.ConstructFastSUT(sut.issue, sut.flush)
    qsl_handle = lg.ConstructQSL(SAMPLE_COUNT, case.perf_sample_count, _keep_in_memory, _keep_in_memory)
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, case.scenario)
    settings.mode = getattr(lg.TestMode, case.mode)
    for key, value in case.settings.items():
        setattr(settings, key, value)
    with tempfile.TemporaryDirectory() as tmp:
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = tmp
        log_settings.log_output.copy_summary_to_stdout = False
        log_settings.enable_trace = False
        try:
            lg.StartTestWithLogSettings(sut_handle, qsl_handle, settings, log_settings)
        finally:
            lg.DestroyQSL(qsl_handle)
            lg.DestroySUT(sut_handle)
            sut.close()
        dest = dest_root / name
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for filename in KEPT_FILES:
            text = (Path(tmp) / filename).read_text()
            if filename == "mlperf_log_detail.txt":
                text = "".join(
                    line for line in text.splitlines(keepends=True) if not any(k in line for k in DROPPED_KEYS)
                )
            (dest / filename).write_text(text)
    print(f"recorded {name} -> {dest}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", metavar="CASE", help=f"cases to record (default: all): {', '.join(CASES)}")
    parser.add_argument("--out", type=Path, default=LOGS_DIR, help="folder to write <case>/ into")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    for name in args.cases or CASES:
        record(name, CASES[name], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
