"""Progress of a long LoadGen run: elapsed time, samples completed and the current rate, a line at a time.

The count comes from the one place every response goes to LoadGen (the SUT's completion callback): LoadGen's
Python bindings expose no counter of their own (``python_api.cc`` binds only the constructors, ``StartTest`` and
``QuerySamplesComplete``). Each SUT thread adds the size of the batch it completes to a cell only it writes, so
the count costs one addition per completion call (not per sample), takes no lock, and loses nothing. A reporter
thread wakes once per interval, sums the cells and writes a line; nothing runs in the SUT's threads but the add.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

#: ``--mlperf-progress auto``: a line every 10 s on a terminal, every minute in a CI log (not a terminal).
TTY_INTERVAL_S, LOG_INTERVAL_S = 10.0, 60.0
#: The range of an explicit interval.
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.1, 3600.0


def parse_progress(raw: Any, source: str = "--mlperf-progress") -> float | None:
    """``auto`` (0.0: decided by the terminal), ``off`` (None) or seconds between lines."""
    from pytest_mlperf.config import UsageProblem

    text = str(raw).strip().lower()
    if text == "auto":
        return 0.0
    if text == "off":
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise UsageProblem(f"{source}: {raw!r} is not auto, off or a number of seconds, e.g. 30") from None
    if not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise UsageProblem(
            f"{source}: {seconds:g} is not valid; it must be from {MIN_INTERVAL_S:g} to {MAX_INTERVAL_S:g} seconds"
        )
    return seconds


class Meter:
    """Reports a run's completed samples every ``interval_s`` while used as a context manager. The count is the
    SUT's own (``answered_samples``, which the stall watchdog reads too): the meter adds nothing to the hot path."""

    def __init__(self, label: str, interval_s: float, write: Callable[[str], None]) -> None:
        self.label = label
        self.interval_s = interval_s
        self._write = write
        self._source: Callable[[], int] = lambda: 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self.lines: list[str] = []

    def follow(self, source: Callable[[], int]) -> None:
        """Count what *source* says has been answered (a SUT's ``answered_samples``, read without a lock: one
        int read is atomic, and a report a sample behind is fine)."""
        self._source = source

    @property
    def completed(self) -> int:
        return self._source()

    def _report(self) -> None:
        last_t, last_n = self._started, 0
        while not self._stop.wait(self.interval_s):
            now, count = time.monotonic(), self.completed
            rate = (count - last_n) / (now - last_t) if now > last_t else 0.0
            elapsed = int(now - self._started)
            line = (f"[mlperf] {self.label}: {elapsed // 60}:{elapsed % 60:02d} elapsed, {count:,} samples completed, "
                    f"{rate:,.1f} samples/s over the last {now - last_t:.1f} s")
            self.lines.append(line)
            self._write(line)
            last_t, last_n = now, count

    def __enter__(self) -> Meter:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._report, name="mlperf-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
