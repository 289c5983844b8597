"""Orderly interrupts: SIGTERM becomes pytest's Ctrl-C, and both are held back while LoadGen runs until it drained.

GitHub cancels a job with SIGINT, then SIGTERM 7.5 s later, then SIGKILL. Python raises KeyboardInterrupt at
whatever bytecode runs when SIGINT arrives; during ``Thread.join`` on Python 3.11 that marks the joined thread as
finished although it still runs (the lock is held by the running thread, so the cleanup path takes it for its own),
and tearing LoadGen down under its running thread crashes the process. SIGTERM's default action kills the process
outright and leaves a half-written results file. So:

- :func:`install_sigterm` (the results-writing pytest process) makes SIGTERM raise KeyboardInterrupt like SIGINT:
  pytest then ends the session as interrupted, writes results and prints its summary.
- :class:`Held` (around one LoadGen run) replaces both handlers with one that only records the signal; the run's
  wait loop sees it, drains LoadGen and raises KeyboardInterrupt from a known point.
- :func:`abandon` is the last resort when LoadGen cannot finish its schedule in time (a Server run sleeps until each
  query's scheduled time and has no way to stop early): its objects are kept alive, never destroyed, and the
  process leaves with ``os._exit`` once pytest has written everything, before the interpreter's teardown could run
  into LoadGen's threads.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

#: The exit status pytest uses for an interrupted session (pytest.ExitCode.INTERRUPTED), without importing pytest.
INTERRUPTED_EXIT = 2

_HELD = (signal.SIGINT, signal.SIGTERM)
_abandoned: list[Any] = []
_exit_status: list[int] = []


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"{signal.Signals(signum).name} received")


def install_sigterm() -> Any:
    """Make SIGTERM an orderly interrupt; returns the handler to restore, or None when nothing was installed.

    Only a default SIGTERM action is replaced (never a handler the user or another tool installed), and only from
    the main thread, where Python allows it.
    """
    if not _in_main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    return signal.SIG_DFL


def restore_sigterm(previous: Any) -> None:
    if previous is not None and _in_main_thread() and signal.getsignal(signal.SIGTERM) is _sigterm_as_interrupt:
        signal.signal(signal.SIGTERM, previous)


class Held:
    """While active, SIGINT and SIGTERM are only counted (``received``); the caller decides when to act on them.

    Outside the main thread Python cannot change handlers: then nothing is held and signals act as before.
    """

    def __init__(self) -> None:
        self.received: list[str] = []
        self._previous: dict[int, Any] = {}

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum).name)

    def __enter__(self) -> Held:
        if _in_main_thread():
            for signum in _HELD:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


def record_exit_status(status: int) -> None:
    """The session's exit status, which an abandoned run's exit uses."""
    _exit_status[:] = [int(status)]


def abandon(objects: Any, message: str) -> None:
    """Keep *objects* (LoadGen's handles, the SUT, its thread) alive to the end, and leave with ``os._exit``.

    The exit happens in an ``atexit`` handler: after pytest has written the results and printed its summary, and
    before the interpreter's teardown, which LoadGen's still running threads would crash.
    """
    if not _abandoned:
        atexit.register(_exit_now, message)
    _abandoned.append(objects)


def _exit_now(message: str) -> None:
    try:
        sys.stdout.flush()
        sys.stderr.write(f"pytest-mlperf: {message}\n")
        sys.stderr.flush()
    finally:
        os._exit(_exit_status[0] if _exit_status else INTERRUPTED_EXIT)
