"""Runs one benchmark case end to end: backend, calibration, LoadGen, log parsing, scoring and verdict."""

from __future__ import annotations

import contextlib
import hashlib
import numbers
import shutil
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_mlperf import calibrate, progress
from pytest_mlperf.backends import BACKENDS, create_backend, engine_for
from pytest_mlperf.backends.base import Backend, BackendOptions
from pytest_mlperf.config import RunConfig, Thresholds, options_for
from pytest_mlperf.datasets.base import Dataset, dataset_digest
from pytest_mlperf.errors import InferenceError, LoadGenError, MLPerfError, MLPerfWarning, ModelError
from pytest_mlperf.fileio import file_sha256
from pytest_mlperf.loadgen import logs, trace
from pytest_mlperf.loadgen import run as loadgen
from pytest_mlperf.loadgen.userconf import applied_user_conf, check_user_conf
from pytest_mlperf.provenance import usable_cpus
from pytest_mlperf.results import FAILED_REASON, Metrics, RunResult, case_dirname
from pytest_mlperf.rules import LATENCY_PERCENTILE
from pytest_mlperf.sut import BaseSUT, Complete, SutOptions, make_sut
from pytest_mlperf.tasks.base import AccuracyCoverageError, Task
from pytest_mlperf.tasks.base import describe as describe_task
from pytest_mlperf.tasks.classification import Classification
from pytest_mlperf.verdict import judge

#: Scenarios whose performance runs record per-query latencies from the LoadGen trace. Offline issues a single
#: query, so its one latency says nothing a distribution could; it is gated on throughput across repeats.
TRACED_SCENARIOS = frozenset({"SingleStream", "MultiStream", "Server"})
#: At most this many per-query latencies are kept per run; longer runs keep an evenly spaced subsample in query
#: order (deterministic, so reruns of one log give the same gate input). 20,000 values is ~150 kB of JSON.
MAX_LATENCY_SAMPLES = 20_000
#: A trace larger than this is deleted once its latencies are in the results JSON (it holds nothing else the
#: plugin reads); smaller ones stay next to the other LoadGen logs for inspection.
KEEP_TRACE_BYTES = 8 << 20
#: The load-defining targets that the gate needs equal on both sides; they are reused, not recalibrated.
LOAD_TARGETS = {"Server": "server_target_qps", "Offline": "offline_expected_qps"}


def subsample(values: Any, cap: int = MAX_LATENCY_SAMPLES) -> list[int]:
    """All of *values* if at most *cap*, else *cap* of them evenly spaced in order (first and last included)."""
    import numpy as np

    array = np.asarray(values, dtype=np.int64)
    if array.size > cap:
        array = array[np.linspace(0, array.size - 1, cap).round().astype(np.int64)]
    return [int(v) for v in array]


@dataclass(frozen=True)
class Case:
    """One cell of model x scenario x mode, as the test asked for it."""

    id: str
    model: Path | str
    dataset: Dataset
    scenario: str
    mode: str
    thresholds: Thresholds = field(default_factory=Thresholds)
    model_name: str | None = None  # the mlperf.conf/user.conf key, e.g. "resnet50"
    repeat: int = 0
    #: What the outputs mean and how they are scored; None: the dataset's own ``task``, else classification.
    task: Task | None = None
    #: The engine; None: --mlperf-backend.
    backend: str | None = None
    #: The Server target QPS / Offline expected QPS this run must use (a find-peak probe); None: as configured.
    load: float | None = None
    #: A find-peak probe's number: each probe keeps its own log directory.
    probe: int | None = None

    def resolved_task(self) -> Task:
        task: Task | None = self.task or getattr(self.dataset, "task", None)
        return task if task is not None else Classification()


#: Makes a backend from (name, model, options): the plugin passes its ``pytest_mlperf_make_backend`` hook.
BackendFactory = Callable[[str, "Path | str", BackendOptions], Backend]


