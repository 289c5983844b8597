"""How much the plugin's harness costs against bare loops, measured interleaved in one run.

    python benchmarks/harness_overhead.py            # about 3-4 minutes on 2 cores
    python benchmarks/harness_overhead.py --quick    # about 1 minute, fewer rounds and queries

What is compared (see benchmarks/README.md for the reasoning):

* Offline and SingleStream, on the heavy (ResNet50-shaped, ~40 ms/image) and the light (~1 ms per batch of 32)
  model: ``Harness.run`` (smoke profile, onnxruntime backend, OfflineSUT/InlineSUT, LoadGen) against a bare
  ``InferenceSession.run`` loop with the same model, thread count, batch size and sample count. Harness and bare
  runs alternate within each round (the order flips every round); the table gives medians and the spread of the
  per-round ratios.
* Server with the noop backend: a search for the highest target QPS that the harness sustains VALID, interleaved
  with the same search for a bare ``ConstructFastSUT`` that completes inline in LoadGen's issue callback.

Nothing here asserts: it prints numbers and PASS/MISS against the targets of issue 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import mlperf_loadgen as lg  # only for the bare Server reference; the harness path goes through the package
import numpy as np
import onnxruntime as ort
from engine_models import ENGINES as ENGINE_CONVERTED
from engine_models import engine_model
from models import bare_session, ensure_model, random_inputs

from pytest_mlperf.backends import create_backend
from pytest_mlperf.backends.base import Backend, BackendOptions
from pytest_mlperf.config import Overrides, RunConfig
from pytest_mlperf.datasets.base import ArrayDataset
from pytest_mlperf.harness import Case, Harness
from pytest_mlperf.loadgen import logs
from pytest_mlperf.loadgen import run as loadgen
from pytest_mlperf.provenance import usable_cpus
from pytest_mlperf.results import RunResult


@dataclass(frozen=True)
class Plan:
    rounds: dict[str, int]  # interleaved rounds per model
    server_steps: int  # geometric bisection steps between the Server bounds
    server_lo: float = 25_000.0
    server_hi: float = 300_000.0
    server_min_duration_ms: int = 1000
    server_latency_ms: float = 10.0  # explicit p99 bound; smoke's default (100 ms) passes nearly any load


FULL = Plan(rounds={"heavy": 3, "light": 5}, server_steps=4)
QUICK = Plan(rounds={"heavy": 2, "light": 3}, server_steps=3)
#: Heavy model's min_query_count (smoke: 100, 4+ s a run): 64 is the least with which SingleStream's early
#: stopping can pass, and it makes Offline run two full batches.
HEAVY_MIN_QUERIES = 64

TARGETS = {
    ("Offline", "QPS"): (">=", 0.98),
    ("SingleStream", "QPS"): (">=", 0.97),
    ("SingleStream", "p90"): ("<=", 1.03),
}
#: Issue 15's targets for the other engines, each against its own bare loop, on the heavy model (no p90 target).
ENGINE_TARGETS = {("Offline", "QPS"): (">=", 0.97), ("SingleStream", "QPS"): (">=", 0.95)}
SERVER_TARGET_QPS = 100_000.0
#: Models whose rows also get the "LoadGen floor" reference (a minimal SUT calling session.run inline).
FLOOR_MODELS = ("light",)


class TimedBackend:
    """Wraps the harness's backend to add up the seconds spent inside ``run`` (two clock reads per call)."""

    thread_safe = True
    model_identity = None

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name, self.version = inner.name, inner.version
        self.busy_s = 0.0

    def run(self, batch: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.inner.run(batch)
        finally:
            self.busy_s += time.perf_counter() - start

    def warmup(self, sample: Any) -> None:
        self.inner.warmup(sample)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()


#: --backend: the engine the harness and the bare loop both run (engines that read the ONNX models).
ENGINE = "onnxruntime"
#: --record-latencies: run the harness with LoadGen's trace on, as the gate's sessions do.
RECORD_LATENCIES = False
#: --wait-idle: before each arm, wait (up to WAIT_IDLE_MAX_S) until the CPUs are this idle; None: do not wait.
WAIT_IDLE: float | None = None
WAIT_IDLE_MAX_S = 120.0
#: Arms that started after waiting WAIT_IDLE_MAX_S without seeing the machine idle (reported with the table).
BUSY_STARTS: list[str] = []


def cpu_busy(interval_s: float = 0.5) -> float:
    """Share of all CPUs' time that was not idle over *interval_s* (Linux /proc/stat): this process is idle meanwhile,
    so on a shared machine it is what the others use."""

    def read() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:]]
        return sum(ticks), ticks[3] + ticks[4]  # idle + iowait

    total0, idle0 = read()
    time.sleep(interval_s)
    total1, idle1 = read()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_idle(what: str) -> None:
    """With --wait-idle, hold *what* until other processes leave the CPUs idle enough (or WAIT_IDLE_MAX_S passed)."""
    if WAIT_IDLE is None:
        return
    deadline = time.monotonic() + WAIT_IDLE_MAX_S
    while cpu_busy() > WAIT_IDLE:
        if time.monotonic() > deadline:
            BUSY_STARTS.append(what)
            return


