"""Hostile user.conf files: every value LoadGen would misread, crash on or refuse late is a usage error naming
the file, the line, the key and the accepted range, before any case runs."""

from __future__ import annotations

from pathlib import Path

import pytest

USER_TEST = """
def test_tiny(mlperf, tiny_model, tiny_dataset):
    assert mlperf.run(tiny_model, tiny_dataset, scenario="Offline", mode="performance").valid
"""


def assert_usage_error(result: pytest.RunResult, *patterns: str) -> None:
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    assert "Traceback" not in text and "INTERNALERROR" not in text, text
    result.stderr.fnmatch_lines(list(patterns))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        # std::bad_alloc or a segfault: LoadGen wraps -5 to 2**64 - 5 queries.
        ("*.Offline.min_query_count = -5", "min_query_count = -5 is read by LoadGen as 18446744073709551611*"
         "from 1 to 100000000"),
        # A wrapped duration turned an official run into a 14 ms run reported VALID.
        ("*.Offline.min_duration = -1", "min_duration = -1 is read by LoadGen as 18446744073709551615*"
         "from 0 to 604800000 ms"),
        ("*.Server.target_qps = nan", "target_qps = nan is not a finite number; use from 0.001 to 1000000000 QPS"),
        ("*.Offline.target_qps = inf", "target_qps = inf is not a finite number*"),
        ("*.Offline.target_qps = -3", "target_qps = -3 is negative; use from 0.001 to 1000000000 QPS"),
        ("*.Server.target_qps = 1e-9", "target_qps = 1e-9 is out of range; use from 0.001 to 1000000000 QPS"),
        ("*.Offline.min_duration = 2e3", "min_duration = 2e3 is read by LoadGen as 2 (whole numbers only); "
         "write one, e.g. 2000*"),
        ("*.Offline.min_query_count = 1.5", "min_query_count = 1.5 is read by LoadGen as 1*"),
        ("*.Offline.min_query_count = 010", "min_query_count = 010 is read by LoadGen as octal (8); write 10*"),
        ("*.Offline.min_query_count = 0x10", "min_query_count = 0x10 is not a plain decimal whole number*"),
        ("*.Server.target_latency = 2.5", "target_latency = 2.5 is read by LoadGen as 2 ms for Server*"),
        ("*.Server.target_latency_percentile = 100", "target_latency_percentile = 100 is out of range; use above 1 "
         "to 99.999 %"),
        ("*.Offline.min_duration = 1000 # one second", "*has a comment after the value, which LoadGen refuses*"),
        ("#tuned for CI", "*comment '#tuned for CI': LoadGen reads '#tuned' as a key*put a space after '#'*"),
        ("*.Offline.mode = 2", "*`mode` is refused*--mlperf-mode*"),
        ("*.Offline.qsl_rng_seed = 3", "*qsl_rng_seed is read by LoadGen only from its own mlperf.conf*"),
        ("*.Offline.enable_trace = 1", "*unknown key 'enable_trace'; LoadGen ignores it*"),
        ("*.Offline.print_timestamps = 2", "*print_timestamps = 2 is out of range; use 0 or 1"),
    ],
)
def test_a_bad_value_is_a_usage_error_naming_file_line_key_and_range(
    project: pytest.Pytester, line: str, message: str
) -> None:
    conf = project.path / "user.conf"
    conf.write_text(f"# tuned\n{line}\n")
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest(f"--mlperf-user-conf={conf}", "--mlperf-profile=official", "-p", "no:cacheprovider")
    assert_usage_error(result, f"*{conf}:2: {message}*")


def test_the_session_survives_what_crashed_loadgen_in_a_subprocess(project: pytest.Pytester) -> None:
    """The crash itself (a signal, not an exit status) is only visible from outside the process."""
    conf = project.path / "user.conf"
    conf.write_text("*.Offline.min_query_count = -5\n")
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest_subprocess(f"--mlperf-user-conf={conf}", "-p", "no:cacheprovider")
    assert_usage_error(result, f"*{conf}:1: min_query_count = -5 is read by LoadGen as 18446744073709551611*")


def test_values_accepted_here_are_read_by_loadgen_exactly_as_written(tmp_path: Path) -> None:
    """The grammar accepted here is a subset of LoadGen's on which LoadGen reads what the file says."""
    from pytest_mlperf.loadgen.run import SettingsSpec, build_settings
    from pytest_mlperf.loadgen.userconf import check_user_conf

    conf = tmp_path / "user.conf"
    conf.write_text(
        "# a comment\n#\n\n"
        "*.Offline.min_duration = 2000\n*.Offline.target_qps = 2.5e3\n"
        "*.SingleStream.target_latency = 2.5\n*.Server.target_latency = 7\n"
        "*.Server.target_latency_percentile = 99.9\n\t*.Offline.min_query_count   =   12\t\n"
    )
    assert len(check_user_conf(conf)) == 6
    offline = build_settings(SettingsSpec("Offline", "performance", user_conf=conf))
    assert (offline.min_duration_ms, offline.offline_expected_qps, offline.min_query_count) == (2000, 2500.0, 12)
    single = build_settings(SettingsSpec("SingleStream", "performance", user_conf=conf))
    assert single.single_stream_expected_latency_ns == 2.5e6
    server = build_settings(SettingsSpec("Server", "performance", user_conf=conf))
    assert server.server_target_latency_ns == 7_000_000
    assert server.server_target_latency_percentile == pytest.approx(0.999)


