"""Turns the Action's ``INPUT_*`` environment variables into validated settings and the pytest argv."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")
MODES = ("performance", "accuracy", "both")
PROFILES = ("smoke", "official")
COMPARES = ("ab", "baseline-file", "none")
#: ``repeat: auto``: at least and at most this many A/B rounds. The same as pytest_mlperf.rules.AUTO_ROUNDS (a test
#: checks it); the Action talks to the plugin only through its command line, so it does not import it.
AUTO_ROUNDS = (3, 10)
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off", "")


class InputError(ValueError):
    """A ``with:`` value of the Action that cannot be used; the message says which input and how to fix it."""


def env_name(name: str) -> str:
    """``base-ref`` -> ``INPUT_BASE_REF``: action.yml maps every input to this variable."""
    return "INPUT_" + name.replace("-", "_").upper()


def _get(environ: Mapping[str, str], name: str, default: str = "") -> str:
    return environ.get(env_name(name), default).strip()


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = _get(environ, name) or default
    if value not in choices:
        raise InputError(f"input `{name}`: {value!r} is not one of {', '.join(choices)}; fix `{name}:` under `with:`")
    return value


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    value = _get(environ, name).lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InputError(f"input `{name}`: {value!r} is not a boolean; write `{name}: true` or `{name}: false`")


def _number(environ: Mapping[str, str], name: str, default: float, low: float, high: float | None) -> float:
    raw = _get(environ, name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"input `{name}`: {raw!r} is not a number; write e.g. `{name}: {default}`") from None
    upper_ok = high is None or value < high
    if not (value >= low and upper_ok) or value != value:
        bound = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise InputError(f"input `{name}`: {raw} must be {bound}; write e.g. `{name}: {default}`")
    return value


def _split(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = _get(environ, name)
    try:
        return tuple(shlex.split(raw))
    except ValueError as exc:
        raise InputError(
            f"input `{name}`: cannot split {raw!r} like a shell would ({exc}); balance the quotes"
        ) from None


def _scenarios(environ: Mapping[str, str]) -> tuple[str, ...]:
    raw = _get(environ, "scenarios")
    names = tuple(s.strip() for s in raw.replace(" ", ",").split(",") if s.strip())
    bad = [s for s in names if s not in SCENARIOS]
    if bad:
        raise InputError(
            f"input `scenarios`: {', '.join(map(repr, bad))} not among {', '.join(SCENARIOS)}; "
            "give a comma list such as `scenarios: SingleStream,Offline` (names are case-sensitive)"
        )
    return names


def _repeat(environ: Mapping[str, str]) -> int | Literal["auto"]:
    if (_get(environ, "repeat") or "auto").lower() == "auto":
        return "auto"
    repeat = _number(environ, "repeat", 3, 1, None)
    if repeat != int(repeat):
        raise InputError(f"input `repeat`: {repeat} is not a whole number; write e.g. `repeat: 3` or `repeat: auto`")
    return int(repeat)


@dataclass(frozen=True)
class Inputs:
    """Everything ``run`` mode takes from ``with:``; paths stay as written (relative to the workspace)."""

    suites: tuple[str, ...] = ("suites",)
    keyword: str = ""
    scenarios: tuple[str, ...] = ()
    mode: str = "both"
    profile: str = "smoke"
    pytest_args: tuple[str, ...] = ()
    cache_dir: str = ""
    compare: str = "ab"
    base_ref: str = ""
    baseline_file: str = ""
    # "auto": rounds until every gated metric is decided (AUTO_ROUNDS), see the README's "How the gate decides".
    repeat: int | Literal["auto"] = "auto"
    alpha: float = 0.01
    floor: float = 0.05
    force_compare: bool = False
    fail_on_regression: bool = True
    results_dir: str = "mlperf-results"
    comment: bool = True
    label: str = ""
    # Kept out of repr so that a logged Inputs never shows the token.
    github_token: str = field(default="", repr=False)
    # The login the token comments as; empty: asked of GitHub (see action.comment.token_login).
    comment_author: str = ""


_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?")


def _base_ref(environ: Mapping[str, str]) -> str:
    """The ``base-ref`` input; it reaches git as an argument, so it may not look like an option."""
    value = _get(environ, "base-ref")
    if value.startswith("-") or any(c.isspace() or not c.isprintable() for c in value):
        raise InputError(
            f"input `base-ref`: {value!r} is not a commit, branch or tag name (git would read a leading '-' as an "
            "option); give e.g. `${{ github.event.pull_request.base.sha }}`"
        )
    return value


def comment_author(environ: Mapping[str, str]) -> str:
    """The ``comment-author`` input: a GitHub login (``name`` or ``app[bot]``), or empty to ask GitHub."""
    value = _get(environ, "comment-author")
    if value and not _LOGIN.fullmatch(value):
        raise InputError(
            f"input `comment-author`: {value!r} is not a GitHub login; give the user or app the token comments as, "
            "such as `my-app[bot]`, or leave it empty"
        )
    return value


def read_inputs(environ: Mapping[str, str]) -> Inputs:
    """Validates every ``INPUT_*`` variable of run mode; raises InputError naming the first bad one."""
    compare = _choice(environ, "compare", COMPARES, "ab")
    baseline_file = _get(environ, "baseline-file")
    if compare == "baseline-file" and not baseline_file:
        raise InputError(
            "input `baseline-file` is empty but `compare: baseline-file` needs it; "
            "give the path of a results JSON (e.g. one restored from the nightly baseline)"
        )
    repeat = _repeat(environ)
    return Inputs(
        suites=_split(environ, "suites") or ("suites",),
        keyword=_get(environ, "keyword"),
        scenarios=_scenarios(environ),
        mode=_choice(environ, "mode", MODES, "both"),
        profile=_choice(environ, "profile", PROFILES, "smoke"),
        pytest_args=_split(environ, "pytest-args"),
        cache_dir=_get(environ, "cache-dir"),
        compare=compare,
        base_ref=_base_ref(environ),
        baseline_file=baseline_file,
        repeat=repeat,
        alpha=_number(environ, "alpha", 0.01, 1e-9, 1.0),
        floor=_number(environ, "floor", 0.05, 0.0, 1.0),
        force_compare=_bool(environ, "force-compare", False),
        fail_on_regression=_bool(environ, "fail-on-regression", True),
        results_dir=_get(environ, "results-dir") or "mlperf-results",
        comment=_bool(environ, "comment", True),
        label=_get(environ, "artifact-name"),
        github_token=_get(environ, "github-token"),
        comment_author=comment_author(environ),
    )


def pytest_argv(
    inputs: Inputs, results: Path, log_dir: Path, *, workspace: Path, repeat: int | Literal["auto"] | None = None
) -> list[str]:
    """The pytest arguments (after ``python -m pytest``) for one run writing ``results`` and ``log_dir``.

    ``workspace`` anchors a relative cache dir, so that both sides of an ``ab`` run share one model cache.
    """
    argv: list[str] = [*inputs.suites]
    if inputs.keyword:
        argv += ["-k", inputs.keyword]
    if inputs.scenarios:
        argv += ["--mlperf-scenarios", ",".join(inputs.scenarios)]
    argv += ["--mlperf-mode", inputs.mode, "--mlperf-profile", inputs.profile]
    if inputs.cache_dir:
        cache = Path(inputs.cache_dir).expanduser()
        argv += ["--mlperf-cache-dir", str(cache if cache.is_absolute() else workspace / cache)]
    if repeat == "auto" or (isinstance(repeat, int) and repeat > 1):
        argv += ["--mlperf-repeat", str(repeat)]
    argv += ["--mlperf-results", str(results), "--mlperf-log-dir", str(log_dir)]
    # Every results file the Action writes may be compared (A/B, a baseline file, tonight's baseline): keep the
    # per-query latencies the gate decides latency on.
    argv += ["--mlperf-record-latencies"]
    # Last, so that a user's own --mlperf-* flag wins over what the Action derived.
    argv += inputs.pytest_args
    return argv


ENVIRONMENTS = ("private", "job")
_EXTRA = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class SetupInputs:
    """What goes into the environment pytest-mlperf runs in (the ``setup`` step); paths are absolute."""

    environment: str = "private"
    extras: tuple[str, ...] = ()
    requirements: tuple[Path, ...] = ()


def read_setup_inputs(environ: Mapping[str, str], workspace: Path) -> SetupInputs:
    """Validates ``environment``, ``extras`` and ``requirements``; relative requirement files are in ``workspace``."""
    environment = _choice(environ, "environment", ENVIRONMENTS, "private")
    extras = tuple(e.strip() for e in _get(environ, "extras").replace(" ", ",").split(",") if e.strip())
    bad = [e for e in extras if not _EXTRA.fullmatch(e)]
    if bad:
        raise InputError(
            f"input `extras`: {', '.join(map(repr, bad))} is not an extra's name; give a comma list such as "
            "`extras: embedded`"
        )
    requirements = tuple(workspace / Path(p).expanduser() for p in _split(environ, "requirements"))
    if environment == "job":
        # The job's Python is used as it is: anything to install would be silently ignored.
        given = [name for name in ("extras", "requirements", "package", "venv-dir") if _get(environ, name)]
        if given:
            raise InputError(
                f"input `environment: job` runs the job's Python as it is, so {', '.join(f'`{n}`' for n in given)} "
                "would be ignored; install those in an earlier step of the job, or use `environment: private`"
            )
    missing = [str(p) for p in requirements if not p.is_file()]
    if missing:
        raise InputError(
            f"input `requirements`: no such file {', '.join(missing)}; give paths relative to the repository root, "
            "separated by spaces"
        )
    if extras and "[" in _get(environ, "package"):
        raise InputError(
            "input `extras` and a `package` with [extras] both name extras; give them in one place"
        )
    return SetupInputs(environment=environment, extras=extras, requirements=requirements)