class FixedSettingsHarness(Harness):
    """The library's Harness; smoke settings are calibrated once per case and reused in later rounds.

    Every round then asks LoadGen for the same work (the same Offline sample count, the same SingleStream
    settings), so that the bare loop can repeat exactly that work.
    """

    def __init__(self, config: RunConfig, rootdir: Path) -> None:
        super().__init__(config, rootdir)
        self._fixed: dict[str, tuple[loadgen.SettingsSpec, dict[str, Any]]] = {}
        self.timed: dict[str, TimedBackend] = {}

    def backends_for(self, model: Path | str, count: int = 1, engine: str | None = None) -> list[Backend]:
        if str(model) not in self.timed:
            self.timed[str(model)] = TimedBackend(super().backends_for(model, engine=engine)[0])
        return [self.timed[str(model)]]

    def settings_for(self, case: Case, backend: Backend) -> tuple[loadgen.SettingsSpec, dict[str, Any]]:
        if case.id not in self._fixed:
            self._fixed[case.id] = super().settings_for(case, backend)
        spec, values = self._fixed[case.id]
        if isinstance(backend, TimedBackend):
            backend.busy_s = 0.0  # Harness.run calls run_test right after this: count that run only
        return spec, dict(values)


@dataclass
class Series:
    """Values of one metric over the rounds: the harness, the bare loop and (optionally) the LoadGen floor."""

    harness: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)  # harness: share of LoadGen's run time inside backend.run

    @property
    def ratios(self) -> list[float]:
        return [h / b for h, b in zip(self.harness, self.bare, strict=True)]

    @property
    def floor_ratios(self) -> list[float]:
        return [f / b for f, b in zip(self.floor, self.bare, strict=False)]


@dataclass
class Row:
    model: str
    scenario: str
    metric: str
    unit: str
    series: Series
    target: tuple[str, float] | None


Infer = Callable[[np.ndarray], Any]


def bare_infer(sess: ort.InferenceSession) -> Infer:
    """``session.run`` of the first output, as a bare loop calls it."""
    name, out, run = sess.get_inputs()[0].name, sess.get_outputs()[0].name, sess.run
    return lambda batch: run([out], {name: batch})


def bare_offline(infer: Infer, pool: np.ndarray, samples: int, batch: int) -> float:
    """Samples/s of the engine over *samples* samples in batches of *batch*, cut from a preloaded block."""
    per_pool = len(pool) // batch
    batches = [pool[i * batch : (i + 1) * batch] for i in range(per_pool)]
    tail = pool[: samples % batch]
    full = samples // batch
    t0 = time.perf_counter()
    for i in range(full):
        infer(batches[i % per_pool])
    if len(tail):
        infer(tail)
    return samples / (time.perf_counter() - t0)


