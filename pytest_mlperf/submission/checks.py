"""What the MLCommons submission checker would refuse in a results file, found before a tree is built."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_mlperf.loadgen.userconf import parse_user_conf
from pytest_mlperf.results import primary_metric

DIVISIONS = ("closed", "open")
SYSTEM_TYPES = ("edge", "datacenter", "datacenter,edge")
#: The rules' shortest performance run (mlperf.conf's ``*.*.min_duration``), in ms.
MIN_DURATION_MS = 600_000
#: mlperf.conf's min_query_count per benchmark and scenario where it is not LoadGen's default (v6.0).
MIN_QUERY_COUNT = {
    ("resnet", "Offline"): 24_576, ("retinanet", "Offline"): 24_576,
    ("bert-99", "Offline"): 10_833, ("bert-99.9", "Offline"): 10_833,
    ("*", "MultiStream"): 662, ("*", "SingleStream"): 1024,
}  # fmt: skip
#: Our model names (mlperf.conf keys) -> the checker's benchmark names (v6.0).
KNOWN_MODELS = {"resnet50": "resnet", "resnet": "resnet", "retinanet": "retinanet", "ssd-resnet34": "retinanet",
                "bert-99": "bert-99", "bert-99.9": "bert-99.9", "bert": "bert-99"}
BENCHMARKS = ("resnet", "retinanet", "bert-99", "bert-99.9")
#: Our names of the benchmarks' own reference models: the only ones the closed division takes (ssd-resnet34, an
#: older detector, maps to retinanet in the open division only).
CLOSED_MODELS = frozenset({"resnet50", "resnet", "retinanet", "bert", "bert-99", "bert-99.9"})
#: The checker's required scenarios per system type (v6.0 constants).
REQUIRED_SCENARIOS: dict[str, dict[str, tuple[str, ...]]] = {
    "edge": {"resnet": ("SingleStream", "MultiStream", "Offline"), "retinanet": ("SingleStream", "MultiStream",
             "Offline"), "bert-99": ("SingleStream", "Offline"), "bert-99.9": ("SingleStream", "Offline")},
    "datacenter": {"resnet": ("Server", "Offline"), "retinanet": ("Server", "Offline"),
                   "bert-99": ("Server", "Offline"), "bert-99.9": ("Server", "Offline")},
    "datacenter,edge": {"resnet": ("SingleStream", "MultiStream", "Offline", "Server"),
                        "retinanet": ("SingleStream", "MultiStream", "Offline", "Server"),
                        "bert-99": ("SingleStream", "Offline"), "bert-99.9": ("SingleStream", "Offline")},
}
#: The compliance tests each benchmark needs (closed division; the checker skips them in open).
COMPLIANCE_TESTS = {"resnet": ("TEST01", "TEST04"), "retinanet": ("TEST01",), "bert-99": ("TEST01",),
                    "bert-99.9": ("TEST01",)}
#: The accuracy each closed benchmark must reach, as a fraction of the primary metric (v6.0 constants).
ACCURACY_TARGETS = {"resnet": 0.7646 * 0.99, "retinanet": 0.3755 * 0.99, "bert-99": 0.90874 * 0.99,
                    "bert-99.9": 0.90874 * 0.999}
#: The checker's smallest performance_sample_count and its dataset size (accuracy runs cover all of it) (v6.x).
PERFORMANCE_SAMPLES = {"resnet": 1024, "retinanet": 64, "bert-99": 10833, "bert-99.9": 10833}
DATASET_SAMPLES = {"resnet": 50000, "retinanet": 24781, "bert-99": 10833, "bert-99.9": 10833}
#: The LoadGen seeds each checker version expects (mlperf.conf of that round's LoadGen).
SEEDS = {
    "v5.0": (6023615788873153749, 15036839855038426416, 9933818062894767841),
    "v5.1": (1780908523862526354, 14771362308971278857, 18209322760996052031),
    "v6.0": (2465351861681999779, 14276810075590677512, 3936089224930324775),
    "v6.1": (2085463073848966840, 2747215439041700203, 16159082839903944936),
}
_SEED_KEYS = ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed")
#: user.conf keys a closed submission may set: the performance hints (expected QPS and latency), nothing the rules fix.
CLOSED_USER_CONF_KEYS = frozenset({"target_qps", "target_latency"})


@dataclass
class Entry:
    """One scenario of one benchmark in the tree: its performance run, accuracy run and compliance runs."""

    model: str
    benchmark: str
    scenario: str
    performance: Mapping[str, Any] | None = None
    accuracy: Mapping[str, Any] | None = None
    extra: list[str] = field(default_factory=list)  # ids of repeats left out


def benchmark_of(model: str, mapping: Mapping[str, str]) -> str | None:
    """The checker's benchmark name for our *model*: the user's mapping first, then the known names."""
    return mapping.get(model) or KNOWN_MODELS.get(model)


def entries(runs: Sequence[Mapping[str, Any]], mapping: Mapping[str, str]) -> tuple[list[Entry], list[str]]:
    """The runs grouped by (benchmark, scenario), the first repeat of each mode chosen; problems for unmapped models."""
    found: dict[tuple[str, str], Entry] = {}
    problems: list[str] = []
    unmapped: set[str] = set()
    for run in sorted(runs, key=lambda r: int(r.get("repeat") or 0)):
        model = str(run.get("model"))
        benchmark = benchmark_of(model, mapping)
        if benchmark is None:
            unmapped.add(model)
            continue
        entry = found.setdefault((benchmark, str(run.get("scenario"))),
                                 Entry(model, benchmark, str(run.get("scenario"))))
        if entry.model != model:
            problems.append(f"{run.get('id')}: models {entry.model!r} and {model!r} both map to {benchmark} "
                            f"{entry.scenario}; a submission holds one model per benchmark: select one with --case")
            continue
        slot = "performance" if run.get("mode") == "performance" else "accuracy"
        if getattr(entry, slot) is None:
            setattr(entry, slot, run)
        else:
            entry.extra.append(str(run.get("id")))
    for model in sorted(unmapped):
        problems.append(
            f"model {model!r} is no MLPerf benchmark the checker knows ({', '.join(BENCHMARKS)}); in the open "
            f"division map it to the benchmark whose task it performs: --model-map {model}=resnet"
        )
    return sorted(found.values(), key=lambda e: (e.benchmark, e.scenario)), problems


def _seed_problem(run: Mapping[str, Any], version: str) -> str | None:
    settings: Mapping[str, Any] = run.get("settings") or {}
    found = tuple(settings.get(key) for key in _SEED_KEYS)
    wanted = SEEDS.get(version)
    if wanted is None or found == wanted or None in found:
        return None
    rounds = [v for v, seeds in SEEDS.items() if seeds == found]
    of = f" (those of {rounds[0]})" if rounds else ""
    return (f"{run.get('id')} ({run.get('scenario')} {run.get('mode')}): LoadGen ran with seeds {found}{of}; the "
            f"{version} checker expects {wanted}: use --version {rounds[0]} or the LoadGen of {version}" if rounds else
            f"{run.get('id')} ({run.get('scenario')} {run.get('mode')}): LoadGen ran with seeds {found}; the {version} "
            f"checker expects {wanted}: install the LoadGen of {version}")


def _size_problems(run: Mapping[str, Any], benchmark: str) -> list[str]:
    """Too few samples for the benchmark: the performance sample count, or an accuracy run short of its dataset."""
    settings: Mapping[str, Any] = run.get("settings") or {}
    rid = f"{run.get('id')} ({run.get('scenario')} {run.get('mode')})"
    if run.get("mode") == "performance":
        count, needed, what = settings.get("performance_sample_count"), PERFORMANCE_SAMPLES.get(benchmark), \
            "performance_sample_count"
    else:
        count, needed, what = (run.get("dataset") or {}).get("count"), DATASET_SAMPLES.get(benchmark), \
            "accuracy samples (the whole dataset)"
    if isinstance(count, int) and needed is not None and count < needed:
        return [f"{rid}: {what} {count} < {needed} that {benchmark} needs"]
    return []


def _run_problems(run: Mapping[str, Any], division: str, allow_short: bool) -> list[str]:
    rid = f"{run.get('id')} ({run.get('scenario')} {run.get('mode')})"
    problems: list[str] = []
    if run.get("profile") != "official":
        problems.append(f"{rid}: ran in the {run.get('profile')} profile (short runs, calibrated settings); a "
                        "submission needs runs from --mlperf-profile official")
    if run.get("synthetic_inputs"):
        problems.append(f"{rid}: fed synthetic inputs, not the dataset; provide the dataset and run it again")
    if any(str(reason).startswith("inference failed") for reason in run.get("reasons") or []):
        problems.append(f"{rid}: its inference failed; fix the SUT and run it again")
    if run.get("mode") == "performance":
        if run.get("valid") is not True:
            reasons = "; ".join(run.get("validity_reasons") or []) or "no reason recorded"
            problems.append(f"{rid}: LoadGen judged the run INVALID ({reasons})")
        settings: Mapping[str, Any] = run.get("settings") or {}
        short: list[str] = []
        duration = settings.get("min_duration_ms")
        if isinstance(duration, int | float) and duration < MIN_DURATION_MS:
            short.append(f"min_duration {duration:g} ms < the rules' {MIN_DURATION_MS} ms")
        count = settings.get("min_query_count")
        needed = _min_query_count(run)
        if isinstance(count, int | float) and needed is not None and count < needed:
            short.append(f"min_query_count {count:g} < mlperf.conf's {needed}")
        if short and not allow_short:
            problems.append(f"{rid}: too short for a submission ({'; '.join(short)}); run it with mlperf.conf's "
                            "durations (no min_duration/min_query_count in user.conf or options), or pass "
                            "--allow-short-runs for a trial tree that the checker will refuse")
    if division == "closed":
        problems += [f"{rid}: {p}" for p in _closed_settings_problems(run)]
    return problems


def _min_query_count(run: Mapping[str, Any]) -> int | None:
    scenario = str(run.get("scenario"))
    benchmark = KNOWN_MODELS.get(str(run.get("model")), "*")
    return MIN_QUERY_COUNT.get((benchmark, scenario)) or MIN_QUERY_COUNT.get(("*", scenario))


def _closed_settings_problems(run: Mapping[str, Any]) -> list[str]:
    """Settings that differ from mlperf.conf: user.conf lines and options beyond the performance hints."""
    conf: Mapping[str, Any] = run.get("conf") or {}
    applied = conf.get("applied_user_conf")
    problems: list[str] = []
    if not isinstance(applied, str):
        return ["the results file does not record the user.conf it applied (written before pytest-mlperf recorded "
                "it); run it again with this version"]
    for line in applied.splitlines():
        if line.startswith("# set directly"):
            problems.append(f"a setting beyond mlperf.conf was applied ({line[2:]}); the closed division runs "
                            "mlperf.conf unchanged")
    for model, scenario, key, value in parse_user_conf(applied, "applied user.conf"):
        if key not in CLOSED_USER_CONF_KEYS or (key == "target_latency" and scenario in ("Server", "*")):
            problems.append(f"`{model}.{scenario}.{key} = {value}` changes a setting mlperf.conf fixes; the closed "
                            "division allows only target_qps and the SingleStream/MultiStream target_latency hints")
    return problems


def _accuracy_problem(run: Mapping[str, Any], benchmark: str) -> str | None:
    metric = primary_metric(run)
    accuracy = ((run.get("metrics") or {}).get("accuracy") or {})
    value = accuracy.get(metric) if metric else None
    rid = f"{run.get('id')} ({run.get('scenario')} accuracy)"
    if not isinstance(value, int | float):
        return f"{rid}: no {metric} accuracy was recorded"
    fraction = value / 100 if value > 1 else value
    target = ACCURACY_TARGETS.get(benchmark)
    if target is not None and fraction < target:
        return f"{rid}: {metric} {fraction:.4%} is below the closed-division target {target:.4%} for {benchmark}"
    own = (run.get("thresholds") or {}).get("accuracy")
    if isinstance(own, int | float) and fraction < own:
        return f"{rid}: {metric} {fraction:.4%} is below the case's own target {own:.4%}"
    return None


def problems(
    items: Sequence[Entry],
    division: str,
    system_type: str | None,
    *,
    version: str = "v6.1",
    allow_short: bool = False,
) -> list[str]:
    """Every reason the checker would refuse the tree of *items*, each naming the run or scenario and the fix."""
    found: list[str] = []
    for entry in items:
        where = f"{entry.benchmark} {entry.scenario} (model {entry.model})"
        if entry.performance is None:
            found.append(f"{where}: no performance run; run the case with --mlperf-mode performance (or both)")
        if entry.accuracy is None:
            found.append(f"{where}: no accuracy run; run the case with --mlperf-mode accuracy (or both)")
        for run in (entry.performance, entry.accuracy):
            if run is not None:
                found += _run_problems(run, division, allow_short)
                seeds = _seed_problem(run, version)
                found += [seeds] if seeds else []
                small = _size_problems(run, entry.benchmark)
                if small and not allow_short:
                    found += [f"{p}; use the benchmark's dataset, or pass --allow-short-runs for a trial tree that "
                              "the checker will refuse" for p in small]
        if division == "closed":
            if entry.benchmark not in BENCHMARKS:
                found.append(f"{where}: {entry.benchmark!r} is no closed-division benchmark ({', '.join(BENCHMARKS)})")
            elif entry.model not in CLOSED_MODELS:
                found.append(f"{where}: the closed division runs the reference model; {entry.model!r} is a model of "
                             "your own: use --division open")
            if entry.accuracy is not None:
                problem = _accuracy_problem(entry.accuracy, entry.benchmark)
                if problem:
                    found.append(problem)
            if entry.performance is not None:
                found += _compliance_problems(entry)
    if division == "closed":
        present = {(e.benchmark, e.scenario) for e in items}
        required = REQUIRED_SCENARIOS.get(system_type or "", {})
        for benchmark in sorted({e.benchmark for e in items}):
            missing = [s for s in required.get(benchmark, ()) if (benchmark, s) not in present]
            if missing:
                found.append(f"{benchmark}: system_type {system_type} requires {', '.join(required[benchmark])}; "
                             f"missing {', '.join(missing)} (run --mlperf-scenarios with them)")
    return found


def _compliance_problems(entry: Entry) -> list[str]:
    assert entry.performance is not None
    done: Mapping[str, Any] = entry.performance.get("compliance") or {}
    out: list[str] = []
    for test in COMPLIANCE_TESTS.get(entry.benchmark, ()):
        result = done.get(test)
        where = f"{entry.performance.get('id')} ({entry.scenario} performance)"
        if not isinstance(result, Mapping):
            out.append(f"{where}: compliance test {test} is missing; run the session with --mlperf-compliance")
        elif result.get("passed") is not True:
            reasons = "; ".join(result.get("reasons") or []) or "no reason recorded"
            out.append(f"{where}: compliance test {test} failed ({reasons})")
    return out
