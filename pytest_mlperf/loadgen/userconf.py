"""user.conf, read the way LoadGen reads it, but failing with the file, line, key and accepted range instead of
LoadGen's -22, a misread value or a crash.

LoadGen's parser (test_settings_internal.cc, ``TestSettings::FromConfig``) splits each ``\\n`` line on white space
into ``key = value`` tokens; ``#`` is a comment only as a token of its own before the value (``#text`` is read as a
key, and anything after the value is an error without a line number). A value must parse whole as ``strtoul``
(base 0: ``0x10`` hex, ``010`` octal) or ``strtod`` (``2e3``, ``nan``, ``inf``); it is then read with ``strtoull``
for whole-number keys (``2e3`` -> 2, ``1.5`` -> 1, ``-5`` -> 2**64 - 5) or ``strtod`` for the others. Only plain
decimal numbers, in range, are accepted here, so what LoadGen reads is what the file says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pytest_mlperf.errors import ConfigError
from pytest_mlperf.loadgen.limits import (
    MAX_DURATION_MS,
    MAX_LATENCY_MS,
    MAX_QPS,
    MAX_QUERY_COUNT,
    MAX_SAMPLES_PER_QUERY,
    MAX_SEED,
    MIN_QPS,
    Bound,
)
from pytest_mlperf.rules import SCENARIOS

#: A user.conf is a few dozen lines; anything bigger is not one (and /dev/zero must not be read whole).
MAX_USER_CONF_BYTES = 1 << 20


@dataclass(frozen=True)
class Key:
    """How LoadGen reads one user.conf key: ``int`` (strtoull), ``flag`` (0 or 1) or ``float`` (strtod)."""

    kind: str
    bound: Bound
    about: str = ""


_FLAG = Bound(0, 1)
_COUNT = Bound(0, MAX_QUERY_COUNT)

#: Keys LoadGen reads from a user.conf (FromConfig with conf_type != 0), with the values accepted here.
USER_CONF_KEYS: dict[str, Key] = {
    "min_duration": Key("int", Bound(0, MAX_DURATION_MS, "ms")),
    "max_duration": Key("int", Bound(0, MAX_DURATION_MS, "ms"), "0: no limit"),
    "min_query_count": Key("int", Bound(1, MAX_QUERY_COUNT)),
    "max_query_count": Key("int", _COUNT, "0: no limit"),
    "performance_sample_count_override": Key("int", _COUNT, "0: the dataset's"),
    "accuracy_sample_count_override": Key("int", _COUNT, "0: the dataset's"),
    "performance_issue_same_index": Key("int", _COUNT),
    "accuracy_log_sampling_target": Key("int", _COUNT),
    "accuracy_log_rng_seed": Key("int", Bound(0, MAX_SEED)),
    "samples_per_query": Key("int", Bound(1, MAX_SAMPLES_PER_QUERY)),
    "max_async_queries": Key("int", Bound(0, 2**31 - 1), "0: no limit"),
    "ttft_latency": Key("int", Bound(0, MAX_LATENCY_MS, "ms")),
    "tpot_latency": Key("int", Bound(0, MAX_LATENCY_MS, "ms")),
    "token_latency_scaling_factor": Key("int", Bound(1, 1_000_000)),
    "use_token_latencies": Key("flag", _FLAG),
    "infer_token_latencies": Key("flag", _FLAG),
    "performance_issue_unique": Key("flag", _FLAG),
    "performance_issue_same": Key("flag", _FLAG),
    "sample_concatenate_permutation": Key("flag", _FLAG),
    "coalesce_queries": Key("flag", _FLAG),
    "print_timestamps": Key("flag", _FLAG),
    "target_qps": Key("float", Bound(MIN_QPS, MAX_QPS, "QPS")),
    # LoadGen multiplies it by 0.01, and its results code indexes latencies[count * p]: 100 reads past the end.
    "target_latency_percentile": Key("float", Bound(1, 99.999, "%", low_open=True)),
    # Server reads it with strtoull (whole ms); SingleStream and MultiStream with strtod, as the expected latency.
    "target_latency": Key("float", Bound(0, MAX_LATENCY_MS, "ms", low_open=True)),
}

#: Keys LoadGen reads only from its own mlperf.conf (the official seeds): in a user.conf they would do nothing.
MLPERF_CONF_ONLY = frozenset(
    {
        "qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed", "accuracy_log_probability", "test05",
        "test05_qsl_rng_seed", "test05_sample_index_rng_seed", "test05_schedule_rng_seed",
    }
)  # fmt: skip

_WHITESPACE = re.compile(r"[ \t\n\v\f\r]+")  # C's isspace: what `iss >> s` splits on
_KEY = re.compile(r"^(?P<model>[\w\-.*]+?)\.(?P<scenario>[\w*]+)\.(?P<key>\w+)$")
_DECIMAL_INT = re.compile(r"^(0|[1-9][0-9]*)$")
_DECIMAL_FLOAT = re.compile(r"^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")


def read_user_conf(path: Path, source: str = "--mlperf-user-conf") -> str:
    """The text of the user.conf at *path*; ConfigError naming *source*, the path and the fix when it is not one."""
    if not path.exists():
        raise ConfigError(f"{source}: file not found: {path}; give the path of a user.conf file")
    if path.is_dir():
        raise ConfigError(f"{source}: {path} is a directory; give the path of the user.conf file inside it")
    if not path.is_file():
        raise ConfigError(f"{source}: {path} is not a regular file (a device or pipe); give a user.conf file")
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_USER_CONF_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_USER_CONF_BYTES:
        raise ConfigError(
            f"{source}: {path} is larger than {MAX_USER_CONF_BYTES >> 10} KiB; a user.conf holds a few "
            "`model.scenario.key = value` lines"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: byte 0x{raw[exc.start]:02x} is not UTF-8 text; a user.conf holds plain "
            "`model.scenario.key = value` lines (save it as UTF-8 or ASCII)"
        ) from None


def _value_problem(key: str, scenario: str, value: str) -> str | None:
    """Why LoadGen would misread or refuse *value* for *key*, with the fix; None when it reads it as written."""
    spec = USER_CONF_KEYS[key]
    # Server reads target_latency as whole ms, so a line that reaches Server (or every scenario) needs one.
    whole = spec.kind in ("int", "flag") or (key == "target_latency" and scenario in ("Server", "*"))
    accepted = "0 or 1" if spec.kind == "flag" else spec.bound.text()
    if spec.about:
        accepted += f"; {spec.about}"
    if value.startswith("-") and _DECIMAL_FLOAT.match(value[1:]):
        if whole and _DECIMAL_INT.match(value[1:]):
            wrapped = (2**64 - int(value[1:])) % 2**64
            return f"is read by LoadGen as {wrapped} (it wraps negative numbers); use {accepted}"
        return f"is negative; use {accepted}"
    if whole and not _DECIMAL_INT.match(value):
        if re.match(r"^0[0-7]+$", value):
            return f"is read by LoadGen as octal ({int(value, 8)}); write {int(value)} without the 0 ({accepted})"
        if re.match(r"^0[0-9]+$", value):
            return f"has a leading 0, which LoadGen reads as octal; write {int(value)} ({accepted})"
        if _DECIMAL_FLOAT.match(value):
            misread = int(re.split(r"[.eE]", value)[0] or "0")
            unit = " ms for Server" if key == "target_latency" else ""
            fix = f"e.g. {float(value):.0f}" if float(value) < 1e18 else "in plain digits"
            return f"is read by LoadGen as {misread}{unit} (whole numbers only); write one, {fix} ({accepted})"
        return f"is not a plain decimal whole number; use {accepted}"
    if not whole and not _DECIMAL_FLOAT.match(value):
        if value.lower().lstrip("+-") in ("nan", "inf", "infinity"):
            return f"is not a finite number; use {accepted}"
        return f"is not a plain decimal number (like 100 or 2.5e3); use {accepted}"
    number = float(value)
    if not spec.bound.contains(number):
        if key == "target_latency_percentile" and number <= 1:
            return f"is read as a percent by LoadGen; write {number * 100:g} for p{number * 100:g}"
        return f"is out of range; use {accepted}"
    return None


def parse_user_conf(text: str, source: str) -> list[tuple[str, str, str, str]]:
    """Validate a user.conf the way LoadGen reads it, but fail with the file and line instead of -22."""
    entries: list[tuple[str, str, str, str]] = []
    for lineno, raw in enumerate(text.split("\n"), start=1):
        tokens = [t for t in _WHITESPACE.split(raw) if t]
        if not tokens:
            continue
        shown = raw.strip()
        if tokens[0].startswith("#"):
            if tokens[0] == "#" or len(tokens) == 1:
                continue  # LoadGen skips it too
            raise ConfigError(
                f"{source}:{lineno}: comment {shown!r}: LoadGen reads {tokens[0]!r} as a key and refuses the line; "
                "put a space after '#' (`# text`)"
            )
        if len(tokens) > 3 and tokens[3].startswith("#"):
            raise ConfigError(
                f"{source}:{lineno}: {shown!r} has a comment after the value, which LoadGen refuses; put the "
                "comment on a line of its own (`# text`)"
            )
        match = _KEY.match(tokens[0])
        if len(tokens) != 3 or tokens[1] != "=" or match is None:
            raise ConfigError(
                f"{source}:{lineno}: malformed line {shown!r}; expected "
                "`model.scenario.key = value` with spaces around '=' (e.g. `*.Offline.min_duration = 1000`)"
            )
        model, scenario, key = match.group("model", "scenario", "key")
        value = tokens[2]
        if scenario != "*" and scenario not in SCENARIOS:
            raise ConfigError(
                f"{source}:{lineno}: unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)} or *"
            )
        if key == "mode":
            raise ConfigError(
                f"{source}:{lineno}: `mode` is refused: it would make LoadGen run another test than the case "
                "reports; choose performance or accuracy with --mlperf-mode"
            )
        if key in MLPERF_CONF_ONLY:
            raise ConfigError(
                f"{source}:{lineno}: {key} is read by LoadGen only from its own mlperf.conf (the official value); "
                "in a user.conf it is ignored, so it is refused"
            )
        if key not in USER_CONF_KEYS:
            raise ConfigError(
                f"{source}:{lineno}: unknown key {key!r}; LoadGen ignores it, so it is refused (keys LoadGen reads "
                f"from a user.conf: {', '.join(sorted(USER_CONF_KEYS))})"
            )
        problem = _value_problem(key, scenario, value)
        if problem is not None:
            raise ConfigError(f"{source}:{lineno}: {key} = {value} {problem}")
        entries.append((model, scenario, key, value))
    return entries


def check_user_conf(path: Path, source: str = "--mlperf-user-conf") -> list[tuple[str, str, str, str]]:
    """Read and validate the user.conf at *path*: its entries, or ConfigError naming the file, line and key."""
    return parse_user_conf(read_user_conf(path, source), str(path))


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
