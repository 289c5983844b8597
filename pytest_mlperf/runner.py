"""The object behind the ``mlperf`` fixture: turns one test's request into harness cases and enforces verdicts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_mlperf.config import MODES, SCENARIOS, Thresholds, UsageProblem, thresholds_from_marker
from pytest_mlperf.datasets.base import Dataset
from pytest_mlperf.harness import Case, Harness
from pytest_mlperf.results import RunResult


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
        record: Callable[[dict[str, Any]], None],
        before_performance_run: Callable[[], None] = lambda: None,
    ) -> None:
        self._harness = harness
        self.nodeid = nodeid
        self._marker_kwargs = dict(marker_kwargs)
        self._cli = cli_thresholds
        self.scenario = default_scenario
        self.mode = default_mode
        self._record = record
        self._before_performance_run = before_performance_run
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

    def run(
        self,
        model: Path | str,
        dataset: Dataset,
        *,
        scenario: str | None = None,
        mode: str | None = None,
        model_name: str | None = None,
        check: bool = True,
        **thresholds: Any,
    ) -> RunResult:
        """Run LoadGen once; with ``check`` (default) every unmet threshold fails the test, listed together."""
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
        case = Case(
            id=self.nodeid,
            model=model,
            dataset=dataset,
            scenario=scenario,
            mode=mode,
            thresholds=self.thresholds(scenario, **thresholds),
            model_name=name,
            repeat=sum(1 for r in self.results if r.scenario == scenario and r.mode == mode),
        )

        def record(result: RunResult) -> None:
            self.results.append(result)
            self._record(result.to_dict())

        if mode == "performance":
            self._before_performance_run()
        result = self._harness.run(case, record)
        if check and not result.passed:
            pytest.fail(result.explain(), pytrace=False)
        return result
