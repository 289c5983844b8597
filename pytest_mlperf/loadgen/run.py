"""The only importer of mlperf_loadgen: builds TestSettings/LogSettings and runs one LoadGen test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlperf_loadgen as lg
import numpy as np

from pytest_mlperf import signals
from pytest_mlperf.datasets.base import Dataset
from pytest_mlperf.errors import InferenceError, LoadGenError, LoadGenStalled
from pytest_mlperf.loadgen.limits import SETTINGS_BOUNDS, settings_problems
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
        bound = SETTINGS_BOUNDS.get(key)
        if bound is not None and not bound.contains(float(value)):
            raise LoadGenError(f"{spec.scenario} {spec.mode}: {key} = {value} is outside {bound.text()}; not started")
        setattr(settings, key, value)
    # The files and the values together decide what LoadGen builds: check the whole before it allocates a query.
    problems = settings_problems(spec.scenario, spec.mode, {key: getattr(settings, key) for key in SETTINGS_BOUNDS})
    if problems:
        raise LoadGenError(
            f"{spec.scenario} {spec.mode}: LoadGen was not started: {'; '.join(problems)} (from mlperf.conf"
            f"{', ' + str(spec.user_conf) if spec.user_conf else ''} and the plugin's options)"
        )
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
    stall_timeout_s: float = 600.0,
    audit_config: Path | None = None,
) -> RunOutcome:
    """Run one LoadGen test writing its logs to *log_dir*.

    SIGINT or SIGTERM during the run drains LoadGen (the SUT answers at once), releases it and raises
    KeyboardInterrupt; the run's log folder is renamed to ``<name>.interrupted``. A SUT that answers nothing for
    *stall_timeout_s* while samples wait fails the run the same way (LoadGenStalled when LoadGen cannot end).
    *audit_config* (a compliance test's) is read by path; without one LoadGen is given no name, so it never
    looks for an ``audit.config`` in the working directory.
    """
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
    done = threading.Event()

    def target() -> None:
        try:
            lg.StartTestWithLogSettings(sut_handle, qsl_handle, settings, log_settings,
                                        str(audit_config.resolve()) if audit_config is not None else "")
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    # StartTest runs in a thread so that the main thread can watch for signals. They are held while LoadGen runs:
    # a KeyboardInterrupt raised inside a wait could leave LoadGen running under objects being destroyed.
    runner = threading.Thread(target=target, name="mlperf-loadgen", daemon=True)
    held = signals.Held()
    started = False
    with held:  # a signal during the release below is held too, and acted on once it is done
        try:
            sut.start()
            runner.start()
            started = True
            stalled = False
            while not done.wait(POLL_S) and not held.received:
                if sut.stalled(stall_timeout_s):
                    stalled = True
                    break
            if stalled:
                stall = InferenceError(
                    f"backend {sut.backend.name} answered none of the {sut.issued_samples - sut.answered_samples} "
                    f"waiting samples for {stall_timeout_s:g} s (--mlperf-stall-timeout-s): a call into the engine "
                    "does not return"
                )
                sut.error = sut.error or stall
            if held.received or stalled:
                drain(sut, done, held)
        finally:
            released = not started or done.is_set()
            if released:
                _release(sut, runner, sut_handle, qsl_handle, log_dir)
    if not released:
        why = held.received[0] if held.received else "its engine stalled"
        signals.abandon(
            (sut, runner, sut_handle, qsl_handle, settings, log_settings),
            f"LoadGen was still running {DRAIN_TIMEOUT_S:.0f} s after {why} (it cannot stop a run early: a Server "
            "run waits for each query's scheduled time, and a stalled engine never answers), so the process exits "
            f"without tearing it down; the unfinished run's logs are in {interrupted_dir(log_dir)}",
        )
    if held.received:
        mark_interrupted(log_dir)
        raise KeyboardInterrupt(
            f"{held.received[0]} during a LoadGen run; its logs are kept in {interrupted_dir(log_dir)}, the runs "
            "that finished before are in the results"
        )
    if not released:  # stalled: this session can run LoadGen no more
        mark_interrupted(log_dir)
        raise LoadGenStalled(
            f"{sut.error}; LoadGen cannot finish this run nor start another one, so the session ends here "
            f"(the run's logs: {interrupted_dir(log_dir)})"
        ) from sut.error
    if failure:
        raise LoadGenError(f"LoadGen failed while writing {log_dir}: {failure[0]}") from failure[0]
    return RunOutcome(log_dir=log_dir, error=sut.error)


#: How often the main thread looks at LoadGen's thread and at held signals.
POLL_S = 0.05
#: How long an interrupted run may take to finish once the SUT answers at once. SingleStream, MultiStream and
#: Offline then end in well under a second; a Server run waits for each query's scheduled time and may not. It
#: stays below GitHub's 7.5 s between its SIGINT and SIGTERM, so the session still writes its results in time.
DRAIN_TIMEOUT_S = 5.0
#: How long LoadGen's thread may take to return once it has signalled its end.
JOIN_TIMEOUT_S = 30.0


def drain(sut: BaseSUT, done: threading.Event, held: signals.Held) -> None:
    """After a signal: the SUT answers every query at once, and LoadGen gets DRAIN_TIMEOUT_S to finish its run.

    A further signal ends the wait at once (a second Ctrl-C, or GitHub's SIGTERM): the caller then abandons it.
    """
    sut.abort()
    seen = len(held.received)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while not done.wait(POLL_S) and len(held.received) == seen and time.monotonic() < deadline:
        pass


def _release(sut: BaseSUT, runner: threading.Thread, sut_handle: Any, qsl_handle: Any, log_dir: Path) -> None:
    """Stop the SUT's threads and destroy LoadGen's handles, only once LoadGen's own thread has ended."""
    if runner.ident is not None:
        runner.join(JOIN_TIMEOUT_S)
    if runner.is_alive():  # StartTest returned, so this is the interpreter, not LoadGen: say so, do not destroy
        raise LoadGenError(
            f"LoadGen's thread did not end within {JOIN_TIMEOUT_S:.0f} s after its run writing {log_dir} returned"
        )
    try:
        sut.stop()
    finally:
        lg.DestroyQSL(qsl_handle)
        lg.DestroyFastSUT(sut_handle)


def interrupted_dir(log_dir: Path) -> Path:
    """Where an interrupted run's logs go, so that nothing reads them as a finished run's."""
    return log_dir.with_name(log_dir.name + ".interrupted")


def mark_interrupted(log_dir: Path) -> None:
    """Rename the interrupted run's log folder to ``<name>.interrupted`` (replacing an older one)."""
    import shutil

    target = interrupted_dir(log_dir)
    try:
        if target.exists():
            shutil.rmtree(target)
        log_dir.rename(target)
    except OSError:
        pass  # best effort: an interrupt must not turn into a second error; the run is not recorded either way
