"""Session state kept in ``config.stash``: the harness, collected runs and the results file they go to."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pytest

from pytest_mlperf.config import RunConfig
from pytest_mlperf.errors import MLPerfWarning
from pytest_mlperf.harness import Harness
from pytest_mlperf.results import new_document, write_json_atomic

#: user_properties key under which a test's run travels to the reporting process (xdist-safe).
RUN_PROPERTY = "mlperf_run"


class MLPerfSession:
    """Owns the results document; only the process that writes results (never an xdist worker) keeps runs."""

    def __init__(self, config: RunConfig, rootdir: Path, writes_results: bool) -> None:
        self.config = config
        self.rootdir = rootdir
        self.harness = Harness(config, rootdir)
        self.writes_results = writes_results
        self.document: dict[str, Any] | None = new_document(rootdir) if writes_results else None
        self.affinity: list[int] | None = None
        self.worker: tuple[int, int] | None = None  # (index, count) under pytest-xdist

    @property
    def results_path(self) -> Path:
        path = self.config.results_path
        return path if path.is_absolute() else self.rootdir / path

    @property
    def runs(self) -> list[dict[str, Any]]:
        return self.document["runs"] if self.document is not None else []

    def pin_worker_once(self) -> None:
        """Pin an xdist worker to its own cores before its first performance run (never for other tests)."""
        if self.worker is not None and self.affinity is None:
            self.affinity = pin_worker(*self.worker)

    def add_run(self, run: dict[str, Any]) -> None:
        """Keep a finished run and rewrite the file, so a crash later loses nothing already measured."""
        if self.document is None:
            return
        self.document["runs"].append(run)
        self.flush("partial")

    def flush(self, status: str) -> None:
        if self.document is None:
            return
        self.document["status"] = status
        if self.affinity is not None:
            self.document["machine"]["affinity"] = self.affinity
        try:
            write_json_atomic(self.results_path, self.document)
        except OSError as exc:
            warnings.warn(
                MLPerfWarning(f"could not write results to {self.results_path}: {exc}; check --mlperf-results"),
                stacklevel=1,
            )


    # Hooks: registered as a plugin only in the process that writes results.
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == RUN_PROPERTY and isinstance(value, dict):
                self.add_run(value)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.runs:
            self.flush("interrupted" if exitstatus == pytest.ExitCode.INTERRUPTED else "complete")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.runs:
            return
        from pytest_mlperf.results import runs_table

        terminalreporter.write_sep("-", "mlperf results")
        for line in runs_table(self.runs):
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"results JSON: {self.results_path}")
        terminalreporter.write_line(f"LoadGen logs: {self.harness.log_root}")


def pin_worker(worker_index: int, worker_count: int) -> list[int]:
    """Give this xdist worker its own slice of the cores, so performance runs never share a core."""
    cores = sorted(os.sched_getaffinity(0))
    per = len(cores) // worker_count
    mine = cores[worker_index * per : (worker_index + 1) * per]
    os.sched_setaffinity(0, mine)
    return mine