class Harness:
    """Per-session engine: caches backends and model digests so each case pays only for its own run."""

    def __init__(
        self,
        config: RunConfig,
        rootdir: Path,
        make_backend: BackendFactory = create_backend,
        sweep: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        #: The --mlperf-sweep configuration this harness runs (its settings are already in ``config``).
        self.sweep = dict(sweep) if sweep else None
        #: Where progress lines of long runs go (the session sets it), and whether that is a terminal.
        self.progress_write: Callable[[str], None] | None = None
        self.progress_tty = False
        self.rootdir = rootdir
        self._make_backend = make_backend
        self._backends: dict[tuple[str, str], list[Backend]] = {}
        self._digests: dict[str, str] = {}
        # Load targets of each (case id, scenario) already run this session: repeats run under the same load.
        self._targets: dict[tuple[str, str], float] = {}
        self._finite_checked: set[tuple[str, str, str, int]] = set()
        self._calibrations: dict[tuple[str, str, str, int], calibrate.Calibration] = {}
        self._user_conf: dict[Path, list[tuple[str, str, str, str]]] = {}
        #: This session's accuracy logs per (engine, model, dataset, scenario): TEST01's baseline when present.
        self._accuracy_logs: dict[tuple[str, str, str, str], Path] = {}

    def backend_options(self, engine: str | None = None) -> BackendOptions:
        cfg = self.config
        # Every built-in engine's prefix routes, running or not: an ini file may hold options for engines that one
        # invocation leaves out.
        engines = (*BACKENDS, *(cfg.backends or (cfg.backend,)))
        return BackendOptions(
            providers=cfg.providers,
            intra_op_threads=cfg.threads,
            batch_size=cfg.batch_size,
            extra=options_for(engine or cfg.backend, cfg.backend_options, engines),
            cache_dir=cfg.cache_dir,
        )

    def backends_for(self, model: Path | str, count: int = 1, engine: str | None = None) -> list[Backend]:
        """*count* instances for *model* when its engine is not thread-safe (one per inference thread), else one
        shared instance; made once per session, engine and model, closed by :meth:`close`."""
        name = engine_for(model, engine or self.config.backend)
        key = (name, str(model))
        made = self._backends.setdefault(key, [])
        while not made or (not getattr(made[0], "thread_safe", True) and len(made) < count):
            backend = self._make_backend(name, model, self.backend_options(name))
            if backend is None:
                raise ModelError(
                    f"no plugin made a backend called {name!r} for {model}; check --mlperf-backend(s) and the "
                    "plugin that provides it (pytest_mlperf_make_backend)"
                )
            made.append(backend)
        return made if not getattr(made[0], "thread_safe", True) else made[:1]

    def backend_for(self, model: Path | str, engine: str | None = None) -> Backend:
        return self.backends_for(model, engine=engine)[0]

    def close(self) -> None:
        """Release every backend made this session (sessions, device memory)."""
        backends, self._backends = self._backends, {}
        for made in backends.values():
            for backend in made:
                close = getattr(backend, "close", None)
                if close is not None:
                    close()

    def model_digest(self, model: Path | str) -> str | None:
        path = Path(model)
        try:
            if not path.is_file():  # a server URL or another engine-specific reference
                return None
        except OSError:
            return None
        stat = path.stat()
        key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        if key not in self._digests:
            self._digests[key] = file_sha256(path)
        return self._digests[key]

    @property
    def log_root(self) -> Path:
        return self.config.log_dir if self.config.log_dir.is_absolute() else self.rootdir / self.config.log_dir

    def log_dir_for(self, case: Case) -> Path:
        # A test may call mlperf.run in several scenarios or modes; unless its id names them, each run gets its own
        # folder, or the next run would delete the logs that the previous run's record points at.
        named = case.scenario in case.id and case.mode in case.id
        name = case_dirname(case.id if named else f"{case.id}[{case.scenario}-{case.mode}]", case.repeat)
        return self.log_root / (name if case.probe is None else f"{name}-peak{case.probe:02d}")

    def settings_for(self, case: Case, backend: Backend) -> tuple[loadgen.SettingsSpec, dict[str, Any]]:
        cfg = self.config
        if cfg.profile == "smoke":
            cal = self.prepare(case, backend, calibrate.needs(case.scenario, case.mode))
            values = calibrate.smoke_values(case.scenario, case.mode, cal, cfg.overrides)
        else:
            self.prepare(case, backend, ())
            values = calibrate.official_values(case.scenario, case.mode, cfg.overrides)
        target_key = LOAD_TARGETS.get(case.scenario)
        reused: float | None = None
        if target_key is not None and case.load is not None:
            values[target_key] = case.load
        elif target_key is not None and case.mode == "performance" and cfg.overrides.target_qps is None:
            reused = self._targets.get((case.id, case.scenario)) or self.baseline_target(case)
            if reused is not None:
                values[target_key] = reused
            elif target_key in values:
                self._targets[(case.id, case.scenario)] = values[target_key]
        if case.scenario == "Server":
            bound = cfg.overrides.target_latency_ms
            if bound is None and cfg.profile == "smoke":
                bound = case.thresholds.latency_ms
            if bound is not None:
                values["server_target_latency_ns"] = int(bound * 1e6)
        spec = loadgen.SettingsSpec(
            scenario=case.scenario,
            mode=case.mode,
            model_name=case.model_name or "*",
            official_conf=True,
            user_conf=cfg.user_conf,
            values=values,
        )
        if reused is not None and case.scenario == "Server":
            check_reused_server_load(case, spec)
        return spec, values

    def prepare(self, case: Case, backend: Backend, kinds: tuple[str, ...]) -> calibrate.Calibration:
        """Warm the backend up once, and measure the smoke-profile timings *kinds* not yet known for this
        model and dataset; the first timed query then never pays for lazy initialisation."""
        key = (self.engine(case), str(case.model), case.dataset.name, case.dataset.total_count)
        cal = self._calibrations.get(key)
        fresh = cal is None
        cal = cal or calibrate.Calibration()
        self._calibrations[key] = cal
        # Performance runs check the model's warm-up outputs once (accuracy runs check every batch instead, and
        # an extra inference must not touch a backend before an accuracy run sees its samples).
        check = case.mode == "performance" and key not in self._finite_checked
        if not fresh and not check and not calibrate.missing(cal, kinds):
            return cal
        warm = list(range(min(case.dataset.performance_count, max(self.config.batch_size, 8))))
        case.dataset.load(warm)
        try:
            if fresh:
                backend.warmup(case.dataset.one(0))
            if check:
                self._finite_checked.add(key)
                check_finite_outputs(case, backend, warm)
            return calibrate.measure(
                backend, case.dataset, case.resolved_task(), self.batch_size(backend), kinds, cal
            )
        finally:
            case.dataset.unload(warm)

    def engine(self, case: Case) -> str:
        """The engine *case* runs on: its own, else --mlperf-backend; a server URL always runs on ``remote``."""
        return engine_for(case.model, case.backend or self.config.backend)

    def baseline_target(self, case: Case) -> float | None:
        """The effective target QPS (Server load, Offline expected QPS) *case* ran with in --mlperf-reuse-load's
        document, else in the baseline: the first matching run wins.

        Reusing it puts base and head under the same load, so their latencies are comparable and their
        fingerprints match; recalibrating would move the target with the very slowdown the gate looks for.
        """
        for document in (self.config.load_document, self.config.baseline_document):
            for run in (document or {}).get("runs") or []:
                if run.get("id") != case.id or run.get("scenario") != case.scenario:
                    continue
                if run.get("mode") != "performance":
                    continue
                value = (run.get("settings") or {}).get("target_qps")
                if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                    self._targets[(case.id, case.scenario)] = float(value)
                    return float(value)
        return None

    def short_run_retry(
        self, case: Case, values: dict[str, Any], detail: logs.DetailLog, error: BaseException | None
    ) -> tuple[dict[str, Any], str] | None:
        """The smoke profile's rerun of a performance run that LoadGen found too short (calibrate's
        short_run_retry), unless the pre-generation setting is not the calibration's to change: the user's
        target, a find-peak probe's load, or a load reused from a baseline so that base and head match."""
        cfg = self.config
        if cfg.profile != "smoke" or case.mode != "performance" or error is not None or detail.valid is not False:
            return None
        if case.scenario == "Offline" and (
            cfg.overrides.target_qps is not None or case.load is not None or self.baseline_target(case) is not None
        ):
            return None
        minimum = detail.settings.get("min_duration_ms")
        retry = calibrate.short_run_retry(
            case.scenario, values, detail.invalid_reasons, detail.measured_s,
            int(minimum) if isinstance(minimum, (int, float)) else None,
        )
        if retry is not None and case.scenario == "Offline":
            self._targets[(case.id, case.scenario)] = retry[0]["offline_expected_qps"]  # later repeats follow
        return retry

    def progress_meter(self, case: Case) -> progress.Meter | None:
        """A meter reporting *case*'s run as it goes (--mlperf-progress), or None when off or nowhere to write."""
        interval = self.config.progress_s
        if interval is None or self.progress_write is None:
            return None
        if interval == 0.0:
            interval = progress.TTY_INTERVAL_S if self.progress_tty else progress.LOG_INTERVAL_S
        name = case.id.split("::")[-1]
        label = (name if case.mode in name else f"{name} {case.mode}") + (
            f" (peak probe {case.probe})" if case.probe is not None else ""
        )
        return progress.Meter(label, interval, self.progress_write)

    def traced(self, case: Case) -> bool:
        """Whether this run writes LoadGen's trace: only when per-query latencies were asked for (it is not free)."""
        return self.config.record_latencies and case.mode == "performance" and case.scenario in TRACED_SCENARIOS

    def latency_samples(self, case: Case, log_dir: Path) -> list[int] | None:
        """Per-query latencies from the trace (capped); the trace is then removed if large. None when untraced."""
        if not self.traced(case):
            return None
        path = log_dir / trace.TRACE_FILENAME
        try:
            samples = subsample(trace.per_query_latencies_ns(path))
        except LoadGenError as exc:
            # The gate then decides on the runs' own percentiles only: say so rather than drop them silently.
            warnings.warn(
                MLPerfWarning(f"{case.id}: no per-query latencies recorded for this run: {exc}"), stacklevel=2
            )
            return None
        try:
            if path.stat().st_size > KEEP_TRACE_BYTES:
                path.unlink()
        except OSError:
            pass
        return samples

    def batch_size(self, backend: Backend) -> int:
        """The batch ceiling: --mlperf-batch-size, clamped to a model whose batch axis is fixed (recorded)."""
        fixed = getattr(backend, "max_batch", None)
        return min(self.config.batch_size, fixed) if isinstance(fixed, int) and fixed > 0 else self.config.batch_size

    def server_batch(self, case: Case, backend: Backend, spec: loadgen.SettingsSpec) -> calibrate.ServerBatch:
        """The Server batch cap: --mlperf-server-batch, else the cap the same case ran with in the load document or
        baseline (so base and head batch alike, whatever their calibrations say), else measured against the run's
        effective latency bound; never above the ceiling."""
        ceiling = self.batch_size(backend)
        if self.config.server_batch is not None:
            forced = min(self.config.server_batch, ceiling)
            return calibrate.ServerBatch(forced, "forced", f"--mlperf-server-batch {self.config.server_batch}")
        for source, document in (("--mlperf-reuse-load", self.config.load_document),
                                 ("--mlperf-baseline", self.config.baseline_document)):
            for run in (document or {}).get("runs") or []:
                if run.get("id") == case.id and run.get("scenario") == "Server":
                    size = (run.get("sut") or {}).get("batch_size")
                    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
                        return calibrate.ServerBatch(min(size, ceiling), "reused", f"{source}'s run of this case")
        cal = self.prepare(case, backend, calibrate.SERVER_BATCH_NEEDS)
        settings = loadgen.build_settings(spec)
        bound_ns = settings.server_target_latency_ns
        percentile = 100 * settings.server_target_latency_percentile
        return calibrate.server_batch(cal, ceiling, bound_ns / 1e9 if bound_ns > 0 else None, percentile)

    def latency_rule(self, case: Case, settings: Mapping[str, Any]) -> tuple[str | None, float | None]:
        """The percentile and bound (ms) a run's latency is judged at.

        Server is judged where LoadGen judged it: at the effective target_latency_percentile and target latency of
        the detail log (mlperf.conf, user.conf or the smoke profile's bound), unless the command line gave a bound.
        The other scenarios keep the rules' percentile and the case's bound.
        """
        percentile = LATENCY_PERCENTILE.get(case.scenario)
        bound = case.thresholds.latency_ms
        if case.scenario != "Server":
            return percentile, bound
        fraction = settings.get("target_latency_percentile")
        if isinstance(fraction, int | float) and 0 < fraction < 1:
            percentile = logs.percentile_name(float(fraction))
        target_ns = settings.get("target_latency_ns")
        if self.config.thresholds.latency_ms is None and isinstance(target_ns, int | float) and target_ns > 0:
            bound = float(target_ns) / 1e6
        return percentile, bound

    def check_user_conf(self, case: Case) -> None:
        """Warn when --mlperf-user-conf has lines, but none for this case: LoadGen would ignore them silently."""
        path = self.config.user_conf
        if path is None:
            return
        if path not in self._user_conf:
            self._user_conf[path] = check_user_conf(path)
        entries = self._user_conf[path]
        model = case.model_name or "*"
        if not entries or any(m in (model, "*") and s in (case.scenario, "*") for m, s, _, _ in entries):
            return
        seen = sorted({f"{m}.{s}.{k}" for m, s, k, _ in entries})
        models = sorted({m for m, _, _, _ in entries if m != "*"}) or ["*"]
        shown = ", ".join(seen[:6]) + (" ..." if len(seen) > 6 else "")
        named = f"model_name {case.model_name!r}" if case.model_name else "no model_name (only `*.` lines apply)"
        warnings.warn(
            MLPerfWarning(
                f"{case.id}: none of the lines of {path} applies to this {case.scenario} case, which has {named}; "
                f"the file sets {shown}. Give the case the model name those lines use, e.g. "
                f"@pytest.mark.mlperf(model_name={models[0]!r}) or mlperf.run(..., model_name={models[0]!r})"
            ),
            stacklevel=2,
        )

    def run_identity(self, case: Case, backend: Backend, task: Task) -> dict[str, Any]:
        """The fields of a run's record that say what ran: the case, the model, the data, the engine."""
        return {
            "id": case.id,
            "repeat": case.repeat,
            "model": case.model_name or model_stem(case.model),
            "model_sha256": None if getattr(backend, "model_is_remote", False) else self.model_digest(case.model),
            "model_identity": getattr(backend, "model_identity", None),
            "dataset": {"name": case.dataset.name, "count": case.dataset.total_count,
                        "digest": dataset_digest(case.dataset)},
            "task": describe_task(task),
            "backend": backend.name,
            "scenario": case.scenario,
            "mode": case.mode,
            "profile": self.config.profile,
            "synthetic_inputs": case.dataset.synthetic_inputs,
        }

    def failed_record(
        self, case: Case, backend: Backend, task: Task, exc: BaseException, log_dir: Path, started: float,
        *, in_loadgen: bool = False,
    ) -> RunResult:
        """The record of a run that has no LoadGen verdict: its warm-up or calibration raised, or (*in_loadgen*)
        LoadGen itself failed or left logs that cannot be read."""
        error = f"{type(exc).__name__}: {exc}"
        where = "in LoadGen or its logs" if in_loadgen else "in the warm-up, before LoadGen ran"
        return RunResult(
            **self.run_identity(case, backend, task),
            backend_options={"version": getattr(backend, "version", None)},
            settings={},
            overrides={},
            metrics=Metrics(),
            thresholds={"accuracy": case.thresholds.accuracy, "latency_ms": case.thresholds.latency_ms,
                        "latency_percentile": LATENCY_PERCENTILE.get(case.scenario),
                        "min_qps": case.thresholds.min_qps},
            valid=False if case.mode == "performance" else None,
            validity_reasons=[f"the run has no LoadGen verdict: it failed {where}"] if case.mode == "performance"
            else [],
            passed=False,
            reasons=[f"{FAILED_REASON}{error} ({where})"],
            log_dir=str(log_dir),
            duration_s=round(time.perf_counter() - started, 3),
            error=error,
        )

    def conf_record(self, case: Case, spec: loadgen.SettingsSpec) -> dict[str, Any]:
        """What configured LoadGen for this run: the mlperf.conf it used (built into LoadGen: its version names it),
        the user's user.conf as read, and the user.conf that reproduces every setting applied after mlperf.conf."""
        user: dict[str, Any] | None = None
        if spec.user_conf is not None:
            text = spec.user_conf.read_text(encoding="utf-8")
            user = {"path": str(spec.user_conf), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                    "text": text}
        return {
            "mlperf_conf": {"source": "built-in" if spec.official_conf else None, "loadgen": loadgen.version(),
                            "model_name": spec.model_name},
            "user_conf": user,
            "applied_user_conf": applied_user_conf(user["text"] if user else None, spec.model_name, case.scenario,
                                                   dict(spec.values)),
        }

    def run_compliance(self, case: Case, spec: loadgen.SettingsSpec, make: Callable[[Any], Any], log_dir: Path,
                       reference: logs.DetailLog, result: RunResult) -> None:
        """The compliance tests the case's benchmark requires, each in ``log_dir/TEST0x`` with its audit.config
        (given to LoadGen by path: nothing is ever written to the working directory), verified against this
        performance run (and, for TEST01, an accuracy-mode run of the same SUT); verdicts land in the result."""
        from pytest_mlperf import compliance
        from pytest_mlperf.fileio import atomic_write

        verdicts: dict[str, Any] = {}
        for test in compliance.tests_for(case.model_name):
            folder = log_dir / test
            run_dir = folder / "performance" / "run_1"
            folder.mkdir(parents=True, exist_ok=True)
            audit = folder / compliance.AUDIT_CONFIG
            atomic_write(audit, compliance.audit_config(test, case.model_name).encode("utf-8"))
            outcome = loadgen.run_test(make, case.dataset, spec, run_dir, audit_config=audit,
                                       stall_timeout_s=self.config.stall_timeout_s)
            texts: dict[str, str] = {}
            reasons: list[str] = []
            verdict: dict[str, Any] = {"log_dir": test}
            if outcome.error is not None:
                reasons.append(f"{test}: inference raised: {type(outcome.error).__name__}: {outcome.error}")
            else:
                candidate = logs.read_detail(run_dir / "mlperf_log_detail.txt")
                _, texts["verify_performance.txt"], found = compliance.verify_performance(
                    test, case.scenario, reference, candidate)
                reasons += found
                if test == "TEST01":
                    reasons += self._verify_test01_accuracy(case, spec, make, log_dir, folder, texts, verdict)
            for name, text in texts.items():
                atomic_write(folder / name, text.encode("utf-8"))
            verdicts[test] = {"passed": not reasons, "reasons": reasons, **verdict}
            result.reasons.extend(reasons)
        result.compliance = verdicts
        result.passed = not result.reasons

    def _verify_test01_accuracy(self, case: Case, spec: loadgen.SettingsSpec, make: Callable[[Any], Any],
                                log_dir: Path, folder: Path, texts: dict[str, str],
                                verdict: dict[str, Any]) -> list[str]:
        """TEST01's sampled responses against an accuracy-mode run of the same SUT (``log_dir/TEST01-baseline``):
        identical, or rescored by the task within the checker's tolerance (*verdict* gets ``accuracy``)."""
        from pytest_mlperf import compliance

        sampled_log = folder / "accuracy" / "mlperf_log_accuracy.json"
        sampled_log.parent.mkdir(parents=True, exist_ok=True)
        (folder / "performance" / "run_1" / "mlperf_log_accuracy.json").replace(sampled_log)
        baseline_log = self._accuracy_logs.get(self._sut_key(case))
        if baseline_log is None or not baseline_log.is_file():
            # No accuracy run of this SUT yet in this session (performance cases run first): make one.
            baseline_dir = log_dir / "TEST01-baseline"
            outcome = loadgen.run_test(make, case.dataset, replace(spec, mode="accuracy"), baseline_dir,
                                       stall_timeout_s=self.config.stall_timeout_s)
            if outcome.error is not None:
                return [f"TEST01 accuracy baseline: inference raised: {type(outcome.error).__name__}: {outcome.error}"]
            baseline_log = baseline_dir / "mlperf_log_accuracy.json"
        try:
            baseline_entries = logs.read_accuracy_entries(baseline_log)
            sampled_entries = logs.read_accuracy_entries(sampled_log)
        except logs.LogParseError as exc:
            texts["verify_accuracy.txt"] = f"Verifying accuracy.\nTEST FAIL: {exc}\n"
            return [f"TEST01 accuracy: {exc}"]
        identical, texts["verify_accuracy.txt"], reasons = compliance.verify_accuracy(baseline_entries,
                                                                                     sampled_entries)
        # Part III scores each sample's first response, as the MLCommons accuracy scripts keep it.
        baseline, sampled = logs.first_responses(baseline_entries), logs.first_responses(sampled_entries)
        if not any(idx in baseline for idx in sampled):
            return reasons  # nothing to rescore: no sampled response has a baseline
        rescored = compliance.rescore_test01(case.resolved_task(), case.dataset, case.model_name, baseline, sampled,
                                             identical)
        texts.update(rescored.files)
        verdict["accuracy"] = rescored.record
        return rescored.reasons

    def _sut_key(self, case: Case) -> tuple[str, str, str, str]:
        return (case.backend or self.config.backend, str(case.model), case.dataset.name, case.scenario)

    def run(self, case: Case, record: Callable[[RunResult], None]) -> RunResult:
        """Run *case*; *record* receives the result before any failure is raised, so nothing is lost."""
        cfg = self.config
        started = time.perf_counter()
        counts = (case.dataset.total_count, case.dataset.performance_count)
        if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1 for n in counts):
            raise ValueError(
                f"dataset {case.dataset.name!r}: total_count {counts[0]!r} and performance_count {counts[1]!r} must "
                "both be whole numbers of 1 or more; LoadGen cannot run on an empty dataset"
            )
        task = case.resolved_task()
        workers = cfg.workers if case.scenario in ("Server", "Offline") else 1
        backends = self.backends_for(case.model, workers, case.backend)
        backend = backends[0]
        if case.scenario in ("Server", "Offline"):
            # A backend whose work happens elsewhere (a model server) asks for as many threads as requests in flight.
            workers = max(cfg.workers, int(getattr(backend, "concurrency", 1)))
        batch_size = self.batch_size(backend)
        self.check_user_conf(case)
        log_dir = self.log_dir_for(case)
        if log_dir.exists():
            shutil.rmtree(log_dir)  # stale logs from an earlier session would be parsed as this run's
        try:
            spec, values = self.settings_for(case, backend)
            server = self.server_batch(case, backend, spec) if case.scenario == "Server" else None
        except Exception as exc:
            # The warm-up or calibration raised: the run is recorded as failed (so the results show it) and the
            # error names what the model expects against what the dataset gives.
            record(self.failed_record(case, backend, task, exc, log_dir, started))
            if isinstance(exc, MLPerfError):
                raise
            raise InferenceError(
                f"{case.id}: the warm-up of {model_stem(case.model)} on {case.backend or cfg.backend} raised "
                f"{type(exc).__name__}: {exc}\n{input_mismatch(backend, case.dataset)}"
            ) from exc
        options = SutOptions(
            batch_size=server.batch_size if server else batch_size,
            server_max_wait_us=cfg.server_max_wait_us,
            workers=workers,
            check_finite=case.mode == "accuracy",
        )
        suts: list[BaseSUT] = []
        rerun_notes: list[str] = []
        while True:
            meter = self.progress_meter(case)

            def make(complete: Complete, meter: progress.Meter | None = meter) -> BaseSUT:
                sut = make_sut(case.scenario, backends, case.dataset, task, complete, options)
                if meter is not None:
                    meter.follow(lambda: sut.answered_samples)
                suts.append(sut)
                return sut

            try:
                with meter or contextlib.nullcontext():
                    outcome = loadgen.run_test(
                        make, case.dataset, spec, log_dir, enable_trace=self.traced(case),
                        stall_timeout_s=cfg.stall_timeout_s,
                    )
                try:
                    detail = logs.read_detail(log_dir / "mlperf_log_detail.txt")
                except OSError as exc:
                    raise LoadGenError(
                        f"{case.id}: LoadGen's detail log in {log_dir} cannot be read ({exc.strerror or exc}); the "
                        "run has no verdict. Check that the log folder (--mlperf-log-dir) is writable and has free "
                        "space"
                    ) from exc
            except MLPerfError as exc:  # LoadGen failed, or its logs cannot be read: the run is still recorded
                record(self.failed_record(case, backend, task, exc, log_dir, started, in_loadgen=True))
                raise
            retry = (self.short_run_retry(case, values, detail, outcome.error)
                     if len(rerun_notes) < calibrate.MAX_SHORT_RERUNS else None)
            if retry is None:
                break
            values, note = retry
            rerun_notes.append(note)
            spec = replace(spec, values=values)
            suts.clear()
            shutil.rmtree(log_dir)  # the short run's logs must not be read as the rerun's
        if rerun_notes:
            values = {**values, "pre_generation_rerun": "; then ".join(rerun_notes)}
        if outcome.error is None and suts and suts[-1].nonfinite_samples:
            outcome.error = InferenceError(
                f"{model_stem(case.model)} gave non-finite outputs (NaN or inf) for {suts[-1].nonfinite_samples} of "
                f"{suts[-1].completed_samples} samples; its accuracy would be scored on garbage"
            )
        accuracy: dict[str, float] | None = None
        scoring_error: str | None = None
        if case.mode == "accuracy" and outcome.error is None:
            try:
                accuracy = task.score(logs.read_accuracy_log(log_dir / "mlperf_log_accuracy.json"), case.dataset)
            except (AccuracyCoverageError, ValueError, KeyError) as exc:
                scoring_error = str(exc)
            if accuracy is not None:
                write_accuracy_txt(log_dir, task.accuracy_line(accuracy))
                self._accuracy_logs[self._sut_key(case)] = log_dir / "mlperf_log_accuracy.json"
        failed = outcome.error is not None
        percentile, bound_ms = self.latency_rule(case, detail.settings)
        thresholds = replace(case.thresholds, latency_ms=bound_ms)
        verdict = judge(
            scenario=case.scenario,
            mode=case.mode,
            thresholds=thresholds,
            valid=detail.valid,
            validity_reasons=detail.invalid_reasons,
            recommendation=detail.recommendation,
            qps=detail.qps,
            latency_ns=detail.latency_ns,
            latency_percentile=percentile,
            accuracy=accuracy,
            accuracy_metric=task.metric,
            higher_is_better=task.higher_is_better,
            loadgen_errors=detail.errors,
        )
        reasons = list(verdict.reasons)
        hint = calibrate.official_hint(case.scenario, case.model_name, detail.qps, detail.latency_ns,
                                       detail.invalid_reasons) if cfg.profile == "official" else None
        if hint is not None and case.mode == "performance" and detail.valid is False:
            reasons.append(hint)
        if scoring_error:
            reasons.insert(0, f"accuracy log could not be scored: {scoring_error}")
        if outcome.error is not None:
            reasons.insert(0, f"{FAILED_REASON}{type(outcome.error).__name__}: {outcome.error}")
        latency = {k: v for k, v in detail.latency_ns.items() if k in ("mean", "p50", "p90", "p95", "p99", "p99.9")}
        describe = getattr(backend, "describe", None)
        description = dict(describe()) if describe is not None else {"version": getattr(backend, "version", None)}
        if batch_size != cfg.batch_size:
            description |= {"batch_size": batch_size, "model_max_batch": getattr(backend, "max_batch", None)}
        # A run whose inference failed did not do the work: none of its figures is a measurement.
        measured = case.mode == "performance" and not failed
        result = RunResult(
            **self.run_identity(case, backend, task),
            backend_options=description | {"cpu_affinity": usable_cpus()},
            settings=dict(detail.settings),
            overrides=values,
            conf=self.conf_record(case, spec),
            metrics=Metrics(
                qps=detail.qps if measured else None,
                latency_ns=latency if measured and latency else None,
                accuracy=accuracy,
            ),
            thresholds={
                "accuracy": case.thresholds.accuracy,
                "latency_ms": bound_ms,
                "latency_percentile": percentile,
                "min_qps": case.thresholds.min_qps,
            },
            latency_samples_ns=self.latency_samples(case, log_dir) if not failed else None,
            sut=server.to_dict() if server else None,
            sweep=self.sweep,
            valid=(False if failed else detail.valid) if case.mode == "performance" else None,
            validity_reasons=(
                ["the SUT failed: LoadGen's own verdict does not count for a run whose inference raised"]
                if failed and case.mode == "performance"
                else list(detail.invalid_reasons)
            ),
            recommendation=detail.recommendation,
            passed=not reasons,
            reasons=reasons,
            log_dir=str(log_dir),
            duration_s=round(time.perf_counter() - started, 3),
            error=f"{type(outcome.error).__name__}: {outcome.error}" if outcome.error is not None else None,
        )
        if cfg.compliance and measured and case.probe is None:  # a find-peak probe is a search step, not a result
            self.run_compliance(case, spec, make, log_dir, detail, result)
        record(result)
        if outcome.error is not None:
            raise InferenceError(
                f"{case.id}: inference or sample loading raised during the {case.scenario} {case.mode} run; "
                f"LoadGen was drained and shut down (logs: {log_dir})"
            ) from outcome.error
        return result


