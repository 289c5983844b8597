"""The user.conf a run records as applied: the user's lines, then the plugin's settings in user.conf's units."""

from __future__ import annotations

from pytest_mlperf.loadgen.userconf import applied_user_conf, parse_user_conf


def test_user_lines_come_first_and_the_plugins_settings_follow_in_user_conf_units() -> None:
    text = applied_user_conf(
        "digits-cnn.*.min_duration = 10\n",
        "digits-cnn",
        "Server",
        {"min_duration_ms": 200, "server_target_qps": 123.5, "server_target_latency_ns": 15_000_000},
    )
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == [
        "digits-cnn.*.min_duration = 10",
        "digits-cnn.Server.min_duration = 200",
        "digits-cnn.Server.target_qps = 123.5",
        "digits-cnn.Server.target_latency = 15",
    ]
    # What it writes, LoadGen (and our reader of its format) accepts.
    assert len(parse_user_conf(text, "applied")) == 4


def test_a_setting_without_a_user_conf_key_is_named_in_a_comment() -> None:
    text = applied_user_conf(None, "*", "Offline", {"sample_concatenate_permutation": True})
    assert "sample_concatenate_permutation = True" in text
    assert all(line.startswith("#") for line in text.splitlines())
    assert parse_user_conf(text, "applied") == []


def test_nothing_applied_is_an_empty_file() -> None:
    assert applied_user_conf(None, "*", "Offline", {}) == ""
