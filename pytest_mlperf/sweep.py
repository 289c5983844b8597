"""Design-space sweeps: ``--mlperf-sweep KEY=V1,V2`` into configurations, and the Pareto report over them.

A sweep key is a run setting the harness reads (``threads``, ``batch_size``, ``workers``, ``server_max_wait_us``,
checked like their own options) or else a backend option, reaching the engine exactly as
``--mlperf-backend-option KEY=VALUE`` would (after it, so the sweep's value wins). Each case runs once per
configuration of the product of all keys, with the configuration in its id (``threads=1-batch_size=8``).
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_mlperf.config import (
    MAX_CONFIGURATIONS,
    OPTIONS,
    ListValue,
    RunConfig,
    UsageProblem,
    parse_backend_options,
)
from pytest_mlperf.rules import LATENCY_PERCENTILE

#: Run settings a sweep may set, as RunConfig fields, with the least value each takes.
RUN_SETTINGS = {"threads": 0, "batch_size": 1, "workers": 1, "server_max_wait_us": 0}

Configuration = tuple[tuple[str, str], ...]

_KEY = re.compile(r"[A-Za-z_][\w.-]*")


def parse_sweep(raw: ListValue | None) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``KEY=V1,V2`` items (ini lines, then flags) -> ((key, values), ...) in the order given."""
    if raw is None:
        return ()
    axes: dict[str, tuple[str, ...]] = {}
    for source, item in [("ini mlperf_sweep", i) for i in raw.ini] + [("--mlperf-sweep", i) for i in raw.cli]:
        key, sep, values_text = item.partition("=")
        key = key.strip()
        values = tuple(v.strip() for v in values_text.split(",") if v.strip())
        if not sep or not _KEY.fullmatch(key) or not values:
            raise UsageProblem(
                f"{source}: {item!r} is not KEY=V1,V2,...; e.g. --mlperf-sweep threads=1,2 (KEY is one of "
                f"{', '.join(RUN_SETTINGS)}, or a backend option such as outputs)"
            )
        if key in axes:
            raise UsageProblem(f"{source}: {key!r} is swept twice; give all its values in one KEY=V1,V2,...")
        if len(set(values)) != len(values):
            raise UsageProblem(f"{source}: {item!r} repeats a value; each configuration runs once")
        for value in values:
            if key in RUN_SETTINGS:
                _run_setting(key, value, source)
            else:  # a backend option: the same checks as --mlperf-backend-option's (thread counts bounded)
                parse_backend_options(ListValue(cli=(f"{key}={value}",)), source)
        axes[key] = values
    count = 1
    for values in axes.values():
        count *= len(values)
    if count > MAX_CONFIGURATIONS:
        raise UsageProblem(
            f"--mlperf-sweep: {count} configurations is more than {MAX_CONFIGURATIONS}; every case would run "
            "that many times. Sweep fewer keys or values"
        )
    return tuple(axes.items())


def _run_setting(key: str, value: str, source: str) -> int:
    least = RUN_SETTINGS[key]
    try:
        number = int(value)
    except ValueError:
        number = least - 1
    if number < least:
        raise UsageProblem(f"{source}: {key}={value!r} is not valid; it must be a whole number, {least} or more")
    # The option's own declared range (--mlperf-threads 100000 is refused, so is a sweep to it).
    spec = next(spec for spec in OPTIONS if spec.name == key.replace("_", "-"))
    spec.check(number, f"{source}: {key}")
    return number


def configurations(axes: Sequence[tuple[str, Sequence[str]]]) -> list[Configuration]:
    """The product of the axes, the first key varying slowest."""
    keys = [key for key, _ in axes]
    return [tuple(zip(keys, values, strict=True)) for values in itertools.product(*(v for _, v in axes))]


def label(configuration: Configuration) -> str:
    """The id segment: ``threads=1-batch_size=8``."""
    return "-".join(f"{key}={value}" for key, value in configuration)