#: The longest query schedule a reused Server target may imply (beyond ten times the run's own duration): LoadGen
#: issues each query at its scheduled time, so a corrupt target of 1e-6 QPS would hang the case for days.
MAX_REUSED_SCHEDULE_S = 3600.0


def check_reused_server_load(case: Case, spec: loadgen.SettingsSpec) -> None:
    """Refuse a Server target from --mlperf-reuse-load or the baseline whose schedule LoadGen could never finish."""
    settings = loadgen.build_settings(spec)
    qps, queries = float(settings.server_target_qps), int(settings.min_query_count)
    duration_s = settings.min_duration_ms / 1000
    schedule_s = max(queries, 1) / qps if qps > 0 else float("inf")
    limit_s = max(MAX_REUSED_SCHEDULE_S, 10 * duration_s)
    if schedule_s > limit_s:
        raise LoadGenError(
            f"{case.id}: the Server target of {qps:g} QPS reused from --mlperf-reuse-load (or --mlperf-baseline) "
            f"would make LoadGen spread its {queries} queries over {schedule_s:.3g} s, beyond {limit_s:.0f} s (this "
            f"run asks for {duration_s:g} s): that document's run of this case is damaged or was made for another "
            "load. Point --mlperf-reuse-load at the results of a sound run of this case, or set the load with "
            "--mlperf-target-qps"
        )


