"""The progress meter: an exact count across SUT threads, lines from its own thread, and the option's values."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from pytest_mlperf.config import UsageProblem
from pytest_mlperf.progress import Meter, parse_progress


def test_concurrent_completions_are_all_counted_and_reported() -> None:
    lines: list[str] = []
    seen: list[int] = []
    meter = Meter("case", 0.1, lines.append)

    def complete(ids: Sequence[int], responses: Any) -> None:
        seen.append(len(ids))  # the wrapped callback still runs, before the count

    counted = meter.wrap(complete)
    threads, calls = 4, 5000
    go = threading.Event()

    def worker() -> None:
        go.wait()
        for _ in range(calls):
            counted([1, 2, 3], None)

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
    assert meter.completed == threads * calls * 3 == sum(seen)
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