def bare_single_stream(infer: Infer, pool: np.ndarray, queries: int) -> tuple[float, float]:
    """(QPS, p90 latency in s) of *queries* back-to-back batch-1 inferences on random samples."""
    order = np.random.default_rng(queries).integers(0, len(pool), queries)
    lat = np.empty(queries)
    clock = time.perf_counter
    t0 = clock()
    for k, i in enumerate(order):
        s = clock()
        infer(pool[i : i + 1])
        lat[k] = clock() - s
    total = clock() - t0
    return queries / total, float(np.percentile(lat, 90))


def loadgen_floor(
    sess: ort.InferenceSession, pool: np.ndarray, scenario: str, values: dict[str, Any], batch: int, log_dir: Path
) -> tuple[float, float]:
    """(QPS, p90 ms) of LoadGen with a minimal FastSUT: ``session.run`` inline in the issue callback, no harness.

    The same TestSettings as the harness run; it shows what LoadGen itself costs against the bare loop.
    """
    name, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    complete, response = lg.QuerySamplesComplete, lg.QuerySampleResponse

    def issue(ids: Sequence[int], indices: Sequence[int]) -> None:
        for start in range(0, len(ids), batch):
            rows = sess.run([out], {name: pool.take(indices[start : start + batch], axis=0)})[0]
            ptr, stride = rows.ctypes.data, rows.strides[0]
            complete([response(q, ptr + j * stride, stride) for j, q in enumerate(ids[start : start + batch])])

    detail = _bare_loadgen(issue, len(pool), scenario, values, log_dir)
    return detail.qps or 0.0, detail.latency_ns.get("p90", 0) / 1e6


def _bare_loadgen(
    issue: Callable[[Sequence[int], Sequence[int]], None],
    count: int,
    scenario: str,
    values: dict[str, Any],
    log_dir: Path,
) -> logs.DetailLog:
    settings = loadgen.build_settings(loadgen.SettingsSpec(scenario=scenario, mode="performance", values=values))
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(log_dir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_dir.mkdir(parents=True, exist_ok=True)
    sut = lg.ConstructFastSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(count, count, lambda s: None, lambda s: None)
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log_settings, "")
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroyFastSUT(sut)
    return logs.read_detail(log_dir / "mlperf_log_detail.txt")


def bare_server(values: dict[str, Any], log_dir: Path) -> tuple[bool, float, float]:
    """(VALID, completed QPS, p99 ms) of a bare ConstructFastSUT completing inline, with the harness's settings."""
    buf = np.zeros(1, dtype=np.float32)
    ptr, size = buf.ctypes.data, buf.nbytes
    complete, response = lg.QuerySamplesComplete, lg.QuerySampleResponse

    def issue(ids: Sequence[int], indices: Sequence[int]) -> None:
        complete([response(i, ptr, size) for i in ids])

    detail = _bare_loadgen(issue, 1024, "Server", values, log_dir)
    return bool(detail.valid), detail.qps or 0.0, detail.latency_ns.get("p99", 0) / 1e6


def _check(result: RunResult) -> RunResult:
    if not result.valid:
        print(f"  warning: {result.id} INVALID: {'; '.join(result.validity_reasons)}", file=sys.stderr)
    return result


def _drop(result: RunResult) -> None:
    return None


class LocalBare:
    """The bare loop's two measurements for one engine call, on the preloaded *pool*."""

    def __init__(self, infer: Infer, pool: np.ndarray, batch: int) -> None:
        self.infer, self.pool, self.batch = infer, pool, batch
        for warm in (pool[:batch], pool[:1]):  # as the harness's warm-up and calibration do
            infer(warm)

    def offline(self, samples: int) -> float:
        return bare_offline(self.infer, self.pool, samples, self.batch)

    def single_stream(self, queries: int) -> tuple[float, float]:
        return bare_single_stream(self.infer, self.pool, queries)

    def close(self) -> None:
        return None


