"""The object behind the ``mlperf`` fixture: turns one test's request into harness cases and enforces verdicts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_mlperf import findpeak
from pytest_mlperf.config import Thresholds, UsageProblem, thresholds_from_marker
from pytest_mlperf.datasets.base import Dataset
from pytest_mlperf.errors import ConfigError, LoadGenStalled, ModelError, ProvisioningError
from pytest_mlperf.harness import Case, Harness
from pytest_mlperf.results import RunResult
from pytest_mlperf.rules import MODES, SCENARIOS
from pytest_mlperf.tasks.base import Task


class CaseRunner:
    """``mlperf.run(model=..., dataset=...)``: scenario and mode default to the test's parametrization."""

    def __init__(
        self,
        *,
        harness: Harness,
        nodeid: str,
        marker_kwargs: Mapping[str, Any],
        cli_thresholds: Thresholds,
        default_scenario: str | None,
        default_mode: str | None,
        backend: str | None = None,
        record: Callable[[dict[str, Any]], None],
        before_performance_run: Callable[[], None] = lambda: None,
        repeat: int = 1,
        gate: Callable[[str, list[dict[str, Any]]], list[str]] | None = None,
        decided: Callable[[str, list[dict[str, Any]]], bool] | None = None,
    ) -> None:
        self._harness = harness
        self.nodeid = nodeid
        self._marker_kwargs = dict(marker_kwargs)
        self._cli = cli_thresholds
        self.scenario = default_scenario
        self.mode = default_mode
        self.backend = backend
        self._record = record
        self._before_performance_run = before_performance_run
        self._repeat = repeat
        self._gate = gate
        # --mlperf-repeat auto: asked after each performance run whether the gate's verdict is settled.
        self._decided = decided
        self.results: list[RunResult] = []

    @property
    def config(self) -> Any:
        return self._harness.config

    def thresholds(self, scenario: str, **kwargs: Any) -> Thresholds:
        """Marker values, then per-call values, then the command line (which always wins)."""
        where = f"{self.nodeid}"
        try:
            marker = thresholds_from_marker(self._marker_kwargs, scenario, where)
            call = thresholds_from_marker(kwargs, scenario, where) if kwargs else Thresholds()
        except UsageProblem as exc:
            raise pytest.UsageError(str(exc)) from None
        return marker.merged(call).merged(self._cli)

    def _compose(self, records: list[dict[str, Any]], *, gate: bool) -> list[str]:
        """Every run's reasons, plus the gate's verdict on the whole case, which the last run carries."""
        reasons = [
            f"repeat {run['repeat']}: {reason}" if len(records) > 1 else str(reason)
            for run in records
            for reason in run["reasons"]
        ]
        if gate and self._gate is not None and records:
            gate_reasons = self._gate(self.nodeid, records)
            if gate_reasons:
                records[-1]["reasons"] = [*records[-1]["reasons"], *gate_reasons]
                records[-1]["passed"] = False
                reasons.extend(gate_reasons)
        return reasons

    def run(
        self,
        model: Path | str,
        dataset: Dataset,
        *,
        scenario: str | None = None,
        mode: str | None = None,
        model_name: str | None = None,
        task: Task | None = None,
        check: bool = True,
        **thresholds: Any,
    ) -> RunResult:
        """Run LoadGen once (``--mlperf-repeat`` times for performance); with ``check`` (default) every unmet
        threshold and every gate regression fails the test, listed together.

        *model* is a local file or any reference the backend understands (a server URL). *task* says what the
        outputs mean and how they are scored; by default the dataset's ``task``, else classification.
        """
        scenario = scenario or self.scenario
        mode = mode or self.mode or "performance"
        if scenario not in SCENARIOS:
            raise pytest.UsageError(
                f"{self.nodeid}: scenario {scenario!r} is not one of {', '.join(SCENARIOS)}; request the "
                "`mlperf_scenario` fixture or pass scenario="
            )
        if mode not in MODES:
            raise pytest.UsageError(f"{self.nodeid}: mode {mode!r} is not one of {', '.join(MODES)}")
        name = model_name or self._marker_kwargs.get("model_name")
        limits = self.thresholds(scenario, **thresholds)
        first = sum(1 for r in self.results if r.scenario == scenario and r.mode == mode)
        records: list[dict[str, Any]] = []

        def collect(result: RunResult) -> None:
            self.results.append(result)
            records.append(result.to_dict())

        # Performance cases run --mlperf-repeat times (repeats first..first+N-1); accuracy is deterministic.
        results: list[RunResult] = []
        finished = False
        try:
            for index in range(self._repeat if mode == "performance" else 1):
                case = Case(
                    id=self.nodeid,
                    model=model,
                    dataset=dataset,
                    scenario=scenario,
                    mode=mode,
                    thresholds=limits,
                    model_name=name,
                    repeat=first + index,
                    task=task,
                    backend=self.backend,
                )
                if mode == "performance":
                    self._before_performance_run()
                bad_input: str | None = None
                try:
                    if mode == "performance" and self.config.find_peak and scenario in findpeak.SEARCHED:
                        # The search makes its own runs; the one that stands for the case carries them all.
                        results.append(findpeak.search(self._harness, case, collect))
                        break
                    results.append(self._harness.run(case, collect))
                except (ModelError, ConfigError, ProvisioningError) as exc:
                    bad_input = f"{scenario} {mode}: {exc}"
                except LoadGenStalled as exc:
                    # LoadGen is still running that run: no other can start in this process (the run is recorded).
                    pytest.exit(f"{self.nodeid}: {exc}", returncode=pytest.ExitCode.INTERRUPTED)
                if bad_input is not None:
                    # Bad input (a model, an option, an asset): the message names it and the fix; a traceback
                    # through our own frames would only bury it. Raised outside the handler, so nothing chains.
                    pytest.fail(bad_input, pytrace=False)
                if mode == "performance" and self._decided is not None and self._decided(self.nodeid, records):
                    break
            finished = True
        finally:
            # The case's verdict is composed here, once, then every run is recorded once: a run that raised is
            # recorded too (its failure is in its reasons), and only complete cases are gated.
            reasons = self._compose(records, gate=finished)
            for run in records:
                self._record(run)
        result = results[-1]
        result.passed = bool(records[-1]["passed"])
        result.reasons = list(records[-1]["reasons"])
        if check and reasons:
            pytest.fail(failure_message(self.nodeid, scenario, mode, len(results), reasons), pytrace=False)
        return result


def failure_message(nodeid: str, scenario: str, mode: str, runs: int, reasons: list[str]) -> str:
    """The case's failure: pytest's short summary shows only the first line, so it carries the first reason and
    how many others follow; every reason is listed below it."""
    first = reasons[0].splitlines()[0] if reasons[0] else "failed"
    others = len(reasons) - 1
    more = f" (+{others} more reason{'s' if others > 1 else ''})" if others else ""
    what = "run" if runs == 1 else f"{runs} runs"
    lines = "\n".join(f"  - {reason}" for reason in reasons)
    return f"{scenario} {mode}: {first}{more}\n{nodeid}: {scenario} {mode} {what} failed:\n{lines}"
