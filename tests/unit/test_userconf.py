"""user.conf values LoadGen would misread are refused with the fix."""

from __future__ import annotations

import pytest

from pytest_mlperf.errors import ConfigError
from pytest_mlperf.loadgen.userconf import parse_user_conf


def test_a_fractional_percentile_is_refused_with_the_percent_to_write() -> None:
    with pytest.raises(ConfigError, match=r"u.conf:2: target_latency_percentile = 0.9 is read as a percent by "
                                          r"LoadGen; write 90 for p90"):
        parse_user_conf("*.Server.target_qps = 10\n*.Server.target_latency_percentile = 0.9\n", "u.conf")


def test_a_percent_is_accepted() -> None:
    assert parse_user_conf("resnet50.Server.target_latency_percentile = 99.9\n", "u.conf") == [
        ("resnet50", "Server", "target_latency_percentile", "99.9")
    ]