class TorchEngineBare(LocalBare):
    """The torch bare loop: the harness backend's own TorchScript module called directly under
    ``torch.inference_mode``, each whole timed loop run as one call on the torch engine thread.

    Why there: torch's CPU kernels run on OpenMP, and libgomp keeps a worker team per thread that starts torch work;
    once two teams exist there are more OpenMP threads than cores and libgomp stops idle workers from spinning, which
    slows every kernel (the torch backend runs all its calls on one thread for that reason). A loop on any other
    thread of this process would start a second team; a loop in another process would load its own copy of the
    module, whose TorchScript plan can differ in speed from one load to the next. On the engine thread the bare loop
    runs the very module the harness runs, with the same team and thread count, and no hand-off per call.
    """

    def __init__(self, module: Any, pool: np.ndarray, batch: int) -> None:
        import torch

        from pytest_mlperf.backends.torch import engine_thread

        self._engine = engine_thread()
        mode, from_numpy = torch.inference_mode, torch.from_numpy

        def infer(batch_: np.ndarray) -> Any:
            with mode():
                return module(from_numpy(batch_))["logits"].numpy()

        self._engine.call(lambda: LocalBare.__init__(self, infer, pool, batch))

    def offline(self, samples: int) -> float:
        result: float = self._engine.call(lambda: LocalBare.offline(self, samples))
        return result

    def single_stream(self, queries: int) -> tuple[float, float]:
        result: tuple[float, float] = self._engine.call(lambda: LocalBare.single_stream(self, queries))
        return result


def prepare_engine(
    onnx_path: Path,
    name: str,
    sample: np.ndarray,
    reference: Infer,
    threads: int,
    batch: int,
    log: Callable[[str], None],
) -> LocalBare | None:
    """Convert or compile *onnx_path* for ENGINE into the cache (timed apart from the measurement), check the engine's
    logits against onnxruntime's (*reference*) on *sample*, and return the bare loop for ENGINE (None for torch: its
    bare loop runs the harness backend's module, see TorchEngineBare)."""
    started = time.perf_counter()
    path = engine_model(onnx_path, ENGINE)  # a SavedModel, .tflite or TorchScript for engines that do not read ONNX
    # Building the backend compiles what the engine compiles (TVM: the library, cached for the harness to reuse).
    engine_backend = create_backend(ENGINE, path, BackendOptions(intra_op_threads=threads, batch_size=batch))
    prepared = time.perf_counter() - started
    built = getattr(engine_backend, "built", None)
    outputs = engine_backend.run(sample)
    got = outputs.get("logits", next(iter(outputs.values())))
    want = reference(sample)[0]
    diff, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
    log(
        f"  {name}: {ENGINE} model {path.name} ready in {prepared:.1f} s"
        + ("" if built is None else (" (compiled now)" if built else " (compiled library from the cache)"))
        + f"; logits vs onnxruntime on {len(sample)} samples: max abs diff {diff:.3g} (max |logit| {scale:.3g})"
    )
    inputs, _ = random_inputs(name)
    if ENGINE == "torch":
        engine_backend.close()
        return None
    # The engine's own wrapper called in a loop: its bare speed, without LoadGen or the harness.
    return LocalBare(engine_backend.run, inputs, batch)


def prepare_only(name: str, log: Callable[[str], None]) -> None:
    """--prepare-only: build *name* for ENGINE into the cache and check it, measuring nothing."""
    path, threads, batch = ensure_model(name), len(usable_cpus()), RunConfig().batch_size
    inputs, _ = random_inputs(name)
    if ENGINE != "onnxruntime":
        bare = prepare_engine(path, name, inputs[:batch], bare_infer(bare_session(path, threads)), threads, batch, log)
        if bare is not None:
            bare.close()


