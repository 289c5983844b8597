"""The only importer of mlperf_loadgen: builds TestSettings/LogSettings and runs one LoadGen test."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlperf_loadgen as lg
import numpy as np

from pytest_mlperf.datasets.base import Dataset
from pytest_mlperf.errors import LoadGenError
from pytest_mlperf.sut import BaseSUT, Complete

if TYPE_CHECKING:
    from pytest_mlperf.tasks.base import Responses

#: LoadGen's conf_type for a user file read after mlperf.conf (see build_settings).
USER_CONF_TYPE = 2

_MODES = {"performance": lg.TestMode.PerformanceOnly, "accuracy": lg.TestMode.AccuracyOnly}


def version() -> str:
    """The installed LoadGen's version, as the results JSON records it."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("mlcommons-loadgen")
    except PackageNotFoundError:  # built from source
        return "unknown"


@dataclass(frozen=True)
class SettingsSpec:
    """What to ask LoadGen for; ``values`` are TestSettings attributes set after the config files."""

    scenario: str
    mode: str
    model_name: str = "*"
    official_conf: bool = True  # load LoadGen's built-in mlperf.conf for model_name first
    user_conf: Path | None = None
    values: Mapping[str, Any] = field(default_factory=dict)


def build_settings(spec: SettingsSpec) -> Any:
    """A ``TestSettings`` for *spec*: mlperf.conf, then user.conf, then explicit values."""
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, spec.scenario)
    settings.mode = _MODES[spec.mode]
    # conf_type=0 reloads the built-in mlperf.conf each time; LoadGen otherwise loads it once per process.
    if spec.official_conf:
        rc = settings.FromConfig("", spec.model_name, spec.scenario, 0)
        if rc != 0:
            raise LoadGenError(f"LoadGen could not apply its built-in mlperf.conf for {spec.model_name!r} (rc={rc})")
    if spec.user_conf is not None:
        # conf_type 1 counts user.conf loads in a static, process-wide counter: from the second case of a session on,
        # LoadGen logs "Multiple conf files are used" (an error) although each run reads mlperf.conf and one
        # user.conf, exactly as an official run does. conf_type 2 reads the same file with the same rules (the seeds
        # stay mlperf.conf's), without the counter and without reloading mlperf.conf, which was applied just above.
        rc = settings.FromConfig(str(spec.user_conf), spec.model_name, spec.scenario, USER_CONF_TYPE)
        if rc != 0:
            raise LoadGenError(
                f"LoadGen refused user.conf {spec.user_conf} (rc={rc}); check the `model.scenario.key = value` lines"
            )
    for key, value in spec.values.items():
        if not hasattr(settings, key):
            raise LoadGenError(f"LoadGen TestSettings has no field {key!r}")
        setattr(settings, key, value)
    return settings


def _complete(ids: Sequence[int], responses: Responses | None) -> None:
    if responses is None:
        lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])
        return
    if isinstance(responses, np.ndarray):
        # The fast path: one contiguous block, one fixed-size row per sample.
        ptr = responses.ctypes.data
        stride = responses.strides[0]
        lg.QuerySamplesComplete([lg.QuerySampleResponse(qid, ptr + j * stride, stride) for j, qid in enumerate(ids)])
        return
    # Ragged responses: one buffer per sample. ``buffers`` keeps every one alive until LoadGen has copied it.
    buffers = [np.ascontiguousarray(r) for r in responses]
    lg.QuerySamplesComplete(
        [
            lg.QuerySampleResponse(qid, b.ctypes.data if b.nbytes else 0, b.nbytes)
            for qid, b in zip(ids, buffers, strict=True)
        ]
    )


#: The completion callback SUTs use; re-exported so nothing else imports mlperf_loadgen.
complete: Complete = _complete


@dataclass
class RunOutcome:
    """What happened in one StartTest call; the logs themselves are parsed by logs.py."""

    log_dir: Path
    error: BaseException | None


def run_test(
    make_sut: Callable[[Complete], BaseSUT],
    dataset: Dataset,
    spec: SettingsSpec,
    log_dir: Path,
    *,
    enable_trace: bool = False,
    audit_config: Path | None = None,
) -> RunOutcome:
    """Run one LoadGen test writing its logs to *log_dir*; Ctrl-C drains the SUT and re-raises.

    *audit_config* (a compliance test's) is read by path; without one LoadGen is given no name, so it never
    looks for an ``audit.config`` in the working directory."""
    settings = build_settings(spec)
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(log_dir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = enable_trace
    log_dir.mkdir(parents=True, exist_ok=True)

    sut = make_sut(complete)

    def guarded(callback: Callable[[Sequence[int]], None]) -> Callable[[Sequence[int]], None]:
        # An exception must not escape into LoadGen's C++ thread (it would abort the interpreter): keep it as
        # the run's error, which also makes the SUT answer every query empty so that LoadGen can finish.
        def call(indices: Sequence[int]) -> None:
            try:
                callback(indices)
            except BaseException as exc:
                if sut.error is None:
                    sut.error = exc

        return call

    sut_handle = lg.ConstructFastSUT(sut.issue, sut.flush)
    qsl_handle = lg.ConstructQSL(
        dataset.total_count, dataset.performance_count, guarded(dataset.load), guarded(dataset.unload)
    )
    failure: list[BaseException] = []

    def target() -> None:
        try:
            lg.StartTestWithLogSettings(sut_handle, qsl_handle, settings, log_settings,
                                        str(audit_config.resolve()) if audit_config is not None else "")
        except BaseException as exc:
            failure.append(exc)

    sut.start()
    # StartTest runs in a thread so that Ctrl-C reaches the main thread during a long run.
    runner = threading.Thread(target=target, name="mlperf-loadgen", daemon=True)
    try:
        runner.start()
        while runner.is_alive():
            runner.join(0.05)
    except KeyboardInterrupt:
        sut.abort()
        runner.join()
        raise
    finally:
        sut.stop()
        lg.DestroyQSL(qsl_handle)
        lg.DestroyFastSUT(sut_handle)
    if failure:
        raise LoadGenError(f"LoadGen failed while writing {log_dir}: {failure[0]}") from failure[0]
    return RunOutcome(log_dir=log_dir, error=sut.error)