def test_a_directory_is_named_as_one(project: pytest.Pytester) -> None:
    (project.path / "confs").mkdir()
    result = project.runpytest("--mlperf-user-conf=confs")
    assert_usage_error(result, "*--mlperf-user-conf: confs is a directory; give the path of the user.conf file*")


def test_a_missing_file_is_named(project: pytest.Pytester) -> None:
    result = project.runpytest("--mlperf-user-conf=nowhere.conf")
    assert_usage_error(result, "*--mlperf-user-conf: file not found: nowhere.conf*")


def test_a_device_is_not_read(project: pytest.Pytester) -> None:
    result = project.runpytest("--mlperf-user-conf=/dev/zero")
    assert_usage_error(result, "*--mlperf-user-conf: /dev/zero is not a regular file*")


def test_non_utf8_text_names_the_line(project: pytest.Pytester) -> None:
    conf = project.path / "user.conf"
    conf.write_bytes(b"*.Offline.min_duration = 1000\n# caf\xe9\n")
    result = project.runpytest(f"--mlperf-user-conf={conf}")
    assert_usage_error(result, f"*{conf}:2: byte 0xe9 is not UTF-8 text*")


def test_a_huge_file_is_refused_unread(project: pytest.Pytester) -> None:
    conf = project.path / "user.conf"
    conf.write_text("# padding\n" * 200_000)
    result = project.runpytest(f"--mlperf-user-conf={conf}")
    assert_usage_error(result, f"*--mlperf-user-conf: {conf} is larger than 1024 KiB*")


@pytest.mark.parametrize(
    ("line", "rc", "read"),
    [
        ("*.Offline.min_duration = 1000 # one second", -22, None),  # refused, with no line number
        ("*.Offline.min_duration = 2e3", 0, 2),  # misread
        ("*.Offline.min_duration = 010", 0, 8),  # octal
        ("#tuned for CI", -22, None),
    ],
)
def test_loadgen_itself_refuses_or_misreads_what_is_refused_here(tmp_path: Path, line: str, rc: int, read) -> None:
    """The premise of the refusals above, checked on the installed LoadGen (conf_type 2, as the plugin loads it).

    In a subprocess: LoadGen keeps the errors it logs outside a test and writes them into the next test's log,
    which would fail whatever LoadGen run comes next in this process.
    """
    import subprocess
    import sys

    conf = tmp_path / "user.conf"
    conf.write_text(line + "\n")
    code = (
        "import sys, mlperf_loadgen as lg\n"
        "s = lg.TestSettings()\n"
        "print(s.FromConfig(sys.argv[1], '*', 'Offline', 2), s.min_duration_ms)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(conf)], capture_output=True, text=True, check=True)
    got_rc, got_read = (int(v) for v in out.stdout.split()[-2:])
    assert got_rc == rc
    if read is not None:
        assert got_read == read


@pytest.mark.parametrize(
    ("scenario", "qps", "latency"),
    [("Offline", 1234567.891, {}), ("Server", 0.5, {}), ("SingleStream", None, {"p90": 2_500_000})],
)
def test_the_user_conf_line_the_official_hint_suggests_is_accepted(scenario: str, qps, latency) -> None:
    import re

    from pytest_mlperf.calibrate import official_hint
    from pytest_mlperf.loadgen.userconf import parse_user_conf

    hint = official_hint(scenario, "mymodel", qps, latency, ("min duration not met",))
    assert hint is not None
    line = re.search(r"`(mymodel\.[^`]+)`", hint)
    assert line is not None
    assert len(parse_user_conf(line.group(1) + "\n", "hint")) == 1


def test_the_applied_user_conf_the_results_record_passes_the_check() -> None:
    """What a run records as the user.conf reproducing it must itself be a user.conf this plugin accepts."""
    from pytest_mlperf.loadgen.userconf import applied_user_conf, parse_user_conf

    for scenario, values in [
        ("Offline", {"min_duration_ms": 1000, "min_query_count": 1, "offline_expected_qps": 1234.56789}),
        ("Server", {"server_target_qps": 0.5, "server_target_latency_ns": 15_000_000}),
        ("SingleStream", {"single_stream_expected_latency_ns": 1500, "min_query_count": 100}),
        ("MultiStream", {"multi_stream_expected_latency_ns": 2.5e7, "performance_sample_count_override": 64}),
    ]:
        text = applied_user_conf("# mine\n*.Offline.min_duration = 600\n", "resnet50", scenario, values)
        assert len(parse_user_conf(text, "applied")) == 1 + len(values), text
