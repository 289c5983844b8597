"""Where assets may come from, as the user says it: mirror URLs, ``NAME=PATH`` overrides, the offline switch.

Options, ini values and ``PYTEST_MLPERF_*`` variables are parsed here and nowhere else, so a flag and its env var
accept the same values and fail with the same words. Importing this module costs only the standard library.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from pytest_mlperf.errors import ConfigError
from pytest_mlperf.redact import redact

__all__ = [
    "DEFAULT_DOWNLOAD_MIN_RATE",
    "DEFAULT_DOWNLOAD_TIMEOUT_S",
    "ENV_ASSET_PREFIX",
    "ENV_MIRROR",
    "ENV_OFFLINE",
    "HTTP_URL",
    "RATE_WINDOW_S",
    "absolute_path",
    "asset_env_var",
    "check_override_names",
    "env_asset_overrides",
    "env_flag",
    "parse_asset_spec",
    "parse_mirror",
]

ENV_MIRROR = "PYTEST_MLPERF_MIRROR"
ENV_OFFLINE = "PYTEST_MLPERF_OFFLINE"
ENV_ASSET_PREFIX = "PYTEST_MLPERF_ASSET_"

#: The most seconds one URL's download may take, all its attempts together (a 6 GB dataset at 2 MB/s fits).
DEFAULT_DOWNLOAD_TIMEOUT_S = 3600.0
#: The slowest transfer kept going, in bytes/s averaged over RATE_WINDOW_S: below it a download is a stall.
DEFAULT_DOWNLOAD_MIN_RATE = 1000.0
#: How long a transfer is watched before its rate is judged, in seconds.
RATE_WINDOW_S = 30.0

#: What every URL pytest-mlperf downloads from must look like (manifest URLs and mirrors alike).
HTTP_URL = re.compile(r"^https?://[^\s/]+")

_TRUE = frozenset({"1", "true", "yes", "on"})


def parse_mirror(raw: str, source: str = "--mlperf-mirror") -> str:
    """A mirror base URL without its trailing slash; ConfigError naming *source* when it is no http(s) URL."""
    mirror = raw.strip()
    if not HTTP_URL.match(mirror):
        raise ConfigError(
            f"{source}: {redact(raw)!r} is not an http:// or https:// base URL; e.g. --mlperf-mirror="
            f"https://mirror.example.org/mlperf or {ENV_MIRROR}=https://mirror.example.org/mlperf "
            "(files are fetched as URL/<filename>)"
        )
    return mirror.rstrip("/")


def parse_asset_spec(raw: str, source: str = "--mlperf-asset", base: Path | None = None) -> tuple[str, Path]:
    """One ``NAME=PATH`` override -> (name, absolute path); a relative PATH is taken from *base* (else the cwd)."""
    name, sep, path_text = raw.partition("=")
    if not sep or not name.strip() or not path_text.strip():
        raise ConfigError(
            f"{source}: {raw!r} is not NAME=PATH; e.g. --mlperf-asset imagenet-val=/data/imagenet "
            "(NAME is a manifest entry)"
        )
    return name.strip(), absolute_path(Path(path_text.strip()), base)


def check_override_names(overrides: Mapping[str, Path], known: Iterable[str], sources: str) -> None:
    """ConfigError for the first ``NAME=PATH`` override whose NAME no manifest entry has (read from *sources*)."""
    names = sorted(known)
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        name = unknown[0]
        raise ConfigError(
            f"--mlperf-asset {name}={overrides[name]}: no manifest entry is named {name!r}; known: "
            f"{', '.join(names)} (from {sources}; add your own with --mlperf-manifest PATH)"
        )


def asset_env_var(name: str) -> str:
    """The env var that points one asset at a local path, e.g. ``PYTEST_MLPERF_ASSET_IMAGENET_VAL``."""
    return ENV_ASSET_PREFIX + re.sub(r"[^A-Z0-9]", "_", name.upper())


def env_asset_overrides(env: Mapping[str, str], names: Iterable[str]) -> dict[str, tuple[Path, str]]:
    """name -> (absolute path, ``VAR=value`` for messages) for each of *names* whose env var is set."""
    found: dict[str, tuple[Path, str]] = {}
    for name in names:
        var = asset_env_var(name)
        if env.get(var):
            found[name] = (absolute_path(Path(env[var]), None), f"{var}={env[var]}")
    return found


def env_flag(value: str | None) -> bool:
    """An on/off env var such as ``PYTEST_MLPERF_OFFLINE``: 1, true, yes or on (any case) turn it on."""
    return (value or "").strip().lower() in _TRUE


def absolute_path(path: Path, base: Path | None) -> Path:
    """*path* with ``~`` expanded, taken from *base* (else the cwd) when relative."""
    path = path.expanduser()
    return path if path.is_absolute() else (base if base is not None else Path.cwd()) / path
