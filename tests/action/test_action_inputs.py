"""The Action's inputs: INPUT_* variables -> validated settings -> the pytest argv."""

from __future__ import annotations

from pathlib import Path

import pytest

from action.inputs import AUTO_ROUNDS, InputError, Inputs, env_name, pytest_argv, read_inputs
from pytest_mlperf import rules

WS = Path("/ws")


def test_defaults_give_the_plugin_defaults_and_fixed_output_paths() -> None:
    inputs = read_inputs({})
    assert inputs == Inputs()
    argv = pytest_argv(inputs, Path("/out/r.json"), Path("/out/logs"), workspace=WS)
    assert argv == [
        "suites", "--mlperf-mode", "both", "--mlperf-profile", "smoke",
        "--mlperf-results", "/out/r.json", "--mlperf-log-dir", "/out/logs", "--mlperf-record-latencies",
    ]


def test_every_input_reaches_the_argv_and_user_args_come_last() -> None:
    env = {
        env_name("suites"): "suites/vision 'suites/with space'",
        env_name("keyword"): "resnet50 and not Server",
        env_name("scenarios"): "SingleStream, Offline",
        env_name("mode"): "performance",
        env_name("profile"): "official",
        env_name("cache-dir"): ".cache/models",
        env_name("pytest-args"): "-x --mlperf-threads 4 -p 'no:cacheprovider'",
    }
    inputs = read_inputs(env)
    argv = pytest_argv(inputs, Path("/out/r.json"), Path("/out/logs"), workspace=WS, repeat=3)
    assert argv[:2] == ["suites/vision", "suites/with space"]
    # The -k expression stays one argument: it never passes through a shell.
    assert argv[argv.index("-k") + 1] == "resnet50 and not Server"
    assert argv[argv.index("--mlperf-scenarios") + 1] == "SingleStream,Offline"
    assert argv[argv.index("--mlperf-profile") + 1] == "official"
    # A relative cache dir is anchored at the workspace, so both A/B sides share it.
    assert argv[argv.index("--mlperf-cache-dir") + 1] == "/ws/.cache/models"
    assert argv[argv.index("--mlperf-repeat") + 1] == "3"
    assert argv[-5:] == ["-x", "--mlperf-threads", "4", "-p", "no:cacheprovider"]


def test_repeat_is_auto_by_default_or_a_whole_number() -> None:
    assert read_inputs({}).repeat == "auto"
    assert read_inputs({env_name("repeat"): "AUTO"}).repeat == "auto"
    assert read_inputs({env_name("repeat"): "5"}).repeat == 5
    argv = pytest_argv(read_inputs({}), Path("/out/r.json"), Path("/out/logs"), workspace=WS, repeat="auto")
    assert argv[argv.index("--mlperf-repeat") + 1] == "auto"
    # The Action never imports the plugin, so it keeps its own copy of the rounds; they must agree.
    assert AUTO_ROUNDS == rules.AUTO_ROUNDS


def test_env_name_maps_kebab_case_like_action_yml() -> None:
    assert env_name("fail-on-regression") == "INPUT_FAIL_ON_REGRESSION"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("mode", "fast", "input `mode`: 'fast' is not one of performance, accuracy, both"),
        ("compare", "baseline", "input `compare`: 'baseline' is not one of ab, baseline-file, none"),
        ("scenarios", "offline", "input `scenarios`: 'offline' not among SingleStream, MultiStream, Server, Offline"),
        ("alpha", "1.5", "input `alpha`: 1.5 must be in [1e-09, 1.0)"),
        ("alpha", "small", "input `alpha`: 'small' is not a number"),
        ("floor", "-0.1", "input `floor`: -0.1 must be in [0.0, 1.0)"),
        # `pytest-mlperf compare` refuses a floor of 1 or more: said here, before any benchmark has run.
        ("floor", "1.5", "input `floor`: 1.5 must be in [0.0, 1.0)"),
        ("repeat", "0", "input `repeat`: 0 must be >= 1"),
        ("repeat", "2.5", "input `repeat`: 2.5 is not a whole number"),
        ("fail-on-regression", "maybe", "input `fail-on-regression`: 'maybe' is not a boolean"),
        ("pytest-args", "-k 'unbalanced", "input `pytest-args`: cannot split"),
        ("compare", "baseline-file", "input `baseline-file` is empty but `compare: baseline-file` needs it"),
    ],
)
def test_bad_inputs_name_the_input_and_the_fix(name: str, value: str, expected: str) -> None:
    with pytest.raises(InputError) as info:
        read_inputs({env_name(name): value})
    assert str(info.value).startswith(expected)


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("False", False), ("", True), ("no", False)])
def test_booleans_accept_the_yaml_spellings(value: str, expected: bool) -> None:
    assert read_inputs({env_name("fail-on-regression"): value}).fail_on_regression is expected


def test_the_token_never_shows_in_repr() -> None:
    inputs = read_inputs({env_name("github-token"): "ghs_secret"})
    assert inputs.github_token == "ghs_secret"
    assert "ghs_secret" not in repr(inputs)
