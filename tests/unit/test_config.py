"""Option, marker and user.conf validation: every bad value is named together with its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mlperf.config import (
    Thresholds,
    UsageProblem,
    parse_accuracy,
    parse_mode,
    parse_repeat,
    parse_scenarios,
    thresholds_from_marker,
)
from pytest_mlperf.errors import ConfigError
from pytest_mlperf.loadgen.userconf import parse_user_conf
from pytest_mlperf.rules import SCENARIOS


def test_scenarios_are_case_insensitive_deduplicated_and_ordered() -> None:
    assert parse_scenarios("offline, singlestream,Offline") == ("Offline", "SingleStream")
    assert parse_scenarios(["Server"]) == ("Server",)


def test_unknown_scenario_lists_valid_ones() -> None:
    with pytest.raises(UsageProblem, match="unknown scenario 'Batch'; valid scenarios are SingleStream, MultiStream"):
        parse_scenarios("Offline,Batch")
    with pytest.raises(UsageProblem, match="no scenario given"):
        parse_scenarios(" , ")


def test_modes() -> None:
    assert parse_mode("both") == ("performance", "accuracy")
    assert parse_mode("Accuracy") == ("accuracy",)
    with pytest.raises(UsageProblem, match="valid modes are performance, accuracy, both"):
        parse_mode("speed")


@pytest.mark.parametrize(("raw", "expected"), [(0.97, 0.97), (97.0, 0.97), (1.0, 1.0), (0.0, 0.0)])
def test_accuracy_accepts_fraction_or_percent(raw: float, expected: float) -> None:
    assert parse_accuracy(raw, "x") == pytest.approx(expected)


def test_accuracy_out_of_range() -> None:
    with pytest.raises(UsageProblem, match="accuracy target 101"):
        parse_accuracy(101, "--mlperf-accuracy-target")


def test_marker_per_scenario_values_and_precedence() -> None:
    kwargs = {"latency_ms": {"SingleStream": 5, "Server": 15}, "accuracy": 97, "min_qps": 10}
    server = thresholds_from_marker(kwargs, "Server", "t")
    assert server == Thresholds(accuracy=0.97, latency_ms=15.0, min_qps=10.0)
    assert thresholds_from_marker(kwargs, "Offline", "t").latency_ms is None
    cli = Thresholds(latency_ms=7.0)
    assert server.merged(cli) == Thresholds(accuracy=0.97, latency_ms=7.0, min_qps=10.0)


def test_marker_rejects_unknown_keys_scenarios_and_types() -> None:
    with pytest.raises(UsageProblem, match=r"t::x: unknown mlperf marker argument\(s\) p99"):
        thresholds_from_marker({"p99": 3}, "Server", "t::x")
    with pytest.raises(UsageProblem, match=r"unknown scenario key\(s\) Batch"):
        thresholds_from_marker({"latency_ms": {"Batch": 3}}, "Server", "t")
    with pytest.raises(UsageProblem, match="must be a number"):
        thresholds_from_marker({"min_qps": "fast"}, "Server", "t")


def test_user_conf_accepts_loadgen_syntax() -> None:
    # A comment after the value is LoadGen's error (-22), not a comment: see tests/hostile/test_settings_userconf.py.
    text = "# comment\nresnet50.Server.target_qps = 100.5\n*.*.min_duration = 1000\n\n"
    assert parse_user_conf(text, "u.conf") == [
        ("resnet50", "Server", "target_qps", "100.5"),
        ("*", "*", "min_duration", "1000"),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("resnet50.Server.target_qps=100", r"u.conf:2: malformed line .*spaces around '='"),
        ("resnet50.Batch.target_qps = 1", r"u.conf:2: unknown scenario 'Batch'"),
        ("resnet50.Server.target_qsp = 1", r"u.conf:2: unknown key 'target_qsp'"),
        ("resnet50.Server.target_qps = fast", r"u.conf:2: target_qps = fast is not a plain decimal number"),
    ],
)
def test_user_conf_errors_name_file_and_line(line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_user_conf("*.Offline.min_duration = 1\n" + line + "\n", "u.conf")


def test_every_scenario_has_a_percentile_rule() -> None:
    from pytest_mlperf.rules import LATENCY_PERCENTILE, SMOKE_MIN_QUERIES

    assert set(LATENCY_PERCENTILE) == set(SCENARIOS) == set(SMOKE_MIN_QUERIES)


def test_repeat_is_a_whole_number_or_auto() -> None:
    assert parse_repeat("1") == (False, 1)  # the declared default; an unset option never reaches the parser
    assert parse_repeat("4") == (False, 4)
    assert parse_repeat(" Auto ") == (True, 10)
    with pytest.raises(UsageProblem, match="--mlperf-repeat: 'many' is not a whole number or auto; write e\\.g\\."):
        parse_repeat("many")
    with pytest.raises(UsageProblem, match="--mlperf-repeat: 0 is not valid; it must be from 1 to 1000"):
        parse_repeat("0")


def test_readme_documents_every_option() -> None:
    from pytest_mlperf.config import OPTIONS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    undocumented = [spec.flag for spec in OPTIONS if f"`{spec.flag}" not in readme]
    assert undocumented == []


# -- option defaults: declared once, in the option table -----------------------------------------------------------


def test_run_config_defaults_are_the_declared_option_defaults() -> None:
    from pytest_mlperf.config import OPTIONS, RunConfig, build_run_config

    unset = build_run_config(lambda spec: None)
    assert unset == RunConfig()
    assert build_run_config(lambda spec: "" if spec.kind == "string" else None) == unset, "empty means unset"
    literal = [spec for spec in OPTIONS if spec.default is not None]
    assert {spec.name for spec in literal} >= {"scenarios", "mode", "profile", "results", "log-dir", "backend",
                                               "providers", "threads", "batch-size", "server-max-wait-us",
                                               "workers", "repeat", "alpha", "floor"}  # fmt: skip
    for spec in literal:
        # Giving the declared default explicitly must change nothing: RunConfig holds exactly that value.
        given = build_run_config(lambda s, spec=spec: spec.default if s is spec else None)
        assert given == unset, spec.flag


def test_help_ends_with_the_declared_default_and_the_text_never_repeats_it() -> None:
    from pytest_mlperf.config import OPTIONS, OptionSpec

    for spec in OPTIONS:
        assert spec.help.count("Default:") == 1, spec.flag
        assert spec.help.endswith(f" Default: {spec.default_text}."), spec.flag
        if spec.default is not None and not isinstance(spec.default, bool):
            assert spec.default_text == str(spec.default), spec.flag
    with pytest.raises(ValueError, match="--mlperf-x: declare the default with default= or default_help="):
        OptionSpec("x", "Something. Default: 3.", 3)
    with pytest.raises(ValueError, match="--mlperf-x: give exactly one of default="):
        OptionSpec("x", "Something.")
    with pytest.raises(ValueError, match="--mlperf-x: give exactly one of default="):
        OptionSpec("x", "Something.", 3, default_help="three")


@pytest.mark.parametrize(
    ("raw", "expected"), [("0.05", 0.05), ("5%", 0.05), ("5 %", 0.05), (0.0, 0.0), ("0", 0.0), ("99.5%", 0.995)]
)
def test_one_fraction_parser_accepts_fractions_and_percents(raw: object, expected: float) -> None:
    from pytest_mlperf.config import parse_fraction

    assert parse_fraction(raw, "--mlperf-floor") == pytest.approx(expected)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("abc", r"^--mlperf-floor: 'abc' is not a number; write a fraction \(0\.05\) or a percent \(5%\)$"),
        ("5", r"^--mlperf-floor: '5' is not valid; it must be a fraction from 0 to below 1 \(0\.05 = 5 %\)$"),
        ("-1%", r"^--mlperf-floor: '-1%' is not valid"),
        ("nan", r"^--mlperf-floor: 'nan' is not valid"),
    ],
)
def test_one_fraction_parser_names_the_option_and_the_fix(raw: str, message: str) -> None:
    from pytest_mlperf.config import parse_fraction

    with pytest.raises(UsageProblem, match=message):
        parse_fraction(raw, "--mlperf-floor")


def test_alpha_is_strictly_between_zero_and_one() -> None:
    from pytest_mlperf.config import parse_alpha

    assert parse_alpha(0.01, "--mlperf-alpha") == 0.01
    assert parse_alpha("1%") == pytest.approx(0.01)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(UsageProblem, match=rf"^--mlperf-alpha: {bad} is not valid; it must be between 0 and 1"):
            parse_alpha(bad, "--mlperf-alpha")
    with pytest.raises(UsageProblem, match=r"^'2' is not valid"):
        parse_alpha("2")
