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