def check_finite_outputs(case: Case, backend: Backend, warm: list[int]) -> None:
    """Fail the case before LoadGen runs when the model's outputs on the warm-up samples hold NaN or inf."""
    from pytest_mlperf.sut import count_nonfinite

    bad = count_nonfinite(backend.run(case.dataset.batch(warm)))
    if bad:
        raise InferenceError(
            f"{case.id}: {model_stem(case.model)} on {backend.name} gave non-finite outputs (NaN or inf) for {bad} "
            f"of {len(warm)} warm-up samples of dataset {case.dataset.name!r}; a run on them would measure nothing "
            "that a correct model does. Check the model file and the dataset's preprocessing"
        )


def _describe_arrays(inputs: Any) -> str:
    arrays = dict(inputs) if isinstance(inputs, Mapping) else {"(one array)": inputs}
    return ", ".join(
        f"{name} shape {tuple(getattr(a, 'shape', ()))} {getattr(a, 'dtype', type(a).__name__)}"
        for name, a in arrays.items()
    )


def input_mismatch(backend: Backend, dataset: Dataset) -> str:
    """What the model expects (name, shape, dtype: as the backend reports it) next to what the dataset gives."""
    spec = getattr(backend, "input_spec", None)
    expected = (
        ", ".join(f"{name} shape {shape} {dtype}" for name, shape, dtype in spec)
        if spec
        else f"not reported by the {backend.name} backend"
    )
    try:
        given = _describe_arrays(dataset.batch([0]))
    except Exception:  # the sample is not loaded any more (the warm-up unloads it)
        dataset.load([0])
        try:
            given = _describe_arrays(dataset.batch([0]))
        finally:
            dataset.unload([0])
    return (
        f"  the model's inputs: {expected}\n  dataset {dataset.name!r} gives: {given} (a batch of one sample)\n"
        "  make the dataset's arrays match the model's inputs (names, shapes after the batch axis, dtypes)"
    )


def model_stem(model: Path | str) -> str:
    """A short model name for the table when the test gave none: a file's stem, a URL's last path segment."""
    text = str(model).rstrip("/")
    return Path(text.rsplit("/", 1)[-1]).stem or text


def write_accuracy_txt(log_dir: Path, line: str) -> None:
    """``accuracy.txt`` next to the accuracy log, holding the line the MLCommons script prints (its format)."""
    from pytest_mlperf.fileio import atomic_write

    atomic_write(log_dir / "accuracy.txt", (line + "\n").encode("utf-8"))
