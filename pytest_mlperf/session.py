"""Session state kept in ``config.stash``: the harness, collected runs and the results file they go to."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_mlperf.config import RunConfig
from pytest_mlperf.errors import MLPerfWarning
from pytest_mlperf.results import JournaledDocument, new_document, portable_log_dir, runs_journal
from pytest_mlperf.rules import AUTO_ROUNDS

if TYPE_CHECKING:
    from pytest_mlperf.harness import Harness

#: user_properties key under which a test's run travels to the reporting process (xdist-safe).
RUN_PROPERTY = "mlperf_run"
#: user_properties key of a case's baseline comparison (the comparison JSON restricted to that case).
COMPARISON_PROPERTY = "mlperf_comparison"
#: user_properties key marking a skipped benchmark case, so the summary can say which suites did not run.
SKIPPED_PROPERTY = "mlperf_skipped"


def comparison_path(results_path: Path) -> Path:
    """Where the session's baseline comparison goes: ``results.json`` -> ``results.comparison.json``."""
    return results_path.with_name(results_path.stem + ".comparison.json")


def comparison_journal(results_path: Path) -> Path:
    """Where each case's comparison is appended until the session ends: ``results.comparison.cases.jsonl``.

    Each line is a whole comparison document of one case, so a crashed session's comparisons stay readable.
    """
    return results_path.with_name(results_path.stem + ".comparison.cases.jsonl")


def gate_reasons(comparison: Mapping[str, Any]) -> list[str]:
    """What fails a case: each regression's message, or the refusal; improvements and missing cases never fail."""
    if comparison.get("verdict") == "refused":
        return [f"baseline comparison refused: {comparison.get('refused_reason')}"]
    return [str(case["message"]) for case in comparison.get("cases", []) if case.get("verdict") == "regression"]


