"""Options, ini values, marker kwargs and user.conf -> one frozen run configuration; UsageError on bad input."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_mlperf.errors import ConfigError
from pytest_mlperf.loadgen.userconf import parse_user_conf
from pytest_mlperf.rules import MODE_CHOICES, MODES, PROFILES, SCENARIOS

#: Default of --mlperf-repeat: one run per performance case (the README, "Gating regressions", advises 3-5).
DEFAULT_REPEAT = 1

#: Marker kwargs accepted by ``@pytest.mark.mlperf(...)``.
MARKER_KWARGS = frozenset({"accuracy", "latency_ms", "min_qps", "model_name"})


class UsageProblem(ValueError):
    """A bad option value; the plugin turns it into ``pytest.UsageError``."""


@dataclass(frozen=True)
class OptionSpec:
    """One ``--mlperf-*`` flag and its ini twin, declared once and wired by the plugin."""

    name: str  # e.g. "min-duration-ms" -> --mlperf-min-duration-ms / mlperf_min_duration_ms
    help: str
    default: Any = None
    kind: str = "string"  # string | int | float | bool | list (repeatable flag; ini: one value per line)
    metavar: str | None = None
    multiple: bool = False

    @property
    def flag(self) -> str:
        return f"--mlperf-{self.name}"

    @property
    def dest(self) -> str:
        return "mlperf_" + self.name.replace("-", "_")

    @property
    def ini(self) -> str:
        return self.dest


# Help rule: one sentence saying what the option sets, then the accepted values, then the default.
OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("scenarios", "LoadGen scenarios to run, comma-separated: SingleStream, MultiStream, Server, "
               "Offline. Default: all four.", metavar="LIST"),
    OptionSpec("mode", "What to measure: performance, accuracy or both. Default: both.", metavar="MODE"),
    OptionSpec("profile", "Run rules: smoke (short runs with declared overrides and calibrated targets) or "
               "official (mlperf.conf unchanged). Default: smoke.", metavar="NAME"),
    OptionSpec("min-duration-ms", "Override LoadGen's min_duration for every case, in ms. Default: 1000 in "
               "smoke, mlperf.conf in official.", kind="int", metavar="MS"),
    OptionSpec("min-query-count", "Override LoadGen's min_query_count for every case. Default: per scenario "
               "in smoke, mlperf.conf in official.", kind="int", metavar="N"),
    OptionSpec("target-qps", "Set Server target QPS and Offline expected QPS. Default: calibrated by a "
               "short warm-up in smoke.", kind="float", metavar="QPS"),
    OptionSpec("target-latency-ms", "Set Server's target latency (its p99 bound), in ms. Default: the "
               "case's latency bound, else mlperf.conf.", kind="float", metavar="MS"),
    OptionSpec("user-conf", "A LoadGen user.conf applied after mlperf.conf (lines `model.scenario.key = "
               "value`). Default: none.", metavar="PATH"),
    OptionSpec("results", "Where to write the session's results JSON. Default: mlperf-results/results.json.",
               default="mlperf-results/results.json", metavar="PATH"),
    OptionSpec("log-dir", "Directory for each case's LoadGen logs (one sub-directory per case). Default: "
               "mlperf-results/logs.", default="mlperf-results/logs", metavar="DIR"),
    OptionSpec("accuracy-target", "Minimum top-1 accuracy for accuracy cases, as a fraction (0.97) or "
               "percent (97). Default: the case's marker.", kind="float", metavar="X"),
    OptionSpec("latency-bound-ms", "Latency bound at the scenario's percentile (SingleStream p90, "
               "MultiStream and Server p99), in ms. Default: the case's marker.", kind="float",
               metavar="MS"),
    OptionSpec("min-qps", "Throughput floor in samples/s for Offline, Server and SingleStream. Default: the "
               "case's marker.", kind="float", metavar="QPS"),
    OptionSpec("backend-option", "An engine-specific setting for the backend, as KEY=VALUE (e.g. outputs=ArgMax:0 "
               "for onnxruntime); repeatable, the last value of a key wins (ini: one per line). Default: none.",
               kind="list", metavar="KEY=VALUE"),
    OptionSpec("backend", "Inference backend: onnxruntime, noop (harness cost only), or one a plugin adds "
               "through pytest_mlperf_make_backend. Default: "
               "onnxruntime.", metavar="NAME"),
    OptionSpec("providers", "ONNX Runtime execution providers in priority order, comma-separated, e.g. "
               "CUDAExecutionProvider,CPUExecutionProvider. Default: CPUExecutionProvider.", metavar="LIST"),
    OptionSpec("threads", "Intra-op threads per inference session; 0 means one per usable core. Default: 0.",
               kind="int", metavar="N"),
    OptionSpec("batch-size", "Largest batch for Offline and Server. Default: 32.", kind="int", metavar="N"),
    OptionSpec("server-batch", "Server batch cap: auto (the largest batch whose measured samples/s pays for its "
               "latency, never above --mlperf-batch-size) or a number that forces it. Default: auto.",
               metavar="auto|N"),
    OptionSpec("server-max-wait-us", "How long the Server batcher may hold a query to fill a batch, in "
               "microseconds; 0 batches only what is already queued. Default: 0.", kind="int", metavar="US"),
    OptionSpec("cache-dir", "Where models, datasets and built artefacts are cached. Default: $PYTEST_MLPERF_CACHE, "
               "else the user cache dir (~/.cache/pytest-mlperf).", metavar="DIR"),
    OptionSpec("workers", "Inference threads for Offline and Server. Default: 1.", kind="int", metavar="N"),
    OptionSpec("baseline", "A results JSON to gate against: each case is compared with its runs there, and a "
               "significant regression beyond the floor fails it. Default: no comparison.", metavar="PATH"),
    OptionSpec("repeat", "How many times each performance case runs (repeats 0..N-1), pooled for the gate. "
               f"Default: {DEFAULT_REPEAT}.", kind="int", metavar="N"),
    OptionSpec("alpha", "Significance level of the baseline comparison, between 0 and 1. Default: 0.01.",
               kind="float", metavar="X"),
    OptionSpec("floor", "Smallest relative change the gate acts on, as a fraction (0.05) or percent (5%). "
               "Default: 0.05.", metavar="X"),
    OptionSpec("reuse-load", "A results JSON whose Server target QPS and Offline expected QPS each case reuses "
               "instead of calibrating, so separate sessions run under the same load (what A/B runs need). "
               "Default: calibrate (or reuse --mlperf-baseline's).", metavar="PATH"),
    OptionSpec("record-latencies", "Keep every query's latency (from LoadGen's trace) in the results JSON, as the "
               "regression gate needs; the trace costs LoadGen throughput on very fast models. Default: on with "
               "--mlperf-baseline, else off.", kind="bool"),
    OptionSpec("force-compare", "Compare against the baseline even when machine, software or settings "
               "fingerprints differ (the differences are still reported). Default: refuse.", kind="bool"),
    OptionSpec("mirror", "Base URL of a mirror tried before each asset's own URLs (serving URL/<filename>). "
               "Default: $PYTEST_MLPERF_MIRROR, else none.", metavar="URL"),
    OptionSpec("offline", "Never touch the network: assets come from the cache, local paths or installed "
               "packages, and cases needing anything else are skipped. Default: $PYTEST_MLPERF_OFFLINE, else "
               "off.", kind="bool"),
    OptionSpec("asset", "Use a local file or directory for one manifest entry, as NAME=PATH; repeatable (ini: one "
               "per line, paths relative to the rootdir). Default: $PYTEST_MLPERF_ASSET_<NAME>, else none.",
               kind="list", metavar="NAME=PATH"),
    OptionSpec("manifest", "An extra YAML manifest whose entries add to or replace the packaged ones by name; "
               "repeatable, later files win (ini: one per line, relative to the rootdir). Default: none.",
               kind="list", metavar="PATH"),
    OptionSpec("strict-assets", "Fail, instead of skip, the cases whose model or dataset cannot be had here "
               "(for CI that must not skip silently). Default: skip.", kind="bool"),
)


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

    scenarios: tuple[str, ...] = SCENARIOS
    modes: tuple[str, ...] = MODES
    profile: str = "smoke"
    overrides: Overrides = field(default_factory=Overrides)
    user_conf: Path | None = None
    results_path: Path = Path("mlperf-results/results.json")
    log_dir: Path = Path("mlperf-results/logs")
    thresholds: Thresholds = field(default_factory=Thresholds)
    backend: str = "onnxruntime"
    #: ``--mlperf-backend-option`` pairs in the order given (the backend reads the last value of a key).
    backend_options: tuple[tuple[str, str], ...] = ()
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int = 0
    batch_size: int = 32
    #: ``--mlperf-server-batch``: a forced Server batch cap; None measures it (calibrate.server_batch).
    server_batch: int | None = None
    server_max_wait_us: int = 0
    workers: int = 1
    cache_dir: Path = field(default_factory=lambda: default_cache_dir())
    repeat: int = DEFAULT_REPEAT
    baseline: Path | None = None
    #: The baseline's results document, read and checked once at configure time.
    baseline_document: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    alpha: float = 0.01
    floor: float = 0.05
    force_compare: bool = False
    record_latencies: bool = False
    #: ``--mlperf-reuse-load``'s document: load targets to reuse, before the baseline's.
    load_document: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    mirror: str | None = None  # None: $PYTEST_MLPERF_MIRROR decides
    offline: bool | None = None  # None: $PYTEST_MLPERF_OFFLINE decides
    #: ``--mlperf-asset`` overrides, name -> absolute path (the last value for a name wins).
    assets: tuple[tuple[str, Path], ...] = ()
    #: Extra manifests, absolute, in the order they apply (after the packaged ones).
    manifests: tuple[Path, ...] = ()
    strict_assets: bool = False
    #: The manifest catalog, loaded and checked at configure time when extra manifests or overrides are given.
    catalog: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

    def with_(self, **changes: Any) -> RunConfig:
        return replace(self, **changes)


def default_cache_dir() -> Path:
    """$PYTEST_MLPERF_CACHE, else $XDG_CACHE_HOME/pytest-mlperf, else ~/.cache/pytest-mlperf."""
    import os

    explicit = os.environ.get("PYTEST_MLPERF_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "pytest-mlperf"


def _split_list(raw: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,\s]+", raw) if part.strip()]


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


def _positive(value: float | None, source: str, allow_zero: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        need = "zero or more" if allow_zero else "greater than zero"
        raise UsageProblem(f"{source}: {value} is not valid; it must be {need}")


def build_run_config(
    get: Callable[[OptionSpec], Any], rootdir: Path | None = None, backend_names: Sequence[str] | None = None
) -> RunConfig:
    """Validate raw option values (``get`` returns the flag, else the ini value, else None; a ListValue or None
    for list options). Relative paths from the ini file are taken from *rootdir*, those from flags from the cwd."""
    by = {spec.name: spec for spec in OPTIONS}

    def val(name: str) -> Any:
        return get(by[name])

    scenarios = parse_scenarios(val("scenarios")) if val("scenarios") else SCENARIOS
    modes = parse_mode(val("mode")) if val("mode") else MODES
    profile = (val("profile") or "smoke").strip().lower()
    if profile not in PROFILES:
        raise UsageProblem(f"--mlperf-profile: unknown profile {profile!r}; valid profiles are smoke, official")
    overrides = Overrides(
        min_duration_ms=val("min-duration-ms"),
        min_query_count=val("min-query-count"),
        target_qps=val("target-qps"),
        target_latency_ms=val("target-latency-ms"),
    )
    _positive(overrides.min_duration_ms, "--mlperf-min-duration-ms", allow_zero=True)
    _positive(overrides.min_query_count, "--mlperf-min-query-count")
    _positive(overrides.target_qps, "--mlperf-target-qps")
    _positive(overrides.target_latency_ms, "--mlperf-target-latency-ms")
    user_conf = Path(val("user-conf")) if val("user-conf") else None
    if user_conf is not None:
        if not user_conf.is_file():
            raise UsageProblem(f"--mlperf-user-conf: file not found: {user_conf}")
        try:
            parse_user_conf(user_conf.read_text(encoding="utf-8"), str(user_conf))
        except ConfigError as exc:
            raise UsageProblem(str(exc)) from exc
    accuracy = val("accuracy-target")
    thresholds = Thresholds(
        accuracy=parse_accuracy(accuracy, "--mlperf-accuracy-target") if accuracy is not None else None,
        latency_ms=val("latency-bound-ms"),
        min_qps=val("min-qps"),
    )
    _positive(thresholds.latency_ms, "--mlperf-latency-bound-ms")
    _positive(thresholds.min_qps, "--mlperf-min-qps", allow_zero=True)
    known = list(backend_names) if backend_names is not None else ["onnxruntime", "noop"]
    backend = (val("backend") or "onnxruntime").strip()
    if backend not in known:
        raise UsageProblem(
            f"--mlperf-backend: unknown backend {backend!r}; valid backends are {', '.join(known)} (a plugin adds "
            "more by implementing pytest_mlperf_make_backend and pytest_mlperf_backend_names)"
        )
    backend_options = parse_backend_options(val("backend-option"))
    providers = tuple(_split_list(val("providers"))) if val("providers") else ("CPUExecutionProvider",)
    threads = val("threads") if val("threads") is not None else 0
    batch_size = val("batch-size") if val("batch-size") is not None else 32
    wait = val("server-max-wait-us") if val("server-max-wait-us") is not None else 0
    workers = val("workers") if val("workers") is not None else 1
    _positive(threads, "--mlperf-threads", allow_zero=True)
    _positive(batch_size, "--mlperf-batch-size")
    _positive(wait, "--mlperf-server-max-wait-us", allow_zero=True)
    _positive(workers, "--mlperf-workers")
    server_batch = parse_server_batch(val("server-batch"), int(batch_size))
    if modes == ("accuracy",) and (overrides.min_duration_ms is not None or overrides.min_query_count is not None):
        raise UsageProblem(
            "--mlperf-min-duration-ms/--mlperf-min-query-count only affect performance runs, but "
            "--mlperf-mode=accuracy runs none; drop the override or use --mlperf-mode=both"
        )
    repeat = val("repeat") if val("repeat") is not None else DEFAULT_REPEAT
    if repeat < 1:
        raise UsageProblem(f"--mlperf-repeat: {repeat} is not valid; it must be 1 or more (runs per performance case)")
    alpha = val("alpha") if val("alpha") is not None else 0.01
    if not (math.isfinite(alpha) and 0.0 < alpha < 1.0):
        raise UsageProblem(f"--mlperf-alpha: {alpha} is not valid; it must be between 0 and 1 (exclusive), e.g. 0.01")
    floor = parse_fraction(val("floor"), "--mlperf-floor") if val("floor") is not None else 0.05
    baseline = Path(val("baseline")).expanduser() if val("baseline") else None
    baseline_document = load_baseline(baseline) if baseline is not None else None
    provisioning = provisioning_options(val("mirror"), val("asset"), val("manifest"), rootdir or Path.cwd())
    return RunConfig(
        mirror=provisioning["mirror"],
        offline=val("offline"),
        assets=provisioning["assets"],
        manifests=provisioning["manifests"],
        catalog=provisioning["catalog"],
        strict_assets=bool(val("strict-assets")),
        repeat=int(repeat),
        baseline=baseline,
        baseline_document=baseline_document,
        alpha=float(alpha),
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
        results_path=Path(val("results") or "mlperf-results/results.json"),
        log_dir=Path(val("log-dir") or "mlperf-results/logs"),
        thresholds=thresholds,
        backend=backend,
        backend_options=backend_options,
        providers=providers,
        threads=int(threads),
        batch_size=int(batch_size),
        server_batch=server_batch,
        server_max_wait_us=int(wait),
        workers=int(workers),
        cache_dir=Path(val("cache-dir")).expanduser() if val("cache-dir") else default_cache_dir(),
    )


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


def parse_backend_options(raw: ListValue | None) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` items of --mlperf-backend-option (ini lines first, then flags)."""
    pairs: list[tuple[str, str]] = []
    for source, item, _ in _list_items(raw, Path.cwd()):
        flag = "--mlperf-backend-option" if source == "cli" else "ini mlperf_backend_option"
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not re.fullmatch(r"[A-Za-z_][\w.-]*", key.strip()):
            raise UsageProblem(
                f"{flag}: {item!r} is not KEY=VALUE; e.g. --mlperf-backend-option outputs=ArgMax:0 (KEY is a "
                "setting of the chosen backend)"
            )
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def _list_items(raw: ListValue | None, rootdir: Path) -> list[tuple[str, str, Path]]:
    """(source, raw value, base directory) per item: ini lines first (rootdir-relative), then flags (cwd)."""
    if raw is None:
        return []
    cwd = Path.cwd()
    return [("ini", item, rootdir) for item in raw.ini] + [("cli", item, cwd) for item in raw.cli]


