"""Option, marker and user.conf validation: every bad value is named together with its fix."""

from __future__ import annotations

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
    text = "# comment\nresnet50.Server.target_qps = 100.5\n*.*.min_duration = 1000  # trailing\n\n"
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
        ("resnet50.Server.target_qps = fast", r"u.conf:2: value 'fast' for target_qps is not a number"),
    ],
)
def test_user_conf_errors_name_file_and_line(line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_user_conf("*.Offline.min_duration = 1\n" + line + "\n", "u.conf")


def test_every_scenario_has_a_percentile_rule() -> None:
    from pytest_mlperf.rules import LATENCY_PERCENTILE, SMOKE_MIN_QUERIES

    assert set(LATENCY_PERCENTILE) == set(SCENARIOS) == set(SMOKE_MIN_QUERIES)


def test_repeat_is_a_whole_number_or_auto() -> None:
    assert parse_repeat(None) == (False, 1)
    assert parse_repeat("4") == (False, 4)
    assert parse_repeat(" Auto ") == (True, 10)
    with pytest.raises(UsageProblem, match="--mlperf-repeat: 'many' is not a whole number or auto; write e\\.g\\."):
        parse_repeat("many")
    with pytest.raises(UsageProblem, match="--mlperf-repeat: 0 is not valid; it must be 1 or more"):
        parse_repeat("0")


def test_readme_documents_every_option() -> None:
    from pathlib import Path

    from pytest_mlperf.config import OPTIONS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    undocumented = [spec.flag for spec in OPTIONS if f"`{spec.flag}" not in readme]
    assert undocumented == []
