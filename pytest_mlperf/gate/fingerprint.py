"""Fingerprints: what must agree between base and head (machine, software, model, settings) to compare them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Versions that move a measurement. The backend's own package (e.g. "openvino") is added when versions lists it.
FINGERPRINT_VERSIONS = ("plugin", "loadgen", "onnxruntime")
# Settings that are hints for how many queries to generate, not conditions of the measurement: calibration sets
# them per run, so they differ between two runs of the same code. Server's target_qps is NOT here: latency under a
# different load is a different measurement.
HINT_SETTINGS = frozenset(
    {
        "offline_expected_qps",
        "single_stream_expected_latency_ns",
        "multi_stream_expected_latency_ns",
        "min_sample_count",
        "target_duration_ms",
        "print_timestamps",
        "enable_trace",
    }
)
HINT_SETTINGS_UNLESS_SERVER = frozenset({"target_qps", "target_latency_ns"})
HINT_SETTINGS_OFFLINE = frozenset({"samples_per_query"})


def environment_fingerprint(document: Mapping[str, Any]) -> dict[str, Any]:
    """Machine and software identity of one document: CPU, cores, GPUs (model, driver), measurement versions."""
    machine = document.get("machine") or {}
    versions = document.get("versions") or {}
    backends = {run.get("backend") for run in document.get("runs") or [] if isinstance(run, Mapping)}
    keys = [*FINGERPRINT_VERSIONS, *sorted(b for b in backends if isinstance(b, str) and b in versions)]
    return {
        "cpu": machine.get("cpu"),
        "cores": machine.get("cores"),
        "gpus": [{"name": g.get("name"), "driver": g.get("driver")} for g in machine.get("gpus") or []],
        "versions": {key: versions.get(key) for key in dict.fromkeys(keys)},
    }


def comparable_settings(
    scenario: str, settings: Mapping[str, Any] | None, mode: str = "performance"
) -> dict[str, Any]:
    """Effective settings that define the measurement, with calibration hints dropped and ``effective_`` stripped.

    An accuracy run's score does not depend on the load it ran under, so its load targets are hints too.
    """
    ignored = set(HINT_SETTINGS)
    if scenario != "Server" or mode == "accuracy":
        ignored |= HINT_SETTINGS_UNLESS_SERVER
    if scenario == "Offline":
        ignored |= HINT_SETTINGS_OFFLINE
    out: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        name = key.removeprefix("effective_")
        if name not in ignored:
            out[name] = value
    return out


def _backend_fingerprint(options: Any) -> Any:
    """Which cores an xdist worker was pinned to does not matter, only how many it had."""
    if not isinstance(options, Mapping) or "cpu_affinity" not in options:
        return options
    out = {k: v for k, v in options.items() if k != "cpu_affinity"}
    out["cpu_count"] = len(options["cpu_affinity"] or ())
    return out


def run_fingerprint(run: Mapping[str, Any]) -> dict[str, Any]:
    """What must agree between base and head runs of one case for their numbers to be comparable."""
    dataset = run.get("dataset") or {}
    return {
        "model_sha256": run.get("model_sha256"),
        # A deployed model (a server URL) is identified by what its backend reports, not by a file digest.
        "model_identity": run.get("model_identity"),
        "profile": run.get("profile"),
        "synthetic_inputs": bool(run.get("synthetic_inputs", False)),
        "backend": run.get("backend"),
        "backend_options": _backend_fingerprint(run.get("backend_options")),
        "dataset": {"name": dataset.get("name"), "count": dataset.get("count")},
        "settings": comparable_settings(str(run.get("scenario")), run.get("settings"), str(run.get("mode"))),
    }


def _show(value: Any) -> str:
    if isinstance(value, str):
        # A sha256 in full drowns the message; 12 hex digits still identify it.
        return repr(value[:12] + "...") if len(value) == 64 and value.isalnum() else repr(value)
    return json.dumps(value, sort_keys=True)


def fingerprint_differences(base: Any, head: Any, prefix: str = "") -> list[str]:
    """One line per differing leaf, e.g. ``cpu 'A' != 'B'`` or ``settings.min_duration_ms 1000 != 2000``."""
    if isinstance(base, Mapping) and isinstance(head, Mapping):
        out: list[str] = []
        for key in dict.fromkeys([*base, *head]):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in base:
                out.append(f"{path} (absent) != {_show(head[key])}")
            elif key not in head:
                out.append(f"{path} {_show(base[key])} != (absent)")
            else:
                out.extend(fingerprint_differences(base[key], head[key], path))
        return out
    if base != head:
        label = prefix.removeprefix("versions.") + " version" if prefix.startswith("versions.") else prefix
        return [f"{label} {_show(base)} != {_show(head)}"]
    return []


# --- grouping -------------------------------------------------------------------------------------------------