def _absolute(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def provisioning_options(
    mirror: str | None, assets_raw: ListValue | None, manifests_raw: ListValue | None, rootdir: Path
) -> dict[str, Any]:
    """Check --mlperf-mirror, --mlperf-asset and --mlperf-manifest; load the manifests they need, naming any fault."""
    if mirror is not None:
        mirror = mirror.strip()
        if not re.match(r"^https?://[^\s/]+", mirror):
            raise UsageProblem(
                f"--mlperf-mirror: {mirror!r} is not an http:// or https:// base URL; "
                "e.g. --mlperf-mirror=https://mirror.example.org/mlperf (files are fetched as URL/<filename>)"
            )
        mirror = mirror.rstrip("/")
    manifests: list[Path] = []
    for source, item, base in _list_items(manifests_raw, rootdir):
        flag = "--mlperf-manifest" if source == "cli" else "ini mlperf_manifest"
        if not item.strip():
            continue
        path = _absolute(Path(item.strip()), base)
        if not path.is_file():
            raise UsageProblem(f"{flag}: manifest file not found: {path}; give the path of a YAML manifest")
        manifests.append(path)
    assets: dict[str, Path] = {}
    for source, item, base in _list_items(assets_raw, rootdir):
        flag = "--mlperf-asset" if source == "cli" else "ini mlperf_asset"
        name, sep, path_text = item.partition("=")
        if not sep or not name.strip() or not path_text.strip():
            raise UsageProblem(
                f"{flag}: {item!r} is not NAME=PATH; e.g. --mlperf-asset imagenet-val=/data/imagenet "
                "(NAME is a manifest entry)"
            )
        assets[name.strip()] = _absolute(Path(path_text.strip()), base)
    catalog = None
    if manifests or assets:
        from pytest_mlperf.provisioning.manifest import load_catalog

        try:
            catalog = load_catalog(manifests)
        except ConfigError as exc:
            raise UsageProblem(f"--mlperf-manifest: {exc}") from None
        unknown = sorted(set(assets) - set(catalog))
        if unknown:
            raise UsageProblem(
                f"--mlperf-asset {unknown[0]}={assets[unknown[0]]}: no manifest entry is named {unknown[0]!r}; "
                f"known: {', '.join(sorted(catalog))} (add your own with --mlperf-manifest PATH)"
            )
    return {
        "mirror": mirror or None,
        "assets": tuple(assets.items()),
        "manifests": tuple(manifests),
        "catalog": catalog,
    }


def parse_fraction(raw: Any, source: str) -> float:
    """``0.05``, ``5%`` or ``5 %`` -> 0.05; a fraction must lie in [0, 1)."""
    text = str(raw).strip()
    try:
        value = float(text[:-1].strip()) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise UsageProblem(f"{source}: {raw!r} is not a number; write a fraction (0.05) or a percent (5%)") from None
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise UsageProblem(f"{source}: {raw!r} is not valid; it must be a fraction from 0 to below 1 (0.05 = 5 %)")
    return value


def load_baseline(path: Path, option: str = "--mlperf-baseline", role: str = "a baseline") -> Mapping[str, Any]:
    """Read and check a results JSON given to *option*; UsageProblem naming the file when it cannot serve."""
    from pytest_mlperf.gate.compare import ComparisonInputError, check_document
    from pytest_mlperf.results import load_document

    if not path.is_file():
        raise UsageProblem(f"{option}: file not found: {path}; pass a results JSON of an earlier run")
    try:
        document = load_document(path)
        return check_document(str(path), document)
    except (ValueError, ComparisonInputError) as exc:
        raise UsageProblem(f"{option}: {path} cannot be used as {role}: {exc}") from None


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def convert_ini(spec: OptionSpec, raw: str) -> Any:
    """Convert an ini string to the option's type, naming the ini key on failure."""
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
        raise UsageProblem(f"ini option {spec.ini} = {raw!r} is not a valid {spec.kind}") from None
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

    accuracy = pick("accuracy")
    return Thresholds(
        accuracy=parse_accuracy(accuracy, f"{where}: mlperf marker accuracy") if accuracy is not None else None,
        latency_ms=pick("latency_ms"),
        min_qps=pick("min_qps"),
    )