def reported_properties(properties: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """What a case shows to reporters such as ``--junitxml``: its runs' figures as short properties instead of
    the whole run (latency samples included) and the comparison document; a test's own properties are kept."""
    from pytest_mlperf.results import junit_properties

    runs = [value for name, value in properties if name == RUN_PROPERTY and isinstance(value, dict)]
    kept: list[tuple[str, object]] = [
        (name, value) for name, value in properties
        if name not in (RUN_PROPERTY, COMPARISON_PROPERTY, SKIPPED_PROPERTY)
    ]
    for name, value in properties:
        if name == COMPARISON_PROPERTY and isinstance(value, dict):
            kept.append(("mlperf.gate", str(value.get("verdict"))))
    return kept + list(junit_properties(runs))


def skip_reason(report: pytest.TestReport) -> str:
    """The reason pytest recorded for a skipped case, without its ``Skipped: `` prefix."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return str(text).removeprefix("Skipped: ").strip()


def skipped_summary(skips: Mapping[tuple[str, str], int], width: int = 160) -> list[str]:
    """One line per suite file and reason: how many benchmark cases it skipped, and the reason's first line."""
    lines = []
    for (path, reason), count in sorted(skips.items()):
        first = reason.splitlines()[0] if reason else "no reason given"
        more = len(reason.splitlines()) > 1
        if len(first) > width:
            first, more = first[: width - 1] + "…", True
        cases = "case" if count == 1 else "cases"
        tail = " (-rs shows the whole reason)" if more else ""
        lines.append(f"{path}: {count} benchmark {cases} skipped: {first}{tail}")
    return lines


class MLPerfSession:
    """Owns the results document; only the process that writes results (never an xdist worker) keeps runs.

    The plugin is loaded by every pytest run in an environment that has it installed, so nothing costly happens
    here until a benchmark runs: the harness (numpy, LoadGen) and the document's provenance (git, nvidia-smi) are
    made on first use.
    """

    def __init__(
        self, config: RunConfig, rootdir: Path, writes_results: bool, pytestconfig: pytest.Config | None = None
    ) -> None:
        self.config = config
        self.rootdir = rootdir
        self.writes_results = writes_results
        #: The pytest config whose hooks (``pytest_mlperf_update_*``) extend the document; None outside pytest.
        self.pytestconfig = pytestconfig
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._harness: Harness | None = None
        #: One harness per --mlperf-sweep configuration: backends and calibrations differ with the settings.
        self._swept: dict[tuple[tuple[str, str], ...], Harness] = {}
        self._envelope: dict[str, Any] | None = None
        self._runs: list[dict[str, Any]] = []
        self._added: dict[int, dict[str, Any]] = {}
        self._results_file: JournaledDocument | None = None
        self._comparison_file: JournaledDocument | None = None
        self.affinity: list[int] | None = None  # this xdist worker's cores, once pinned
        self.worker: tuple[int, int] | None = None  # (index, count) under pytest-xdist
        self.comparisons: list[dict[str, Any]] = []
        #: Skipped benchmark cases by (suite file, reason).
        self.skips: dict[tuple[str, str], int] = {}
        #: Makes backends; the plugin sets it to the pytest_mlperf_make_backend hook.
        self.make_backend: Callable[[str, Any, Any], Any] | None = None
        #: Output files that could not be written, path -> why: the summary says so and the session fails.
        self.write_failures: dict[Path, str] = {}

    @property
    def harness(self) -> Harness:
        if self._harness is None:
            from pytest_mlperf.harness import Harness

            if self.make_backend is not None:
                self._harness = Harness(self.config, self.rootdir, self.make_backend)
            else:
                self._harness = Harness(self.config, self.rootdir)
            self._attach_progress(self._harness)
        return self._harness

    def _attach_progress(self, harness: Harness) -> None:
        """Progress lines go past pytest's capture onto the terminal (the main process's only: xdist workers
        have none that anyone sees)."""
        if self.pytestconfig is None or self.worker is not None or self.config.progress_s is None:
            return
        from pytest_mlperf.provisioning.assets import TerminalStream

        stream = TerminalStream(self.pytestconfig)

        def write(line: str) -> None:
            stream.write(line + "\n")

        harness.progress_write = write
        harness.progress_tty = stream.isatty()

    def harness_for(self, configuration: tuple[tuple[str, str], ...]) -> Harness:
        """The harness of a --mlperf-sweep configuration (the session's own for none)."""
        if not configuration:
            return self.harness
        if configuration not in self._swept:
            from pytest_mlperf.harness import Harness
            from pytest_mlperf.sweep import apply

            config = apply(self.config, configuration)
            if self.make_backend is not None:
                self._swept[configuration] = Harness(config, self.rootdir, self.make_backend, dict(configuration))
            else:
                self._swept[configuration] = Harness(config, self.rootdir, sweep=dict(configuration))
            self._attach_progress(self._swept[configuration])
        return self._swept[configuration]

    def environment(self) -> dict[str, Any]:
        """This session's envelope (versions, machine, commit), read on first use: the head side's fingerprint."""
        if self._envelope is None:
            envelope = new_document(self.rootdir, self._update_machine) | {"datetime": self.started}
            if self.pytestconfig is not None:
                envelope["invocation"] = invocation(self.pytestconfig)
            self._envelope = {key: value for key, value in envelope.items() if key != "runs"}
        return self._envelope

    def _update_machine(self, machine: dict[str, Any]) -> None:
        if self.pytestconfig is not None:
            self.pytestconfig.hook.pytest_mlperf_update_machine_info(config=self.pytestconfig, machine_info=machine)

    @property
    def gating(self) -> bool:
        return self.config.baseline_document is not None

    def policy(self) -> Any:
        from pytest_mlperf.gate.statistics import GatePolicy

        return GatePolicy(alpha=self.config.alpha, floor=self.config.floor)

    def compare_case(self, case_id: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
        """Compare one case's runs (all its repeats) with the baseline's runs of the same id."""
        from pytest_mlperf.gate.compare import Source, compare_documents
        from pytest_mlperf.gate.statistics import Look

        cfg = self.config
        assert cfg.baseline_document is not None
        head = {**self.environment(), "runs": runs}
        # --mlperf-repeat auto: each number of head runs is one look of the sequential design.
        look = Look(len(runs), AUTO_ROUNDS[0], cfg.repeat) if cfg.adaptive and len(runs) >= AUTO_ROUNDS[0] else None
        return compare_documents(
            [Source(str(cfg.baseline), cfg.baseline_document)],
            [Source("this session", head)],
            self.policy(),
            force=cfg.force_compare,
            ids={case_id},
            force_hint="--mlperf-force-compare",
            look=look,
        )

    def decided(self, case_id: str, runs: list[dict[str, Any]]) -> bool:
        """--mlperf-repeat auto: whether the runs so far settle the case's comparison (then it runs no more)."""
        if len(runs) < AUTO_ROUNDS[0]:
            return False
        sequential = self.compare_case(case_id, runs).get("sequential")
        # A refused or fingerprint-less comparison has no look: more runs would not change it.
        return not isinstance(sequential, dict) or bool(sequential["decided"])

    @property
    def comparison_path(self) -> Path:
        return comparison_path(self.results_path)

    def comparison(self) -> dict[str, Any]:
        from pytest_mlperf.gate.compare import merge_comparisons

        return merge_comparisons(self.comparisons, self.policy())

    def add_comparison(self, comparison: dict[str, Any]) -> None:
        """Keep one case's comparison and append it to the sidecar; the merged file is written at session end."""
        if not self.writes_results:
            return
        self.comparisons.append(comparison)
        if self._comparison_file is None:
            self._comparison_file = JournaledDocument(self.comparison_path, comparison_journal(self.results_path))
        self._append(self._comparison_file, comparison, None, "the comparison")

    @property
    def results_path(self) -> Path:
        path = self.config.results_path
        return path if path.is_absolute() else self.rootdir / path

    @property
    def runs(self) -> list[dict[str, Any]]:
        return self._runs

    def pin_worker_once(self) -> None:
        """Pin an xdist worker to its own cores before its first performance run (never for other tests)."""
        if self.worker is not None and self.affinity is None:
            self.affinity = pin_worker(*self.worker)

    def add_run(self, run: dict[str, Any]) -> None:
        """Keep a finished run and append it to the sidecar, so a crash later loses nothing already measured.

        Appending one line per run (not rewriting the document) keeps the bytes written linear in the runs.
        """
        if not self.writes_results or id(run) in self._added:
            return
        self._added[id(run)] = run  # kept referenced here, so that no later dict can reuse its id
        run = portable_log_dir(run, self.results_path.parent)
        self._runs.append(run)
        if self._results_file is None:
            self._results_file = JournaledDocument(self.results_path, runs_journal(self.results_path))
        self._append(self._results_file, run, self.environment(), "results")

    def _failed(self, path: Path, message: str) -> None:
        self.write_failures.setdefault(path, message)
        warnings.warn(MLPerfWarning(message), stacklevel=2)

    def _append(
        self, file: JournaledDocument, item: dict[str, Any], envelope: dict[str, Any] | None, what: str
    ) -> None:
        """A failed write warns and the session goes on (the runs stay in memory for the end), but it will fail."""
        try:
            if not file.started:
                file.start(envelope)
            file.append(item)
        except OSError as exc:
            self._failed(file.path, f"could not write {what} to {file.path}: {exc}; check --mlperf-results")

    def _finish(self, file: JournaledDocument, document: dict[str, Any], what: str) -> None:
        """On failure the partial file and its journal stay (readers still get every run), and the session fails."""
        try:
            file.finish(document)
        except OSError as exc:
            self._failed(file.path, f"could not write {what} to {file.path}: {exc}; check --mlperf-results")
        except (TypeError, ValueError) as exc:  # serialised before writing, so nothing was written
            self._failed(
                file.path,
                f"could not write {what} to {file.path}: {exc}; a pytest_mlperf_update_results_json hook "
                "added a value JSON cannot hold. The partial file and its runs file keep every run",
            )

    def replace_stale(self) -> None:
        """Take over the results file an earlier session left at this path, before any test runs.

        Whatever reads ``--mlperf-results`` after this session must find this session's runs, or none: never an
        older session's, read as new (say, after a session that selected no benchmark, or was killed before its
        first run). So an existing file is replaced at once by this session's envelope (status ``partial``, no
        runs), which the end of the session completes, and an older comparison is removed. Nothing is written
        where no file exists: the plugin stays silent in a project that does not benchmark.
        """
        if not self.writes_results:
            return
        stale_comparison = [comparison_path(self.results_path), comparison_journal(self.results_path)]
        try:
            for path in stale_comparison:
                path.unlink(missing_ok=True)
        except OSError as exc:
            warnings.warn(
                MLPerfWarning(f"could not remove the earlier session's {path}: {exc}; do not read it as this one's"),
                stacklevel=1,
            )
        if self.results_path.exists() or runs_journal(self.results_path).exists():
            self._results_file = JournaledDocument(self.results_path, runs_journal(self.results_path))
            try:
                self._results_file.start(self.environment())
            except OSError as exc:
                warnings.warn(
                    MLPerfWarning(
                        f"could not replace the earlier session's {self.results_path}: {exc}; it still holds that "
                        "session's runs. Check --mlperf-results"
                    ),
                    stacklevel=1,
                )

    def finish(self, status: str) -> None:
        """Write the whole results document (after the results-JSON hook) and the merged comparison."""
        if self._results_file is not None and self._results_file.started:
            document = {**self.environment(), "status": status, "runs": self._runs}
            if self.pytestconfig is not None:
                self.pytestconfig.hook.pytest_mlperf_update_results_json(config=self.pytestconfig, document=document)
            self._finish(self._results_file, document, "results")
        if self.comparisons and self._comparison_file is not None:
            self._finish(self._comparison_file, self.comparison(), "the comparison")

    # Hooks: registered as a plugin only in the process that writes results.
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and any(name == SKIPPED_PROPERTY for name, _ in report.user_properties):
            key = (report.nodeid.split("::", 1)[0], skip_reason(report))
            self.skips[key] = self.skips.get(key, 0) + 1
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == RUN_PROPERTY and isinstance(value, dict):
                self.add_run(value)
            elif name == COMPARISON_PROPERTY and isinstance(value, dict):
                self.add_comparison(value)

    def salvage(self, user_properties: list[tuple[str, object]]) -> None:
        """Keep the runs of a test that has no call report: Ctrl-C ended it, and pytest reports no such test.

        Called when the test's ``mlperf`` fixture is torn down, which after an interrupt happens at session end,
        before the results are written; runs already taken from a report are not added twice.
        """
        for name, value in user_properties:
            if name == RUN_PROPERTY and isinstance(value, dict):
                self.add_run(value)

    def close(self) -> None:
        """Release the session's backends (GPU memory, server connections)."""
        if self._harness is not None:
            self._harness.close()
        swept, self._swept = self._swept, {}
        for harness in swept.values():
            harness.close()

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.replace_stale()

    @pytest.hookimpl(trylast=True)  # after pytest's own teardown of the interrupted test (see salvage)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from pytest_mlperf import signals

        signals.record_exit_status(exitstatus)
        self.finish("interrupted" if exitstatus == pytest.ExitCode.INTERRUPTED else "complete")
        if self.write_failures and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            # Not 1, the gate's "regression": the measurements may be fine, their record is what is missing.
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.skips:
            terminalreporter.write_sep("-", "mlperf skipped suites")
            for line in skipped_summary(self.skips):
                terminalreporter.write_line(line)
        if not self.runs:
            return
        from pytest_mlperf.results import runs_table

        terminalreporter.write_sep("-", "mlperf results")
        for line in runs_table(self.runs):
            terminalreporter.write_line(line)
        from pytest_mlperf.findpeak import summary_lines

        peaks = summary_lines(self.runs)
        if peaks:
            terminalreporter.write_sep("-", "mlperf find-peak")
            for line in peaks:
                terminalreporter.write_line(line)
        from pytest_mlperf.sweep import report

        pareto = report(self.runs)
        if pareto:
            terminalreporter.write_sep("-", "mlperf sweep: Pareto report")
            for line in pareto:
                terminalreporter.write_line(line)
        self._write_outputs(terminalreporter, "results JSON", self.results_path)
        terminalreporter.write_line(f"LoadGen logs: {self.harness.log_root}")
        if self.gating:
            from pytest_mlperf.gate.render import render_text

            terminalreporter.write_sep("-", f"mlperf baseline comparison vs {self.config.baseline}")
            if not self.comparisons:
                terminalreporter.write_line("no case was compared")
                return
            for line in render_text(self.comparison()).splitlines():
                terminalreporter.write_line(line)
            self._write_outputs(terminalreporter, "comparison JSON", self.comparison_path)

    def _write_outputs(self, terminalreporter: Any, what: str, path: Path) -> None:
        """Name an output file only if it was written; otherwise say why not, in red."""
        failure = self.write_failures.get(path)
        if failure is None and path.is_file():
            terminalreporter.write_line(f"{what}: {path}")
            return
        reason = failure or "it does not exist after the session"
        terminalreporter.write_line(f"{what}: NOT written: {reason}; the session fails", red=True)


def invocation(config: pytest.Config) -> dict[str, Any]:
    """How pytest was started: the command-line arguments, the directory and the ini file (what
    ``pytest-mlperf reproduce`` rebuilds a command line from)."""
    from pytest_mlperf.redact import redact

    params = config.invocation_params
    inipath = config.inipath
    # A mirror or server URL on the command line may carry credentials; the results file is shared.
    return {"args": [redact(str(arg)) for arg in params.args], "dir": str(params.dir),
            "rootdir": str(config.rootpath), "inifile": str(inipath) if inipath is not None else None}


def pin_worker(worker_index: int, worker_count: int) -> list[int]:
    """Give this xdist worker its own slice of the cores, so performance runs never share a core."""
    from pytest_mlperf.provenance import pin_to, usable_cpus

    cores = usable_cpus()
    per = len(cores) // worker_count
    mine = cores[worker_index * per : (worker_index + 1) * per]
    if not pin_to(mine):
        import warnings

        warnings.warn(
            MLPerfWarning(
                f"xdist worker {worker_index} cannot be pinned to its own cores on this OS; its performance runs "
                "may share cores with other workers. Use -n 0 for uncontended numbers."
            ),
            stacklevel=2,
        )
        return cores
    return mine