def measure_model(name: str, plan: Plan, root: Path, log: Callable[[str], None]) -> tuple[list[Row], str]:
    path = ensure_model(name)
    threads = len(usable_cpus())
    inputs, dataset = random_inputs(name)
    batch = RunConfig().batch_size
    sess = bare_session(path, threads)
    if ENGINE == "onnxruntime":
        bare: LocalBare | None = LocalBare(bare_infer(sess), inputs, batch)
    else:
        bare = prepare_engine(path, name, inputs[:batch], bare_infer(sess), threads, batch, log)
        path = engine_model(path, ENGINE)  # cached by prepare_engine
    overrides = Overrides(min_query_count=HEAVY_MIN_QUERIES) if name == "heavy" else Overrides()
    config = RunConfig(
        profile="smoke", threads=threads, log_dir=root / name, overrides=overrides, record_latencies=RECORD_LATENCIES,
        backend=ENGINE,
    )
    harness = FixedSettingsHarness(config, root)
    busy_backend = harness.backend_for(path)
    assert isinstance(busy_backend, TimedBackend)
    if bare is None:  # torch: the harness backend's module, on its engine thread
        bare = TorchEngineBare(busy_backend.inner._module, inputs, batch)  # type: ignore[attr-defined]
    offline, ss_qps, ss_p90 = Series(), Series(), Series()
    # What the latest harness run asked of LoadGen; the bare loop and the floor repeat it.
    work: dict[str, Any] = {}

    def run_harness(scenario: str, rnd: int) -> None:
        case = Case(f"{name}-{scenario}", path, dataset, scenario, "performance", repeat=rnd)
        r = _check(harness.run(case, _drop))
        work[scenario] = dict(r.overrides)
        qps = r.metrics.qps or float("nan")
        if scenario == "Offline":
            work["samples"] = int(r.settings["samples_per_query"])
            offline.harness.append(qps)
            offline.busy.append(busy_backend.busy_s / (work["samples"] / qps))
        else:
            work["queries"] = logs.read_detail(Path(r.log_dir) / "mlperf_log_detail.txt").query_count or 0
            ss_qps.harness.append(qps)
            ss_qps.busy.append(busy_backend.busy_s / (work["queries"] / qps))
            ss_p90.harness.append((r.metrics.latency_ns or {}).get("p90", 0) / 1e6)

    def run_bare(scenario: str, rnd: int) -> None:
        if scenario == "Offline":
            offline.bare.append(bare.offline(work["samples"]))
        else:
            qps, p90 = bare.single_stream(work["queries"])
            ss_qps.bare.append(qps)
            ss_p90.bare.append(p90 * 1e3)

    def run_floor(scenario: str, rnd: int) -> None:
        log_dir = root / "floor" / f"{name}-{scenario}-{rnd}"
        qps, p90 = loadgen_floor(sess, inputs, scenario, work[scenario], batch, log_dir)
        if scenario == "Offline":
            offline.floor.append(qps)
        else:
            ss_qps.floor.append(qps)
            ss_p90.floor.append(p90)

    with_floor = name in FLOOR_MODELS and ENGINE == "onnxruntime"  # the floor is LoadGen around ORT itself
    arms = [run_harness, run_bare, run_floor] if with_floor else [run_harness, run_bare]
    for rnd in range(plan.rounds[name]):
        # Rotate the order each round; round 0 starts with the harness, which fixes the work the others repeat.
        order = arms[rnd % len(arms) :] + arms[: rnd % len(arms)]
        for scenario in ("Offline", "SingleStream"):
            for arm in order:
                wait_idle(f"{name} {scenario} {arm.__name__} round {rnd + 1}")
                arm(scenario, rnd)
        floor_note = (
            f"; floor {offline.floor_ratios[-1]:.3f} / {ss_qps.floor_ratios[-1]:.3f} / {ss_p90.floor_ratios[-1]:.3f}"
            if with_floor
            else ""
        )
        log(
            f"  {name} round {rnd + 1}/{plan.rounds[name]}: Offline {offline.ratios[-1]:.3f}, SingleStream QPS "
            f"{ss_qps.ratios[-1]:.3f}, p90 {ss_p90.ratios[-1]:.3f}{floor_note} ({work['samples']} samples, "
            f"{work['queries']} queries)"
        )
    bare.close()
    note = f"{name}: {work['samples']} Offline samples, ~{work['queries']} SingleStream queries per run" + (
        f" (min_query_count {overrides.min_query_count})" if overrides.min_query_count else " (smoke defaults)"
    )
    targets: dict[tuple[str, str], tuple[str, float]] = TARGETS
    if ENGINE != "onnxruntime":
        targets = ENGINE_TARGETS if name == "heavy" else {}
    rows = [
        Row(name, "Offline", "QPS", "samples/s", offline, targets.get(("Offline", "QPS"))),
        Row(name, "SingleStream", "QPS", "queries/s", ss_qps, targets.get(("SingleStream", "QPS"))),
        Row(name, "SingleStream", "p90", "ms", ss_p90, targets.get(("SingleStream", "p90"))),
    ]
    return rows, note


