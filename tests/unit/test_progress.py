"""The progress meter: an exact count across SUT threads, lines from its own thread, and the option's values."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

from pytest_mlperf.config import UsageProblem
from pytest_mlperf.datasets.base import ArrayDataset, Classification
from pytest_mlperf.progress import Meter, parse_progress
from pytest_mlperf.sut import InlineSUT, SutOptions
from tests.unit.test_sut import Identity


def test_the_meter_reports_the_suts_own_count_of_answered_samples() -> None:
    # A real SUT answering from four threads at once: the meter reads the count the SUT keeps for the stall
    # watchdog, so both see the same number and the hot path pays for one count only.
    dataset = ArrayDataset(np.arange(64, dtype=np.float32).reshape(16, 4), np.zeros(16, np.int64), name="count")
    dataset.load(list(range(16)))
    answered: list[int] = []
    sut = InlineSUT([Identity()], dataset, Classification(topk=1), lambda ids, rows: answered.append(len(ids)),
                    SutOptions(batch_size=1))
    lines: list[str] = []
    meter = Meter("case", 0.1, lines.append)
    meter.follow(lambda: sut.answered_samples)
    threads, calls = 4, 2000
    go = threading.Event()

    def worker() -> None:
        go.wait()
        for i in range(calls):
            sut.issue([i], [i % 16])

    with meter:
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        go.set()
        for t in pool:
            t.join()
        deadline = time.monotonic() + 60
        while len(lines) < 2 and time.monotonic() < deadline:  # wait for the reporter, however slow the machine
            time.sleep(0.05)
    assert meter.completed == sut.answered_samples == threads * calls == sum(answered)
    assert len(lines) >= 2
    counts = [int(re.search(r"([\d,]+) samples completed", line).group(1).replace(",", "")) for line in lines]  # type: ignore[union-attr]
    assert counts == sorted(counts) and counts[-1] <= meter.completed
    assert lines[0].startswith("[mlperf] case: 0:0")


@pytest.mark.parametrize(("raw", "value"), [("auto", 0.0), ("off", None), ("30", 30.0), (" OFF ", None)])
def test_progress_values(raw: str, value: float | None) -> None:
    assert parse_progress(raw) == value


@pytest.mark.parametrize(("raw", "message"), [
    ("often", "'often' is not auto, off or a number of seconds"),
    ("0", "0 is not valid; it must be from 0.1 to 3600 seconds"),
])
def test_bad_progress_values(raw: str, message: str) -> None:
    with pytest.raises(UsageProblem, match=re.escape(f"--mlperf-progress: {message}")):
        parse_progress(raw)