def apply(config: RunConfig, configuration: Configuration) -> RunConfig:
    """*config* with *configuration*'s run settings set and its other keys appended as backend options."""
    settings: dict[str, Any] = {}
    extra: list[tuple[str, str]] = []
    for key, value in configuration:
        if key in RUN_SETTINGS:
            settings[key] = _run_setting(key, value, "--mlperf-sweep")
        else:
            extra.append((key, value))
    changed = config.with_(**settings, backend_options=(*config.backend_options, *extra))
    if changed.server_batch is not None and changed.server_batch > changed.batch_size:
        raise UsageProblem(
            f"--mlperf-sweep: batch_size={changed.batch_size} is below --mlperf-server-batch {changed.server_batch}; "
            "sweep batch sizes at or above it, or drop --mlperf-server-batch"
        )
    return changed


# --- the Pareto report ---------------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def points(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per swept case (id without its configuration, scenario), one point per configuration: the median
    samples/s and the median latency at the scenario's percentile over its VALID performance runs."""
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for run in runs:
        sweep = run.get("sweep")
        if not isinstance(sweep, Mapping) or run.get("mode") != "performance":
            continue
        case_id = str(run.get("id", "")).replace(label(tuple(sweep.items())), "*")
        grouped.setdefault((case_id, label(tuple(sweep.items()))), []).append(run)
    out: dict[str, list[dict[str, Any]]] = {}
    for (case_id, config_label), group in grouped.items():
        scenario = str(group[0].get("scenario"))
        percentile = LATENCY_PERCENTILE.get(scenario)
        valid = [r for r in group if r.get("valid") is True]
        qps = [float(q) for r in valid if isinstance(q := (r.get("metrics") or {}).get("qps"), int | float)]
        latency = [
            float(v)
            for r in valid
            if percentile and isinstance(v := ((r.get("metrics") or {}).get("latency_ns") or {}).get(percentile),
                                         int | float)
        ]
        out.setdefault(case_id, []).append({
            "configuration": config_label,
            "scenario": scenario,
            "percentile": percentile,
            "runs": len(group),
            "valid_runs": len(valid),
            "qps": _median(qps),
            "latency_ns": _median(latency),
        })
    for case_points in out.values():
        _mark_front(case_points)
    return out


def _dominates(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """More throughput and less latency (where the scenario has one), strictly better in at least one."""
    if a["latency_ns"] is None or b["latency_ns"] is None:
        return bool(a["qps"] > b["qps"])
    at_least = a["qps"] >= b["qps"] and a["latency_ns"] <= b["latency_ns"]
    return bool(at_least and (a["qps"] > b["qps"] or a["latency_ns"] < b["latency_ns"]))


def _mark_front(case_points: list[dict[str, Any]]) -> None:
    """``front`` on each point no other point dominates; a point with no VALID run is never on it."""
    measured = [p for p in case_points if p["qps"] is not None]
    for point in case_points:
        point["front"] = point in measured and not any(_dominates(o, point) for o in measured if o is not point)


def report(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The terminal table: per swept case, each configuration's throughput and latency, ``*`` on the front."""
    lines: list[str] = []
    for case_id, case_points in points(runs).items():
        percentile = case_points[0]["percentile"]
        lines.append(f"{case_id.split('::')[-1]}  ({case_points[0]['scenario']}; * = Pareto front: no other "
                     f"configuration has more samples/s{' and a lower ' + percentile if percentile else ''})")
        rows = [("", "configuration", "samples/s", f"{percentile or '-'} latency", "valid runs")]
        for p in sorted(case_points, key=lambda p: -(p["qps"] or 0.0)):
            rows.append((
                "*" if p["front"] else "",
                p["configuration"],
                f"{p['qps']:,.1f}" if p["qps"] is not None else "-",
                f"{p['latency_ns'] / 1e6:.3f} ms" if p["latency_ns"] is not None else "-",
                f"{p['valid_runs']}/{p['runs']}",
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return lines