@dataclass
class Search:
    """Geometric bisection for the highest target QPS that comes out VALID.

    Noise on a shared machine makes runs fail, rarely pass: an INVALID point is retried once before the
    search believes it (except the upper bound, which only checks whether everything passes).
    """

    lo: float
    hi: float
    steps: int
    best: float | None = None  # highest VALID target
    best_qps: float = 0.0  # completed samples/s at that target
    tried: list[tuple[float, bool]] = field(default_factory=list)
    decided: list[tuple[float, bool]] = field(default_factory=list)
    retry: float | None = None

    def next(self) -> float | None:
        if self.retry is not None:
            return self.retry
        if not self.decided:
            return self.lo
        if len(self.decided) == 1:
            return self.hi if self.decided[0][1] else None
        if self.decided[1][1] or len(self.decided) >= self.steps + 2:
            return None
        return math.sqrt(self.lo * self.hi)

    def shown(self) -> str:
        """The best VALID target; ">=" when even the upper bound passed, "<" when even the lower failed."""
        if self.best is None:
            return f"<{self.lo:,.0f}" if self.decided else "-"
        ceiling = len(self.decided) > 1 and self.decided[1][1]
        return (">=" if ceiling else "") + f"{self.best:,.0f}"

    def record(self, target: float, valid: bool, qps: float) -> None:
        self.tried.append((target, valid))
        if not valid and self.retry is None and target != self.hi:
            self.retry = target
            return
        self.retry = None
        self.decided.append((target, valid))
        if valid and (self.best is None or target > self.best):
            self.best, self.best_qps = target, qps
        if len(self.decided) > 2:
            if valid:
                self.lo = target
            else:
                self.hi = target


def measure_server(plan: Plan, root: Path, log: Callable[[str], None]) -> tuple[Search, Search]:
    dataset = ArrayDataset(np.zeros((1024, 1), dtype=np.float32), name="noop-zeros", synthetic_inputs=True)
    base = RunConfig(profile="smoke", backend="noop", log_dir=root / "noop")
    harness_search = Search(plan.server_lo, plan.server_hi, plan.server_steps)
    bare_search = Search(plan.server_lo, plan.server_hi, plan.server_steps)
    values: dict[str, Any] = {}  # the TestSettings values of the latest harness run; the bare run reuses them
    n = 0
    while True:
        progressed = False
        target = harness_search.next()
        if target is not None:
            overrides = Overrides(
                target_qps=target,
                min_duration_ms=plan.server_min_duration_ms,
                target_latency_ms=plan.server_latency_ms,
            )
            harness = Harness(base.with_(overrides=overrides), root)
            r = harness.run(Case("noop-Server", "noop", dataset, "Server", "performance", repeat=n), _drop)
            harness_search.record(target, bool(r.valid), r.metrics.qps or 0.0)
            p99 = (r.metrics.latency_ns or {}).get("p99", 0) / 1e6
            log(f"  Server harness {target:>9,.0f} -> {'VALID' if r.valid else 'INVALID'} (p99 {p99:.1f} ms)")
            values = dict(r.overrides)
            progressed = True
        target = bare_search.next()
        if target is not None:
            valid, qps, p99 = bare_server(values | {"server_target_qps": target}, root / "bare-server" / str(n))
            bare_search.record(target, valid, qps)
            log(f"  Server bare    {target:>9,.0f} -> {'VALID' if valid else 'INVALID'} (p99 {p99:.1f} ms)")
            progressed = True
        n += 1
        if not progressed:
            return harness_search, bare_search


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def _median(values: list[float]) -> str:
    return _fmt(statistics.median(values)) if values else "-"


