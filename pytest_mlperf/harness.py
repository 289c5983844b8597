"""Runs one benchmark case end to end: backend, calibration, LoadGen, log parsing, scoring and verdict."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_mlperf import calibrate, loadgen, logs
from pytest_mlperf.backends import create_backend, describe
from pytest_mlperf.backends.base import Backend, BackendOptions
from pytest_mlperf.config import LATENCY_PERCENTILE, RunConfig, Thresholds
from pytest_mlperf.datasets.base import AccuracyCoverageError, Dataset
from pytest_mlperf.errors import InferenceError, ModelError
from pytest_mlperf.results import Metrics, RunResult, case_dirname
from pytest_mlperf.sut import SutOptions, make_sut
from pytest_mlperf.verdict import judge


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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Harness:
    """Per-session engine: caches backends and model digests so each case pays only for its own run."""

    def __init__(self, config: RunConfig, rootdir: Path) -> None:
        self.config = config
        self.rootdir = rootdir
        self._backends: dict[tuple[str, str], Backend] = {}
        self._digests: dict[str, str] = {}

    def backend_options(self) -> BackendOptions:
        cfg = self.config
        return BackendOptions(providers=cfg.providers, intra_op_threads=cfg.threads, batch_size=cfg.batch_size)

    def backend_for(self, model: Path | str) -> Backend:
        key = (self.config.backend, str(model))
        if key not in self._backends:
            self._backends[key] = create_backend(self.config.backend, model, self.backend_options())
        return self._backends[key]

    def model_digest(self, model: Path | str) -> str | None:
        path = Path(model)
        if not path.is_file():
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
        return self.log_root / case_dirname(case.id, case.repeat)

    def settings_for(self, case: Case, backend: Backend) -> tuple[loadgen.SettingsSpec, dict[str, Any]]:
        cfg = self.config
        if cfg.profile == "smoke":
            warm = list(range(min(case.dataset.performance_count, max(cfg.batch_size, 8))))
            case.dataset.load(warm)
            try:
                cal = calibrate.measure(backend, case.dataset, cfg.batch_size)
            finally:
                case.dataset.unload(warm)
            values = calibrate.smoke_values(case.scenario, case.mode, cal, cfg.overrides)
        else:
            values = calibrate.official_values(case.scenario, case.mode, cfg.overrides)
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
        return spec, values

    def run(self, case: Case, record: Callable[[RunResult], None]) -> RunResult:
        """Run *case*; *record* receives the result before any failure is raised, so nothing is lost."""
        cfg = self.config
        started = time.perf_counter()
        if isinstance(case.model, Path | str) and not Path(case.model).exists() and cfg.backend != "noop":
            raise ModelError(f"model file not found: {case.model}")
        backend = self.backend_for(case.model)
        spec, values = self.settings_for(case, backend)
        log_dir = self.log_dir_for(case)
        if log_dir.exists():
            shutil.rmtree(log_dir)  # stale logs from an earlier session would be parsed as this run's
        options = SutOptions(
            batch_size=cfg.batch_size, server_max_wait_us=cfg.server_max_wait_us, workers=cfg.workers
        )
        outcome = loadgen.run_test(
            lambda complete: make_sut(case.scenario, backend, case.dataset, complete, options),
            case.dataset,
            spec,
            log_dir,
        )
        detail = logs.read_detail(log_dir / "mlperf_log_detail.txt")
        accuracy: dict[str, float] | None = None
        scoring_error: str | None = None
        if case.mode == "accuracy" and outcome.error is None:
            try:
                accuracy = case.dataset.score(logs.read_accuracy_log(log_dir / "mlperf_log_accuracy.json"))
            except (AccuracyCoverageError, ValueError) as exc:
                scoring_error = str(exc)
        verdict = judge(
            scenario=case.scenario,
            mode=case.mode,
            thresholds=case.thresholds,
            valid=detail.valid,
            validity_reasons=detail.invalid_reasons,
            recommendation=detail.recommendation,
            qps=detail.qps,
            latency_ns=detail.latency_ns,
            accuracy=accuracy,
            loadgen_errors=detail.errors,
        )
        reasons = list(verdict.reasons)
        if scoring_error:
            reasons.insert(0, f"accuracy log could not be scored: {scoring_error}")
        if outcome.error is not None:
            reasons.insert(0, f"inference failed: {type(outcome.error).__name__}: {outcome.error}")
        latency = {k: v for k, v in detail.latency_ns.items() if k in ("mean", "p50", "p90", "p95", "p99", "p99.9")}
        result = RunResult(
            id=case.id,
            repeat=case.repeat,
            model=case.model_name or Path(case.model).stem,
            model_sha256=self.model_digest(case.model),
            dataset={"name": case.dataset.name, "count": case.dataset.total_count},
            backend=backend.name,
            backend_options=describe(self.backend_options())
            | {"version": backend.version, "cpu_affinity": sorted(os.sched_getaffinity(0))},
            scenario=case.scenario,
            mode=case.mode,
            profile=cfg.profile,
            synthetic_inputs=case.dataset.synthetic_inputs,
            settings=dict(detail.settings),
            overrides=values,
            metrics=Metrics(
                qps=detail.qps if case.mode == "performance" else None,
                latency_ns=latency if case.mode == "performance" and latency else None,
                accuracy=accuracy,
            ),
            thresholds={
                "accuracy": case.thresholds.accuracy,
                "latency_ms": case.thresholds.latency_ms,
                "latency_percentile": LATENCY_PERCENTILE.get(case.scenario),
                "min_qps": case.thresholds.min_qps,
            },
            valid=detail.valid if case.mode == "performance" else None,
            validity_reasons=list(detail.invalid_reasons),
            recommendation=detail.recommendation,
            passed=not reasons,
            reasons=reasons,
            log_dir=str(log_dir),
            duration_s=round(time.perf_counter() - started, 3),
        )
        record(result)
        if outcome.error is not None:
            raise InferenceError(
                f"{case.id}: the backend raised during the {case.scenario} {case.mode} run; LoadGen was drained "
                f"and shut down (logs: {log_dir})"
            ) from outcome.error
        return result
