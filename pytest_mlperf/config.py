"""Options, ini values, marker kwargs and user.conf -> one frozen run configuration; UsageError on bad input."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_mlperf.errors import ConfigError
from pytest_mlperf.loadgen.limits import (
    MAX_DURATION_MS,
    MAX_LATENCY_MS,
    MAX_QPS,
    MAX_QUERY_COUNT,
    MIN_QPS,
    Bound,
    fmt_number,
)
from pytest_mlperf.loadgen.userconf import check_user_conf
from pytest_mlperf.provisioning.cache import ENV_CACHE, default_cache_dir
from pytest_mlperf.provisioning.inputs import (
    DEFAULT_DOWNLOAD_MIN_RATE,
    DEFAULT_DOWNLOAD_TIMEOUT_S,
    ENV_ASSET_PREFIX,
    ENV_MIRROR,
    ENV_OFFLINE,
    absolute_path,
    check_override_names,
    parse_asset_spec,
    parse_mirror,
)
from pytest_mlperf.rules import (
    AUTO_ROUNDS,
    DEFAULT_ALPHA,
    DEFAULT_FLOOR,
    MODE_CHOICES,
    MODES,
    PROFILES,
    SCENARIOS,
    SMOKE_MIN_DURATION_MS,
)

#: Upper ends of the download bounds' ranges: a week, and 1 TB/s.
MAX_DOWNLOAD_TIMEOUT_S = 7 * 24 * 3600.0
MAX_DOWNLOAD_MIN_RATE = 1e12

#: Ranges of the find-peak options: the bracket's relative width, and the confirmation runs at the peak.
MIN_PEAK_RESOLUTION, MAX_PEAK_RESOLUTION = 0.005, 0.5
MAX_PEAK_CONFIRM = 10
#: The most configurations one --mlperf-sweep may expand to: each multiplies every case.
MAX_CONFIGURATIONS = 256

#: Marker kwargs accepted by ``@pytest.mark.mlperf(...)``.
MARKER_KWARGS = frozenset({"accuracy", "latency_ms", "min_qps", "model_name"})

#: Upper limits of the engine options (each OptionSpec says why).
MAX_THREADS = 1024
MAX_BATCH_SIZE = 4096
MAX_WORKERS = 256
#: Runs per performance case: more would take days without changing what the gate decides.
MAX_REPEAT = 1000


class UsageProblem(ValueError):
    """A bad option value; the plugin turns it into ``pytest.UsageError``."""


@dataclass(frozen=True)
class OptionSpec:
    """One ``--mlperf-*`` flag and its ini twin, declared once and wired by the plugin.

    The default is declared here and nowhere else: ``default`` is the value an unset option takes, written as a
    user would give it (parsed like a given value, so RunConfig's defaults and the help text derive from it), or
    None with ``default_help`` saying in words what decides instead (an env var, the profile, the case's marker).
    """

    name: str  # e.g. "min-duration-ms" -> --mlperf-min-duration-ms / mlperf_min_duration_ms
    about: str  # what it sets, then the accepted values; the help adds the default
    default: Any = None
    kind: str = "string"  # string | int | float | bool | list (repeatable flag; ini: one value per line)
    metavar: str | None = None
    default_help: str | None = None
    #: The accepted values of a numeric option, and why the limits are where they are (said when refusing).
    bound: Bound | None = None
    why: str = ""

    def __post_init__(self) -> None:
        if "Default:" in self.about:
            raise ValueError(f"{self.flag}: declare the default with default= or default_help=, not in the text")
        if (self.default is None) == (self.default_help is None):
            raise ValueError(f"{self.flag}: give exactly one of default= (a value) and default_help= (words)")
        if self.kind in ("int", "float") and self.bound is None:
            raise ValueError(f"{self.flag}: a numeric option declares its accepted range with bound=")

    @property
    def flag(self) -> str:
        return f"--mlperf-{self.name}"

    @property
    def dest(self) -> str:
        return "mlperf_" + self.name.replace("-", "_")

    @property
    def ini(self) -> str:
        return self.dest

    @property
    def default_text(self) -> str:
        """The default as the help shows it."""
        if self.default_help is not None:
            return self.default_help
        if isinstance(self.default, bool):
            return "on" if self.default else "off"
        return str(self.default)

    @property
    def help(self) -> str:
        accepted = f" Accepted: {self.bound.text()}." if self.bound is not None else ""
        return f"{self.about}{accepted} Default: {self.default_text}."

    def check(self, value: Any, source: str | None = None) -> Any:
        """*value* if it lies in the declared range (None passes); UsageProblem naming the option otherwise."""
        if value is None or self.bound is None:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not self.bound.contains(float(value)):
            why = f" ({self.why})" if self.why else ""
            shown = fmt_number(value) if isinstance(value, int | float) and not isinstance(value, bool) else repr(value)
            raise UsageProblem(f"{source or self.flag}: {shown} is not valid; it must be {self.bound.text()}{why}")
        return value


# Help rule: one sentence saying what the option sets, then the accepted values; the default is appended.
OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("scenarios", "LoadGen scenarios to run, comma-separated: SingleStream, MultiStream, Server, "
               "Offline.", ",".join(SCENARIOS), metavar="LIST"),
    OptionSpec("mode", "What to measure: performance, accuracy or both.", "both", metavar="MODE"),
    OptionSpec("profile", "Run rules: smoke (short runs with declared overrides and calibrated targets) or "
               "official (mlperf.conf unchanged).", "smoke", metavar="NAME"),
    OptionSpec("min-duration-ms", "Override LoadGen's min_duration for every case, in ms.", kind="int",
               metavar="MS", default_help=f"{SMOKE_MIN_DURATION_MS} in smoke, mlperf.conf in official",
               bound=Bound(0, MAX_DURATION_MS, "ms"), why="a week; an official run lasts 10 minutes"),
    OptionSpec("min-query-count", "Override LoadGen's min_query_count for every case.", kind="int", metavar="N",
               default_help="per scenario in smoke, mlperf.conf in official", bound=Bound(1, MAX_QUERY_COUNT),
               why="LoadGen builds every query in memory before the run starts"),
    OptionSpec("target-qps", "Set Server target QPS and Offline expected QPS.", kind="float", metavar="QPS",
               default_help="calibrated by a short warm-up in smoke", bound=Bound(MIN_QPS, MAX_QPS, "QPS"),
               why="a Server run below it would take days to issue its queries"),
    OptionSpec("target-latency-ms", "Set Server's target latency (its p99 bound), in ms.", kind="float",
               metavar="MS", default_help="the case's latency bound, else mlperf.conf",
               bound=Bound(0, MAX_LATENCY_MS, "ms", low_open=True), why="an hour at most"),
    OptionSpec("user-conf", "A LoadGen user.conf applied after mlperf.conf (lines `model.scenario.key = "
               "value`).", metavar="PATH", default_help="none"),
    OptionSpec("results", "Where to write the session's results JSON.", "mlperf-results/results.json",
               metavar="PATH"),
    OptionSpec("log-dir", "Directory for each case's LoadGen logs (one sub-directory per case).",
               "mlperf-results/logs", metavar="DIR"),
    OptionSpec("accuracy-target", "Minimum top-1 accuracy for accuracy cases, as a fraction (0.97) or "
               "percent (97).", kind="float", metavar="X", default_help="the case's marker", bound=Bound(0, 100)),
    OptionSpec("latency-bound-ms", "Latency bound at the scenario's percentile (SingleStream p90, "
               "MultiStream and Server p99), in ms.", kind="float", metavar="MS", default_help="the case's marker",
               bound=Bound(0, MAX_LATENCY_MS, "ms", low_open=True), why="an hour at most"),
    OptionSpec("min-qps", "Throughput floor in samples/s for Offline, Server and SingleStream.", kind="float",
               metavar="QPS", default_help="the case's marker", bound=Bound(0, math.inf, "QPS"),
               why="a pass/fail limit: it never reaches LoadGen, so only finiteness matters"),
    OptionSpec("backend-option", "An engine-specific setting for the backend, as KEY=VALUE (e.g. outputs=ArgMax:0 "
               "for onnxruntime); repeatable, the last value of a key wins (ini: one per line).", kind="list",
               metavar="KEY=VALUE", default_help="none"),
    OptionSpec("backend", "Inference backend: onnxruntime, openvino, litert, torch, tensorflow, tvm, tensorrt, noop "
               "(harness cost only), or one a plugin adds through pytest_mlperf_make_backend.", "onnxruntime",
               metavar="NAME"),
    OptionSpec("backends", "Run every case on each of these backends, comma-separated, parametrized like the "
               "scenarios (ids like test_x[openvino-Offline-performance]); `installed` means every engine whose "
               "package is importable here.", default_help="--mlperf-backend alone, unparametrized",
               metavar="LIST"),
    OptionSpec("providers", "ONNX Runtime execution providers in priority order, comma-separated, e.g. "
               "CUDAExecutionProvider,CPUExecutionProvider.", "CPUExecutionProvider", metavar="LIST"),
    OptionSpec("threads", "Intra-op threads per inference session; 0 means one per usable core.", 0, kind="int",
               metavar="N", bound=Bound(0, MAX_THREADS),
               why="more threads than cores only oversubscribe them, and engines fail to start tens of thousands"),
    OptionSpec("batch-size", "Largest batch for Offline and Server.", 32, kind="int", metavar="N",
               bound=Bound(1, MAX_BATCH_SIZE),
               why="a batch is one tensor in memory; larger ones exhaust it, and no MLPerf submission uses them"),
    OptionSpec("server-batch", "Server batch cap: auto (the largest batch whose measured samples/s pays for its "
               "latency, never above --mlperf-batch-size) or a number that forces it.", "auto",
               metavar="auto|N"),
    OptionSpec("server-max-wait-us", "How long the Server batcher may hold a query to fill a batch, in "
               "microseconds; 0 batches only what is already queued.", 0, kind="int", metavar="US",
               bound=Bound(0, 60_000_000, "us"), why="a minute; every Server latency bound is far shorter"),
    OptionSpec("cache-dir", "Where models, datasets and built artefacts are cached.", metavar="DIR",
               default_help=f"${ENV_CACHE}, else the user cache dir (~/.cache/pytest-mlperf)"),
    OptionSpec("workers", "Inference threads for Offline and Server.", 1, kind="int", metavar="N",
               bound=Bound(1, MAX_WORKERS), why="each worker holds its own copy of the model"),
    OptionSpec("stall-timeout-s", "Fail a run when its engine has answered no query for this many seconds while "
               "queries wait (a call that never returns), and end the session: LoadGen cannot run again while one "
               "of its runs hangs.", 600, kind="int", metavar="S",
               bound=Bound(1, 604_800, "seconds"), why="a week; no engine call legitimately takes longer"),
    OptionSpec("baseline", "A results JSON to gate against: each case is compared with its runs there, and a "
               "significant regression beyond the floor fails it.", metavar="PATH", default_help="no comparison"),
    OptionSpec("repeat", "How many times each performance case runs (repeats 0..N-1), pooled for the gate; "
               f"auto runs {AUTO_ROUNDS[0]} to {AUTO_ROUNDS[1]}, stopping once the comparison with "
               f"--mlperf-baseline is decided ({AUTO_ROUNDS[0]} without a baseline).", "1", metavar="N|auto"),
    OptionSpec("alpha", "Significance level of the baseline comparison, between 0 and 1.", DEFAULT_ALPHA,
               kind="float", metavar="X", bound=Bound(0, 1, low_open=True, high_open=True)),
    OptionSpec("floor", "Smallest relative change the gate acts on, as a fraction (0.05) or percent (5%).",
               DEFAULT_FLOOR, metavar="X"),
    OptionSpec("reuse-load", "A results JSON whose Server target QPS and Offline expected QPS each case reuses "
               "instead of calibrating, so separate sessions run under the same load (what A/B runs need).",
               metavar="PATH", default_help="calibrate (or reuse --mlperf-baseline's)"),
    OptionSpec("record-latencies", "Keep every query's latency (from LoadGen's trace) in the results JSON, as the "
               "regression gate needs; the trace costs LoadGen throughput on very fast models.", kind="bool",
               default_help="on with --mlperf-baseline, else off"),
    OptionSpec("force-compare", "Compare against the baseline even when machine, software or settings "
               "fingerprints differ (the differences are still reported).", False, kind="bool"),
    OptionSpec("mirror", "Base URL of a mirror tried before each asset's own URLs (serving URL/<filename>).",
               metavar="URL", default_help=f"${ENV_MIRROR}, else none"),
    OptionSpec("offline", "Never touch the network: assets come from the cache, local paths or installed "
               "packages, and cases needing anything else are skipped.", kind="bool",
               default_help=f"${ENV_OFFLINE}, else off"),
    OptionSpec("asset", "Use a local file or directory for one manifest entry, as NAME=PATH; repeatable (ini: one "
               "per line, paths relative to the rootdir).", kind="list", metavar="NAME=PATH",
               default_help=f"${ENV_ASSET_PREFIX}<NAME>, else none"),
    OptionSpec("manifest", "An extra YAML manifest whose entries add to or replace the packaged ones by name; "
               "repeatable, later files win (ini: one per line, relative to the rootdir).", kind="list",
               metavar="PATH", default_help="none"),
    OptionSpec("strict-assets", "Fail, instead of skip, the cases whose model or dataset cannot be had here "
               "(for CI that must not skip silently).", False, kind="bool"),
    OptionSpec("download-timeout", "The most seconds one URL's download may take, all its attempts together.",
               DEFAULT_DOWNLOAD_TIMEOUT_S, kind="float", metavar="S",
               bound=Bound(0, MAX_DOWNLOAD_TIMEOUT_S, "seconds", low_open=True), why="a week at most"),
    OptionSpec("download-min-rate", "The slowest download kept going, in bytes/s averaged over 30 s (0 turns the "
               "check off).", DEFAULT_DOWNLOAD_MIN_RATE, kind="float", metavar="BYTES_PER_S",
               bound=Bound(0, MAX_DOWNLOAD_MIN_RATE, "bytes/s"), why="1 TB/s at most"),
    OptionSpec("progress", "How often a running LoadGen test reports elapsed time, samples completed and the "
               "current samples/s: auto (every 10 s on a terminal, every minute in a CI log), off, or seconds "
               "(0.1 to 3600).", "auto", metavar="auto|off|S"),
    OptionSpec("sweep", "Run every case once per configuration of a design-space sweep, as KEY=V1,V2 (KEY: threads, "
               "batch_size, workers, server_max_wait_us, or a backend option); repeatable, the product of all keys "
               f"(at most {MAX_CONFIGURATIONS} configurations; ini: one per line); a Pareto report ends the session.",
               kind="list", metavar="KEY=V1,V2", default_help="no sweep"),
    OptionSpec("find-peak", "Search each Server case's highest target QPS that LoadGen reports VALID under its "
               "latency bound, and each Offline case's highest VALID samples/s, recording every point tried.",
               False, kind="bool"),
    OptionSpec("find-peak-resolution", "How close find-peak brackets the Server peak: it stops once the lowest "
               f"INVALID load is within this fraction of the highest VALID one, as 0.05 or 5% ({MIN_PEAK_RESOLUTION:g} "
               f"to {MAX_PEAK_RESOLUTION:g}).", "0.05", metavar="X"),
    OptionSpec("find-peak-confirm", "Extra runs at the peak that must all be VALID before find-peak accepts it; "
               "a failed one lowers the peak and the search goes on.", 1, kind="int", metavar="N",
               bound=Bound(0, MAX_PEAK_CONFIRM, "runs")),
    OptionSpec("compliance", "After each performance case, run the MLPerf compliance tests its benchmark requires "
               "(TEST01 and TEST04; a model of your own gets both), each in its own log folder with its audit.config, "
               "verified as the official scripts do; a failed test fails the case.", False, kind="bool"),
    OptionSpec("verify-cache", "Re-hash cached files and extracted archives instead of trusting their stamps, and "
               "fetch or extract again what no longer matches (slower; for nightly jobs and suspicious caches).",
               False, kind="bool"),
)

_SPECS = {spec.name: spec for spec in OPTIONS}


def _default(name: str) -> Any:
    """The declared default of option *name* (RunConfig's field defaults are derived from it)."""
    return _SPECS[name].default


def _split_list(raw: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,\s]+", raw) if part.strip()]


@dataclass(frozen=True)
class ListValue:
    """The raw values of a list option: the ini lines, then the repeated flag (which come later and win)."""

    ini: tuple[str, ...] = ()
    cli: tuple[str, ...] = ()


@dataclass(frozen=True)
class Thresholds:
    """Pass/fail limits of one case; None means not enforced."""

    accuracy: float | None = None  # fraction, 0..1
    latency_ms: float | None = None  # at the scenario's percentile
    min_qps: float | None = None

    def merged(self, other: Thresholds) -> Thresholds:
        """Values of *other* win where set (command line over marker over suite default)."""
        return Thresholds(
            accuracy=other.accuracy if other.accuracy is not None else self.accuracy,
            latency_ms=other.latency_ms if other.latency_ms is not None else self.latency_ms,
            min_qps=other.min_qps if other.min_qps is not None else self.min_qps,
        )


@dataclass(frozen=True)
class Overrides:
    """LoadGen settings the user forced; None leaves the profile's choice."""

    min_duration_ms: int | None = None
    min_query_count: int | None = None
    target_qps: float | None = None
    target_latency_ms: float | None = None


@dataclass(frozen=True)
class RunConfig:
    """Everything the session needs, validated once at configure time."""

    # Defaults come from the option table, parsed as a given value would be.
    scenarios: tuple[str, ...] = field(default_factory=lambda: parse_scenarios(_default("scenarios")))
    modes: tuple[str, ...] = field(default_factory=lambda: parse_mode(_default("mode")))
    profile: str = _default("profile")
    overrides: Overrides = field(default_factory=Overrides)
    user_conf: Path | None = None
    results_path: Path = Path(_default("results"))
    log_dir: Path = Path(_default("log-dir"))
    thresholds: Thresholds = field(default_factory=Thresholds)
    backend: str = _default("backend")
    #: ``--mlperf-backends``: the engines every case is parametrized over; None: only ``backend``, unparametrized.
    backends: tuple[str, ...] | None = None
    #: ``--mlperf-backend-option`` pairs in the order given (the backend reads the last value of a key).
    backend_options: tuple[tuple[str, str], ...] = ()
    providers: tuple[str, ...] = tuple(_split_list(_default("providers")))
    threads: int = _default("threads")
    batch_size: int = _default("batch-size")
    #: ``--mlperf-server-batch``: a forced Server batch cap; None (auto) measures it (calibrate.server_batch).
    server_batch: int | None = field(
        default_factory=lambda: parse_server_batch(_default("server-batch"), _default("batch-size"))
    )
    server_max_wait_us: int = _default("server-max-wait-us")
    stall_timeout_s: int = _default("stall-timeout-s")
    workers: int = _default("workers")
    cache_dir: Path = field(default_factory=lambda: default_cache_dir())
    repeat: int = int(_default("repeat"))
    #: --mlperf-repeat auto: ``repeat`` is then the most runs, and each case stops once its comparison is decided.
    adaptive: bool = False
    baseline: Path | None = None
    #: The baseline's results document, read and checked once at configure time.
    baseline_document: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    alpha: float = _default("alpha")
    floor: float = field(default_factory=lambda: parse_fraction(_default("floor"), "--mlperf-floor"))
    force_compare: bool = _default("force-compare")
    record_latencies: bool = False
    #: ``--mlperf-reuse-load``'s document: load targets to reuse, before the baseline's.
    load_document: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    mirror: str | None = None  # None: $PYTEST_MLPERF_MIRROR decides
    offline: bool | None = None  # None: $PYTEST_MLPERF_OFFLINE decides
    #: ``--mlperf-asset`` overrides, name -> absolute path (the last value for a name wins).
    assets: tuple[tuple[str, Path], ...] = ()
    #: Extra manifests, absolute, in the order they apply (after the packaged ones).
    manifests: tuple[Path, ...] = ()
    strict_assets: bool = _default("strict-assets")
    download_timeout_s: float = _default("download-timeout")
    download_min_rate: float = _default("download-min-rate")
    verify_cache: bool = _default("verify-cache")
    #: ``--mlperf-progress``: seconds between progress lines; 0.0 (auto) lets the terminal decide, None is off.
    progress_s: float | None = 0.0
    #: ``--mlperf-sweep``: (key, values) axes, in the order given; every case runs once per configuration.
    sweep: tuple[tuple[str, tuple[str, ...]], ...] = ()
    find_peak: bool = _default("find-peak")
    find_peak_resolution: float = field(default_factory=lambda: parse_fraction(_default("find-peak-resolution")))
    find_peak_confirm: int = _default("find-peak-confirm")
    compliance: bool = _default("compliance")
    #: The manifest catalog, loaded and checked at configure time when extra manifests or overrides are given.
    catalog: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

    def with_(self, **changes: Any) -> RunConfig:
        return replace(self, **changes)


def parse_scenarios(raw: str | Sequence[str], source: str = "--mlperf-scenarios") -> tuple[str, ...]:
    items = _split_list(raw) if isinstance(raw, str) else [s.strip() for s in raw if s.strip()]
    lookup = {s.lower(): s for s in SCENARIOS}
    out: list[str] = []
    for item in items:
        canonical = lookup.get(item.lower())
        if canonical is None:
            raise UsageProblem(
                f"{source}: unknown scenario {item!r}; valid scenarios are {', '.join(SCENARIOS)}"
            )
        if canonical not in out:
            out.append(canonical)
    if not out:
        raise UsageProblem(f"{source}: no scenario given; use any of {', '.join(SCENARIOS)}")
    return tuple(out)


def parse_mode(raw: str, source: str = "--mlperf-mode") -> tuple[str, ...]:
    value = raw.strip().lower()
    if value == "both":
        return MODES
    if value in MODES:
        return (value,)
    raise UsageProblem(f"{source}: unknown mode {raw!r}; valid modes are {', '.join(MODE_CHOICES)}")


def parse_accuracy(value: float, source: str) -> float:
    """Accept 0.97 or 97 (percent); anything outside 0..100 is a mistake worth naming."""
    if not math.isfinite(value) or value < 0 or value > 100:
        raise UsageProblem(f"{source}: accuracy target {value} is not a fraction (0..1) or percent (0..100)")
    return value / 100.0 if value > 1 else value


def check_providers(providers: Sequence[str]) -> None:
    """``--mlperf-providers``: every name an execution provider of the installed onnxruntime build.

    The default (the CPU provider, in every build) is not checked, so a run that keeps it never imports
    onnxruntime at configure time.
    """
    if not providers:
        raise UsageProblem("--mlperf-providers: no provider given; e.g. --mlperf-providers CPUExecutionProvider")
    if tuple(providers) == tuple(_split_list(_default("providers"))):
        return
    try:
        import onnxruntime as ort
    except ImportError:
        return  # the backend names the package to install when a case needs it
    known, available = ort.get_all_providers(), ort.get_available_providers()
    build = f"onnxruntime {ort.__version__}"
    for name in providers:
        if name not in known:
            raise UsageProblem(
                f"--mlperf-providers: unknown execution provider {name!r}; {build} here has "
                f"{', '.join(available)} (names are case-sensitive, e.g. CUDAExecutionProvider)"
            )
        if name not in available:
            raise UsageProblem(
                f"--mlperf-providers: {name} is not in this {build} build (it has {', '.join(available)}); install "
                "the matching package (onnxruntime-gpu, onnxruntime-openvino) or drop it from --mlperf-providers"
            )


def parse_repeat(raw: Any) -> tuple[bool, int]:
    """``--mlperf-repeat``: (adaptive, runs), from a whole number >= 1 or ``auto`` (then the most rounds)."""
    text = str(raw).strip().lower()
    if text == "auto":
        return True, AUTO_ROUNDS[1]
    try:
        repeat = int(text)
    except ValueError:
        raise UsageProblem(
            f"--mlperf-repeat: {raw!r} is not a whole number or auto; write e.g. --mlperf-repeat 3 or "
            "--mlperf-repeat auto"
        ) from None
    if not 1 <= repeat <= MAX_REPEAT:
        raise UsageProblem(
            f"--mlperf-repeat: {repeat} is not valid; it must be from 1 to {MAX_REPEAT} (runs per performance case), "
            "or auto"
        )
    return False, repeat


def build_run_config(
    get: Callable[[OptionSpec], Any], rootdir: Path | None = None, backend_names: Sequence[str] | None = None
) -> RunConfig:
    """Validate raw option values (``get`` returns the flag, else the ini value, else None; a ListValue or None
    for list options). An unset or empty value takes the option's declared default, parsed like a given one.
    Relative paths from the ini file are taken from *rootdir*, those from flags from the cwd."""

    def val(name: str) -> Any:
        spec = _SPECS[name]
        value = get(spec)
        return spec.check(spec.default if value is None or value == "" else value)

    scenarios = parse_scenarios(val("scenarios"))
    modes = parse_mode(val("mode"))
    profile = val("profile").strip().lower()
    if profile not in PROFILES:
        raise UsageProblem(f"--mlperf-profile: unknown profile {profile!r}; valid profiles are smoke, official")
    overrides = Overrides(
        min_duration_ms=val("min-duration-ms"),
        min_query_count=val("min-query-count"),
        target_qps=val("target-qps"),
        target_latency_ms=val("target-latency-ms"),
    )
    user_conf = Path(val("user-conf")) if val("user-conf") else None
    if user_conf is not None:
        try:
            check_user_conf(user_conf)
        except ConfigError as exc:
            raise UsageProblem(str(exc)) from None
    accuracy = val("accuracy-target")
    thresholds = Thresholds(
        accuracy=parse_accuracy(accuracy, "--mlperf-accuracy-target") if accuracy is not None else None,
        latency_ms=val("latency-bound-ms"),
        min_qps=val("min-qps"),
    )
    if backend_names is None:  # outside pytest (benchmarks, tests of this function): the built-in engines
        from pytest_mlperf.backends import BACKENDS

        backend_names = BACKENDS
    known = list(backend_names)
    backend = val("backend").strip()
    if backend not in known:
        raise UsageProblem(
            f"--mlperf-backend: unknown backend {backend!r}; valid backends are {', '.join(known)} (a plugin adds "
            "more by implementing pytest_mlperf_make_backend and pytest_mlperf_backend_names)"
        )
    backend_options = parse_backend_options(val("backend-option"))
    backends = parse_backends(val("backends"), known) if val("backends") else None
    from pytest_mlperf.backends.options import session_problem

    # Bad engine options are refused now, once, rather than by each case when its engine is made.
    problem = session_problem(backend_options, backends or (backend,), known, "--mlperf-backend-option")
    if problem:
        raise UsageProblem(problem)
    providers = tuple(_split_list(val("providers")))
    if backend == "onnxruntime" or "onnxruntime" in (backends or ()):
        check_providers(providers)
    threads, batch_size, wait, workers = val("threads"), val("batch-size"), val("server-max-wait-us"), val("workers")
    server_batch = parse_server_batch(val("server-batch"), int(batch_size))
    if modes == ("accuracy",) and (overrides.min_duration_ms is not None or overrides.min_query_count is not None):
        raise UsageProblem(
            "--mlperf-min-duration-ms/--mlperf-min-query-count only affect performance runs, but "
            "--mlperf-mode=accuracy runs none; drop the override or use --mlperf-mode=both"
        )
    compliance = bool(val("compliance"))
    if compliance:
        if modes == ("accuracy",):
            raise UsageProblem("--mlperf-compliance runs after performance cases, but --mlperf-mode=accuracy runs "
                               "none; use --mlperf-mode=both or performance")
        from pytest_mlperf.compliance import refuse_stray_audit_config

        try:
            refuse_stray_audit_config(Path.cwd())
        except ConfigError as exc:
            raise UsageProblem(f"--mlperf-compliance: {exc}") from exc
    adaptive, repeat = parse_repeat(val("repeat"))
    alpha = parse_alpha(val("alpha"), "--mlperf-alpha")
    floor = parse_fraction(val("floor"), "--mlperf-floor")
    baseline = Path(val("baseline")).expanduser() if val("baseline") else None
    baseline_document = load_baseline(baseline) if baseline is not None else None
    provisioning = provisioning_options(val("mirror"), val("asset"), val("manifest"), rootdir or Path.cwd())
    download_timeout = float(val("download-timeout"))
    download_min_rate = float(val("download-min-rate"))
    resolution = parse_fraction(val("find-peak-resolution"), "--mlperf-find-peak-resolution")
    if not Bound(MIN_PEAK_RESOLUTION, MAX_PEAK_RESOLUTION).contains(resolution):
        raise UsageProblem(
            f"--mlperf-find-peak-resolution: {fmt_number(resolution)} is not valid; it must be "
            f"{Bound(MIN_PEAK_RESOLUTION, MAX_PEAK_RESOLUTION).text()} (a fraction)"
        )
    confirm = int(val("find-peak-confirm"))
    from pytest_mlperf.progress import parse_progress
    from pytest_mlperf.sweep import RUN_SETTINGS, apply, configurations, parse_sweep

    run_config = RunConfig(
        sweep=parse_sweep(val("sweep")),
        progress_s=parse_progress(val("progress")),
        find_peak=bool(val("find-peak")),
        find_peak_resolution=resolution,
        find_peak_confirm=confirm,
        download_timeout_s=download_timeout,
        download_min_rate=download_min_rate,
        verify_cache=bool(val("verify-cache")),
        compliance=compliance,
        mirror=provisioning["mirror"],
        offline=val("offline"),
        assets=provisioning["assets"],
        manifests=provisioning["manifests"],
        catalog=provisioning["catalog"],
        strict_assets=bool(val("strict-assets")),
        # Without a baseline nothing decides when to stop: auto runs its minimum.
        repeat=repeat if not adaptive or baseline is not None else AUTO_ROUNDS[0],
        adaptive=adaptive and baseline is not None,
        baseline=baseline,
        baseline_document=baseline_document,
        alpha=alpha,
        floor=floor,
        force_compare=bool(val("force-compare")),
        record_latencies=bool(val("record-latencies")) or baseline is not None,
        load_document=(
            load_baseline(Path(val("reuse-load")).expanduser(), "--mlperf-reuse-load", "a load source")
            if val("reuse-load")
            else None
        ),
        scenarios=scenarios,
        modes=modes,
        profile=profile,
        overrides=overrides,
        user_conf=user_conf,
        results_path=Path(val("results")),
        log_dir=Path(val("log-dir")),
        thresholds=thresholds,
        backend=backend,
        backends=backends,
        backend_options=backend_options,
        providers=providers,
        threads=int(threads),
        batch_size=int(batch_size),
        server_batch=server_batch,
        server_max_wait_us=int(wait),
        workers=int(workers),
        stall_timeout_s=int(val("stall-timeout-s")),
        cache_dir=Path(val("cache-dir")).expanduser() if val("cache-dir") else default_cache_dir(),
    )
    for configuration in configurations(run_config.sweep):
        apply(run_config, configuration)  # refuses a configuration the session could not run, before it starts
    swept = [(key, value) for key, values in run_config.sweep if key not in RUN_SETTINGS for value in values]
    problem = session_problem(swept, backends or (backend,), known, "--mlperf-sweep")
    if problem:
        raise UsageProblem(problem)
    return run_config


def writable_problem(path: Path, directory: bool) -> str | None:
    """Why nothing can be written at *path* (a file, or a *directory* to fill), or None: probed, not guessed.

    Creates nothing that stays: a probe file in the nearest existing ancestor is made and removed, so a read-only
    mount, a missing permission (also for root on such a mount) or a file in the way is found before any case runs.
    """
    import os
    import tempfile

    if path.is_dir() and not directory:
        return f"{path} is a directory; give a file path inside it, e.g. {path / 'results.json'}"
    if path.exists() and not directory and not path.is_file():
        return f"{path} is not a regular file"
    ancestor = path if directory else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is a file, so nothing can be created under it"
    try:
        fd, probe = tempfile.mkstemp(prefix=".mlperf-write-check-", dir=ancestor)
    except OSError as exc:
        return f"{ancestor} is not writable ({exc.strerror or exc})"
    os.close(fd)
    os.unlink(probe)
    return None


def check_outputs(cfg: RunConfig, rootdir: Path, results: bool = True, log_dir: bool = True) -> None:
    """--mlperf-results and --mlperf-log-dir (those asked for) can be written: UsageProblem naming the fix if not."""
    checks = []
    if results:
        checks.append(("--mlperf-results", cfg.results_path, False, "a file path in a writable directory"))
    if log_dir:
        checks.append(("--mlperf-log-dir", cfg.log_dir, True, "a directory you can write, e.g. --mlperf-log-dir logs"))
    for option, path, directory, fix in checks:
        problem = writable_problem(path if path.is_absolute() else rootdir / path, directory)
        if problem is not None:
            raise UsageProblem(f"{option}: cannot write {path}: {problem}; give {fix}")


def parse_backends(raw: str, known: Sequence[str]) -> tuple[str, ...]:
    """``--mlperf-backends``: names, or ``installed`` (every built-in engine importable here, and plugins' own)."""
    from pytest_mlperf.backends import ENGINES, installed_engines, is_installed, missing_engine_message

    names: list[str] = []
    for item in _split_list(raw):
        if item.lower() == "installed":
            names.extend([n for n in known if n not in ENGINES] + installed_engines())
            continue
        if item not in known:
            raise UsageProblem(
                f"--mlperf-backends: unknown backend {item!r}; valid backends are {', '.join(known)}, or `installed`"
            )
        if item in ENGINES and not is_installed(item):
            raise UsageProblem(f"--mlperf-backends: {missing_engine_message(item)}")
        names.append(item)
    unique = tuple(dict.fromkeys(names))
    if not unique:
        raise UsageProblem(f"--mlperf-backends: {raw!r} names no backend; e.g. --mlperf-backends onnxruntime,openvino")
    return unique


def options_for(engine: str, pairs: Sequence[tuple[str, str]], engines: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The --mlperf-backend-option pairs one engine sees: unprefixed keys, and ``ENGINE.KEY`` ones for it (prefix
    dropped); keys prefixed with another engine's name are that engine's alone."""
    out: list[tuple[str, str]] = []
    for key, value in pairs:
        prefix, dot, rest = key.partition(".")
        if dot and prefix in engines:
            if prefix == engine:
                out.append((rest, value))
        else:
            out.append((key, value))
    return tuple(out)


def parse_server_batch(raw: Any, batch_size: int, source: str = "--mlperf-server-batch") -> int | None:
    """``auto`` (None: measured per model) or a forced Server batch cap between 1 and --mlperf-batch-size."""
    text = "auto" if raw is None else str(raw).strip().lower()
    if text in ("", "auto"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageProblem(
            f"{source}: {raw!r} is not valid; use auto (measure the batch that pays) or a whole number, e.g. 1"
        ) from None
    if value < 1:
        raise UsageProblem(f"{source}: {value} is not valid; it must be 1 or more, or auto")
    if value > batch_size:
        raise UsageProblem(
            f"{source}: {value} is above --mlperf-batch-size {batch_size}, the ceiling of every batch; "
            f"raise --mlperf-batch-size to {value} or force a smaller Server batch"
        )
    return value


def parse_backend_options(
    raw: ListValue | None, cli_flag: str = "--mlperf-backend-option"
) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` items of --mlperf-backend-option (ini lines first, then flags; *cli_flag* names the flag)."""
    pairs: list[tuple[str, str]] = []
    for source, item, _ in _list_items(raw, Path.cwd()):
        flag = cli_flag if source == "cli" else "ini mlperf_backend_option"
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not re.fullmatch(r"[A-Za-z_][\w.-]*", key.strip()):
            raise UsageProblem(
                f"{flag}: {item!r} is not KEY=VALUE; e.g. --mlperf-backend-option outputs=ArgMax:0 (KEY is a "
                "setting of the chosen backend; ENGINE.KEY=VALUE, e.g. openvino.device=CPU, reaches one engine only)"
            )
        name = key.strip().rpartition(".")[2]
        if name in ("threads", "inter_op_threads") and not (
            re.fullmatch(r"[0-9]+", value.strip()) and int(value) <= MAX_THREADS
        ):
            raise UsageProblem(
                f"{flag}: {key.strip()}={value.strip()} is not valid; a thread count must be a whole number from 0 "
                f"to {MAX_THREADS} ({_SPECS['threads'].why})"
            )
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def _list_items(raw: ListValue | None, rootdir: Path) -> list[tuple[str, str, Path]]:
    """(source, raw value, base directory) per item: ini lines first (rootdir-relative), then flags (cwd)."""
    if raw is None:
        return []
    cwd = Path.cwd()
    return [("ini", item, rootdir) for item in raw.ini] + [("cli", item, cwd) for item in raw.cli]


def provisioning_options(
    mirror: str | None, assets_raw: ListValue | None, manifests_raw: ListValue | None, rootdir: Path
) -> dict[str, Any]:
    """Check --mlperf-mirror, --mlperf-asset and --mlperf-manifest; load the manifests they need, naming any fault."""
    try:
        mirror = parse_mirror(mirror) if mirror is not None and mirror.strip() else None
    except ConfigError as exc:
        raise UsageProblem(str(exc)) from None
    manifests: list[Path] = []
    for source, item, base in _list_items(manifests_raw, rootdir):
        flag = "--mlperf-manifest" if source == "cli" else "ini mlperf_manifest"
        if not item.strip():
            continue
        path = absolute_path(Path(item.strip()), base)
        if not path.is_file():
            raise UsageProblem(f"{flag}: manifest file not found: {path}; give the path of a YAML manifest")
        manifests.append(path)
    assets: dict[str, Path] = {}
    for source, item, base in _list_items(assets_raw, rootdir):
        flag = "--mlperf-asset" if source == "cli" else "ini mlperf_asset"
        try:
            name, path = parse_asset_spec(item, flag, base)
        except ConfigError as exc:
            raise UsageProblem(str(exc)) from None
        assets[name] = path
    catalog = None
    if manifests or assets:
        from pytest_mlperf.provisioning.manifest import load_catalog

        try:
            catalog = load_catalog(manifests)
        except ConfigError as exc:
            raise UsageProblem(f"--mlperf-manifest: {exc}") from None
        try:
            check_override_names(assets, catalog, catalog.describe_sources())
        except ConfigError as exc:
            raise UsageProblem(str(exc)) from None
    return {
        "mirror": mirror,
        "assets": tuple(assets.items()),
        "manifests": tuple(manifests),
        "catalog": catalog,
    }


def _fraction_or_percent(raw: Any, prefix: str) -> float:
    text = str(raw).strip()
    try:
        return float(text[:-1].strip()) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise UsageProblem(f"{prefix}{raw!r} is not a number; write a fraction (0.05) or a percent (5%)") from None


def parse_fraction(raw: Any, source: str | None = None) -> float:
    """``0.05``, ``5%`` or ``5 %`` -> 0.05; a floor or tolerance must lie in [0, 1) (``5`` is a typo for 5 %).

    The message starts with *source* (the option) when given; argparse adds its own prefix, so the console
    command passes none.
    """
    prefix = f"{source}: " if source else ""
    value = _fraction_or_percent(raw, prefix)
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise UsageProblem(f"{prefix}{raw!r} is not valid; it must be a fraction from 0 to below 1 (0.05 = 5 %)")
    return value


def parse_alpha(raw: Any, source: str | None = None) -> float:
    """A significance level: ``0.01`` or ``1%``, strictly between 0 and 1."""
    prefix = f"{source}: " if source else ""
    value = _fraction_or_percent(raw, prefix)
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise UsageProblem(f"{prefix}{raw!r} is not valid; it must be between 0 and 1 (exclusive), e.g. 0.01")
    return value


def load_baseline(path: Path, option: str = "--mlperf-baseline", role: str = "a baseline") -> Mapping[str, Any]:
    """Read and check a results JSON given to *option*; UsageProblem naming the file when it cannot serve.

    The gate's reader and input check name a bad field here, not in every case; the load targets must be ones
    LoadGen can run. Whatever else they raise on a hostile document still becomes a usage error naming the file.
    """
    from pytest_mlperf.gate.compare import check_document
    from pytest_mlperf.results import read_document

    fix = "pass the results JSON of an earlier run (--mlperf-results), unedited"
    if not path.exists():
        raise UsageProblem(f"{option}: file not found: {path}; {fix}")
    if path.is_dir():
        raise UsageProblem(f"{option}: {path} is a directory; {fix} (e.g. {path / 'results.json'})")
    if not path.is_file():
        raise UsageProblem(f"{option}: {path} is not a regular file (a device or pipe); {fix}")
    try:
        document = check_document(str(path), read_document(path))
    except RecursionError:
        raise UsageProblem(f"{option}: {path} cannot be used as {role}: its JSON is nested too deeply; {fix}") from None
    except Exception as exc:  # the reader's own errors, and any a hostile document provokes past its checks
        if isinstance(exc, ValueError) or type(exc).__module__.startswith("pytest_mlperf"):
            raise UsageProblem(f"{option}: {path} cannot be used as {role}: {exc}") from None  # names the fix
        raise UsageProblem(
            f"{option}: {path} cannot be used as {role}: a field has the wrong type ({type(exc).__name__}: {exc}); "
            f"{fix}"
        ) from None
    for index, run in enumerate(document["runs"]):
        target = (run.get("settings") or {}).get("target_qps") if run.get("mode") == "performance" else None
        if target is not None and (isinstance(target, bool) or not isinstance(target, int | float)
                                   or not Bound(MIN_QPS, MAX_QPS).contains(float(target))):
            raise UsageProblem(
                f"{option}: {path}: runs[{index}] ({run['id']}): settings.target_qps = {target!r} is not a load "
                f"LoadGen can run (it must be {Bound(MIN_QPS, MAX_QPS, 'QPS').text()}); {fix}"
            )
    return document


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def convert_ini(spec: OptionSpec, raw: Any) -> Any:
    """Convert an ini value to the option's type, naming the ini key on failure.

    An ini file gives strings; ``pyproject.toml`` may give TOML lists, numbers and booleans, which are taken
    where they mean the same (a list for a comma-separated option) and refused, with the fix, where they do not.
    """
    if isinstance(raw, list):
        if spec.metavar == "LIST" and all(isinstance(item, str) for item in raw):
            return ",".join(item.strip() for item in raw) or None
        example = ", ".join(f'"{item}"' for item in raw[:2]) if spec.metavar == "LIST" else ""
        fix = (f"write each value as a string: {spec.ini} = [{example}]" if spec.metavar == "LIST"
               else f"{spec.flag} takes one value: write {spec.ini} = <value>")
        raise UsageProblem(f"ini option {spec.ini} = {raw!r} is a list; {fix}")
    if isinstance(raw, bool):
        if spec.kind != "bool":
            raise UsageProblem(f"ini option {spec.ini} = {raw!r} is a boolean but {spec.flag} takes a {spec.kind}")
        return raw
    if isinstance(raw, (int, float)):
        if spec.kind == "int" and isinstance(raw, int):
            return raw
        if spec.kind == "float":
            return float(raw)
        raw = str(raw)
    if not isinstance(raw, str):
        raise UsageProblem(f"ini option {spec.ini} = {raw!r} is a {type(raw).__name__}; give a {spec.kind}")
    text = raw.strip()
    if text == "":
        return None
    try:
        if spec.kind == "int":
            return int(text)
        if spec.kind == "float":
            return float(text)
        if spec.kind == "bool":
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError(text)
    except ValueError:
        accepted = f" ({spec.bound.text()})" if spec.bound is not None else ""
        raise UsageProblem(f"ini option {spec.ini} = {raw!r} is not a valid {spec.kind}{accepted}") from None
    return text


def thresholds_from_marker(kwargs: Mapping[str, Any], scenario: str | None, where: str) -> Thresholds:
    """Validate ``@pytest.mark.mlperf(...)`` kwargs; per-scenario dicts pick the current scenario."""
    unknown = set(kwargs) - MARKER_KWARGS
    if unknown:
        raise UsageProblem(
            f"{where}: unknown mlperf marker argument(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(MARKER_KWARGS))}"
        )

    def pick(key: str) -> float | None:
        value = kwargs.get(key)
        if isinstance(value, Mapping):
            bad = set(value) - set(SCENARIOS)
            if bad:
                raise UsageProblem(
                    f"{where}: mlperf marker {key}= has unknown scenario key(s) {', '.join(sorted(bad))}; "
                    f"use {', '.join(SCENARIOS)}"
                )
            value = value.get(scenario) if scenario else None
        if value is None:
            return None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UsageProblem(f"{where}: mlperf marker {key}={value!r} must be a number")
        return float(value)

    name = kwargs.get("model_name")
    if name is not None and not (isinstance(name, str) and re.fullmatch(r"[\w.-]+", name)):
        # LoadGen matches mlperf.conf and user.conf keys token by token: such a name would match no line.
        raise UsageProblem(
            f"{where}: mlperf marker model_name={name!r} is not a model name LoadGen can match; use letters, "
            "digits, '_', '-' and '.', e.g. model_name='resnet50'"
        )
    accuracy = pick("accuracy")
    # The same ranges as the options that override them (--mlperf-latency-bound-ms, --mlperf-min-qps).
    latency_ms = _SPECS["latency-bound-ms"].check(pick("latency_ms"), f"{where}: mlperf marker latency_ms")
    min_qps = _SPECS["min-qps"].check(pick("min_qps"), f"{where}: mlperf marker min_qps")
    return Thresholds(
        accuracy=parse_accuracy(accuracy, f"{where}: mlperf marker accuracy") if accuracy is not None else None,
        latency_ms=latency_ms,
        min_qps=min_qps,
    )