def render(
    rows: list[Row],
    notes: list[str],
    server: tuple[Search, Search] | None,
    plan: Plan,
    elapsed: float,
    traced: bool = False,
) -> str:
    header = (
        f"{'model':<6} {'scenario':<12} {'metric':<4} {'harness':>9} {'bare':>9} {'unit':<10} {'ratio':>6} "
        f"{'spread':>13}  {'target':<8} {'':<4} {'busy':>5} {'LG floor':>9} {'floor/bare':>10}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        ratios = row.series.ratios
        ratio = statistics.median(ratios)
        verdict = target = ""
        if row.target is not None:
            op, bound = row.target
            ok = ratio >= bound if op == ">=" else ratio <= bound
            verdict, target = ("PASS" if ok else "MISS"), f"{op} {bound}"
        floor = row.series.floor_ratios
        lines.append(
            f"{row.model:<6} {row.scenario:<12} {row.metric:<4} {_median(row.series.harness):>9} "
            f"{_median(row.series.bare):>9} {row.unit:<10} {ratio:>6.3f} "
            f"{f'[{min(ratios):.3f}..{max(ratios):.3f}]':>13}  {target:<8} {verdict:<4} "
            f"{f'{statistics.median(row.series.busy):.3f}' if row.series.busy else '-':>5} "
            f"{_median(row.series.floor):>9} {f'{statistics.median(floor):.3f}' if floor else '-':>10}"
        )
    if server is not None:
        h, b = server
        h_best, b_best = h.best or 0.0, b.best or 0.0
        ratio = h_best / b_best if b_best else float("nan")
        lines.append(
            f"{'noop':<6} {'Server':<12} {'QPS':<4} {h.shown():>9} {b.shown():>9} {'max VALID':<10} "
            f"{ratio:>6.3f} {'':>13}  {'>= 100k':<8} {'PASS' if h_best >= SERVER_TARGET_QPS else 'MISS'}"
        )
    lines += [
        "",
        f"rounds: {', '.join(f'{m} {n}' for m, n in plan.rounds.items())}; within a round harness, bare (and floor) "
        "alternate per scenario, the order rotating each round. ratio = median of per-round harness/bare ratios, "
        "spread = their min..max (for p90 lower is better). harness/bare/floor columns are medians.",
        f"harness: Harness.run, smoke profile calibrated once per case, {ENGINE} backend, "
        f"{len(usable_cpus())} intra-op threads, batch 32, 1 worker; {'; '.join(notes)}.",
        (
            "bare: InferenceSession.run"
            if ENGINE == "onnxruntime"
            else "bare: the harness backend's TorchScript module called under torch.inference_mode, each loop one call "
            "on the torch engine thread"
            if ENGINE == "torch"
            else f"bare: the {ENGINE} backend's run()"
        )
        + " with the same options, sample count and batch size on preloaded contiguous "
        "batches (p90 timed around session.run). busy: share of LoadGen's measured run time that the harness spent "
        "inside backend.run, within the same run (immune to run-to-run noise). LG floor: LoadGen with a minimal "
        "FastSUT calling session.run inline, no harness (what LoadGen alone costs).",
    ]
    if server is not None:
        lines.append(
            f"Server: highest VALID target in a geometric search {plan.server_lo:,.0f}..{plan.server_hi:,.0f} "
            f"({plan.server_steps} steps, an INVALID point retried once), smoke profile, noop backend, batch 32, "
            f"min_duration {plan.server_min_duration_ms} ms, target latency {plan.server_latency_ms:g} ms (explicit: "
            "smoke's 100 ms default passes nearly any load); bare = ConstructFastSUT completing inline in the issue "
            "callback, with the harness run's TestSettings."
        )
    trace_note = " (harness with LoadGen's trace on, as under --mlperf-record-latencies)" if traced else ""
    lines.append(f"total {elapsed:.0f} s{trace_note}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="about 1 minute: fewer rounds, queries and steps")
    parser.add_argument("--rounds", type=int, help="override the number of interleaved rounds")
    parser.add_argument("--models", default="heavy,light", help="comma-separated subset of: heavy, light")
    parser.add_argument("--no-server", action="store_true", help="skip the noop Server search")
    parser.add_argument(
        "--record-latencies",
        action="store_true",
        help="run the harness as under --mlperf-record-latencies (LoadGen's trace on for the gate)",
    )
    parser.add_argument(
        "--backend",
        default="onnxruntime",
        help="engine for the harness and the bare loop: onnxruntime, another that reads ONNX (openvino, tvm, "
        "tensorrt), or litert / tensorflow / torch (the models converted from the ONNX graph, cached); the bare "
        "loop then calls that engine's backend.run (torch: the TorchScript module itself), and the LoadGen floor "
        "is left out",
    )
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="only convert or compile the models for --backend into the cache (TVM's heavy compile takes minutes), "
        "check their logits against onnxruntime, print the times, and exit; a later run reuses the cache",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        metavar="SHARE",
        help="on a shared machine: before each harness or bare run, wait until the CPUs' busy share (over 0.5 s, "
        f"from /proc/stat) is at most SHARE, e.g. 0.1; an arm that waited {WAIT_IDLE_MAX_S:.0f} s starts anyway and "
        "is listed under the table",
    )
    parser.add_argument("--json", type=Path, help="also write the raw numbers to this file")
    parser.add_argument("--keep-logs", type=Path, help="write LoadGen logs here instead of a temporary directory")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = replace(plan, rounds=dict.fromkeys(plan.rounds, args.rounds))
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s]{msg}", file=sys.stderr, flush=True)

    root = args.keep_logs or Path(tempfile.mkdtemp(prefix="mlperf-overhead-"))
    patches = contextlib.ExitStack()
    global RECORD_LATENCIES, ENGINE, WAIT_IDLE
    RECORD_LATENCIES = args.record_latencies
    WAIT_IDLE = args.wait_idle
    ENGINE = args.backend
    if ENGINE not in ("onnxruntime", "openvino", "tvm", "tensorrt", *ENGINE_CONVERTED):
        parser.error(
            f"--backend {ENGINE}: the benchmark's models are ONNX files, which {ENGINE} does not read; use "
            f"onnxruntime, openvino, tvm, tensorrt, or {' or '.join(ENGINE_CONVERTED)} (converted from the ONNX graph)"
        )
    try:
        rows: list[Row] = []
        notes: list[str] = []
        names = [m.strip() for m in args.models.split(",") if m.strip()]
        if args.prepare_only:
            for name in names:
                prepare_only(name, log)
            return 0
        for name in names:
            model_rows, note = measure_model(name, plan, root, log)
            rows += model_rows
            notes.append(note)
        server = None if args.no_server else measure_server(plan, root, log)
    finally:
        patches.close()
        if args.keep_logs is None:
            shutil.rmtree(root, ignore_errors=True)
    print(render(rows, notes, server, plan, time.perf_counter() - started, args.record_latencies))
    if WAIT_IDLE is not None:
        print(
            f"--wait-idle {WAIT_IDLE:g}: each run waited for the CPUs to be at most {WAIT_IDLE:.0%} busy; "
            + (f"{len(BUSY_STARTS)} started busy after {WAIT_IDLE_MAX_S:.0f} s: {', '.join(BUSY_STARTS)}"
               if BUSY_STARTS else "every run started idle")
        )
    if args.json:
        raw = {
            "plan": plan.__dict__,
            "rows": [
                {
                    "model": r.model,
                    "scenario": r.scenario,
                    "metric": r.metric,
                    "harness": r.series.harness,
                    "bare": r.series.bare,
                    "floor": r.series.floor,
                    "busy": r.series.busy,
                    "ratios": r.series.ratios,
                }
                for r in rows
            ],
            "server": None if server is None else {"harness": server[0].tried, "bare": server[1].tried},
        }
        args.json.write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
