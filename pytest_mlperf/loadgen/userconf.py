"""user.conf, read the way LoadGen reads it, but failing with the file and line instead of LoadGen's -22."""

from __future__ import annotations

import re

from pytest_mlperf.errors import ConfigError
from pytest_mlperf.rules import SCENARIOS

#: Keys LoadGen accepts in user.conf (``model.scenario.key = value``).
USER_CONF_KEYS = frozenset(
    {
        "target_qps", "target_latency", "target_latency_percentile", "target_duration",
        "min_duration", "max_duration", "min_query_count", "max_query_count", "qsl_rng_seed",
        "sample_index_rng_seed", "schedule_rng_seed", "accuracy_log_rng_seed",
        "accuracy_log_probability", "accuracy_log_sampling_target", "print_timestamps",
        "performance_issue_unique", "performance_issue_same", "performance_issue_same_index",
        "performance_sample_count_override", "sample_concatenate_permutation", "test05",
        "test05_qsl_rng_seed", "test05_sample_index_rng_seed", "test05_schedule_rng_seed",
        "coalesce_queries", "max_async_queries", "samples_per_query", "use_token_latencies",
        "ttft_latency", "tpot_latency", "infer_token_latencies", "token_latency_scaling_factor",
        "server_num_issue_query_threads", "offline_expected_qps", "single_stream_expected_latency_ns",
        "multi_stream_expected_latency_ns", "enable_trace", "mode",
    }
)  # fmt: skip

_USER_CONF_LINE = re.compile(r"^(?P<model>[\w\-.*]+?)\.(?P<scenario>[\w*]+)\.(?P<key>\w+) = (?P<value>\S+)$")


def parse_user_conf(text: str, source: str) -> list[tuple[str, str, str, str]]:
    """Validate a user.conf the way LoadGen reads it, but fail with the file and line instead of -22."""
    entries: list[tuple[str, str, str, str]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        match = _USER_CONF_LINE.match(line.strip())
        if match is None:
            raise ConfigError(
                f"{source}:{lineno}: malformed line {raw.strip()!r}; expected "
                "`model.scenario.key = value` with spaces around '=' (e.g. `*.Offline.min_duration = 1000`)"
            )
        model, scenario, key, value = match.group("model", "scenario", "key", "value")
        if scenario != "*" and scenario not in SCENARIOS:
            raise ConfigError(
                f"{source}:{lineno}: unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)} or *"
            )
        if key not in USER_CONF_KEYS:
            raise ConfigError(f"{source}:{lineno}: unknown key {key!r}; LoadGen ignores it, so it is refused")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{source}:{lineno}: value {value!r} for {key} is not a number") from None
        if key == "target_latency_percentile" and not 1 < number <= 100:
            # LoadGen divides this one by 100: 0.9 would ask for the 0.009th percentile and judge nothing.
            raise ConfigError(
                f"{source}:{lineno}: target_latency_percentile = {value} is read as a percent by LoadGen; write "
                f"{number * 100:g} for p{number * 100:g}" if number <= 1 else
                f"{source}:{lineno}: target_latency_percentile = {value} is not a percent between 1 and 100"
            )
        entries.append((model, scenario, key, value))
    return entries


#: TestSettings fields the plugin sets after the config files -> (user.conf key, factor to user.conf's unit).
_SETTING_TO_KEY: dict[str, tuple[str, float]] = {
    "min_duration_ms": ("min_duration", 1.0),
    "max_duration_ms": ("max_duration", 1.0),
    "min_query_count": ("min_query_count", 1.0),
    "max_query_count": ("max_query_count", 1.0),
    "offline_expected_qps": ("target_qps", 1.0),
    "server_target_qps": ("target_qps", 1.0),
    "server_target_latency_ns": ("target_latency", 1e-6),
    "single_stream_expected_latency_ns": ("target_latency", 1e-6),
    "multi_stream_expected_latency_ns": ("target_latency", 1e-6),
    "performance_sample_count_override": ("performance_sample_count_override", 1.0),
}


def _conf_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.10g}"


def applied_user_conf(user_text: str | None, model: str, scenario: str, values: dict[str, object]) -> str:
    """The user.conf that reproduces what LoadGen applied after mlperf.conf: the user's file as given, then one
    line per setting the plugin set on top of it (those win over the file, so they come last).

    A setting with no user.conf key is written as a comment naming it: the run cannot be reproduced from
    mlperf.conf and user.conf alone, and the reader must see why.
    """
    parts = [user_text.rstrip("\n")] if user_text else []
    lines: list[str] = []
    for name, value in values.items():
        mapped = _SETTING_TO_KEY.get(name)
        if mapped is None or isinstance(value, bool) or not isinstance(value, int | float):
            lines.append(f"# set directly on LoadGen's TestSettings, no user.conf key: {name} = {value}")
            continue
        key, factor = mapped
        number = value * factor
        if key == "target_latency":  # user.conf's target_latency is whole milliseconds
            number = max(1, round(number))
        lines.append(f"{model}.{scenario}.{key} = {_conf_number(number)}")
    if lines:
        parts.append("# set by pytest-mlperf (profile and --mlperf-* options), applied after the lines above")
        parts.extend(lines)
    return "\n".join(parts) + "\n" if parts else ""
