"""Check the LoadGen log parsers against logs recorded from real LoadGen 6.0.17 runs (tests/data/logs)."""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import pytest

from pytest_mlperf.errors import MLPerfError
from pytest_mlperf.loadgen import logs as logs_module
from pytest_mlperf.loadgen.logs import (
    LogParseError,
    parse_accuracy_log,
    parse_detail,
    parse_summary,
    read_accuracy_log,
    read_detail,
)

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"
RECORDED = sorted(p.name for p in LOGS.iterdir() if (p / "mlperf_log_detail.txt").is_file())
RUNTIME_ERROR = (
    "Ending early: Ran out of generated queries to issue before the minimum query count and test duration were "
    "reached. Please update the relevant expected latency or target qps in the TestSettings so they are more "
    "accurate."
)


def detail_text(case: str) -> str:
    return (LOGS / case / "mlperf_log_detail.txt").read_text()


def answer(qsl_idx: int) -> bytes:
    """The int32 class id the recording SUT returned for a sample (see tests/data/record_logs.py)."""
    return ((qsl_idx * 7 + 3) % 10).to_bytes(4, "little")


def replace_value(text: str, key: str, value: object) -> str:
    """Rewrite the value of every entry with this key, keeping the line otherwise as LoadGen wrote it."""
    lines = []
    for line in text.splitlines(keepends=True):
        if line.startswith(f':::MLLOG {{"key": "{key}",'):
            record = json.loads(line[len(":::MLLOG") :])
            record["value"] = value
            line = ":::MLLOG " + json.dumps(record) + "\n"
        lines.append(line)
    return "".join(lines)


def line_number(text: str, key: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if f'"key": "{key}"' in line)


@pytest.mark.parametrize(
    ("case", "scenario", "mode", "valid", "reasons"),
    [
        ("singlestream_valid", "SingleStream", "PerformanceOnly", True, ()),
        (
            "singlestream_invalid",
            "SingleStream",
            "PerformanceOnly",
            False,
            ("min duration not met (ran 0.060 s < 0.300 s)",),
        ),
        (
            "singlestream_min_queries",
            "SingleStream",
            "PerformanceOnly",
            False,
            ("min query count not met (150 < 200)",),
        ),
        ("multistream_valid", "MultiStream", "PerformanceOnly", True, ()),
        (
            "multistream_invalid",
            "MultiStream",
            "PerformanceOnly",
            False,
            ("min duration not met (ran 0.352 s < 0.600 s)",),
        ),
        ("server_valid", "Server", "PerformanceOnly", True, ()),
        (
            "server_invalid",
            "Server",
            "PerformanceOnly",
            False,
            (
                "performance constraints not met (p99 latency 356.9 ms > target 20.0 ms)",
                "early stopping not met: Run unsuccessful. Processed 600 queries. Would need to run at least 62072 "
                "more queries, with the run being successful if every additional query were under latency.",
            ),
        ),
        ("offline_valid", "Offline", "PerformanceOnly", True, ()),
        ("offline_invalid", "Offline", "PerformanceOnly", False, ("min duration not met (ran 0.100 s < 0.300 s)",)),
        ("offline_accuracy", "Offline", "AccuracyOnly", None, ()),
        ("accuracy_duplicates", "Offline", "PerformanceOnly", True, ()),
    ],
)
def test_recorded_logs_give_scenario_validity_and_reasons(
    case: str, scenario: str, mode: str, valid: bool | None, reasons: tuple[str, ...]
) -> None:
    log = read_detail(LOGS / case / "mlperf_log_detail.txt")
    assert (log.scenario, log.mode, log.valid) == (scenario, mode, valid)
    assert log.invalid_reasons == reasons
    assert log.loadgen_version == "6.0.17"
    assert log.raw["loadgen_version"] == ["6.0.17 @ d6147c7eb7"]
    assert log.settings["scenario"] == scenario
    assert log.requested["scenario"] == scenario


def test_every_recorded_case_is_covered() -> None:
    assert len(RECORDED) == 11


def test_invalid_runs_keep_loadgen_recommendation_and_runtime_error() -> None:
    single = read_detail(LOGS / "singlestream_invalid" / "mlperf_log_detail.txt")
    assert single.recommendation == "Decrease the expected latency so the loadgen pre-generates more queries."
    assert single.errors == (RUNTIME_ERROR,)
    assert single.raw["num_errors"] == [1]
    offline = read_detail(LOGS / "offline_invalid" / "mlperf_log_detail.txt")
    assert offline.recommendation == "Increase expected QPS so the loadgen pre-generates a larger (coalesced) query."
    assert offline.errors == ()
    server = read_detail(LOGS / "server_invalid" / "mlperf_log_detail.txt")
    assert server.recommendation == "Reduce target QPS to improve latency."
    queries = read_detail(LOGS / "singlestream_min_queries" / "mlperf_log_detail.txt")
    assert queries.errors == ("IssueQueryThread 0 Ending early: Max query count reached. query_count 150",)
    assert queries.recommendation == "The test exited early, before enough queries were issued."


def test_valid_runs_have_no_recommendation_errors_or_warnings() -> None:
    for case in ("singlestream_valid", "multistream_valid", "server_valid", "offline_valid"):
        log = read_detail(LOGS / case / "mlperf_log_detail.txt")
        assert (log.recommendation, log.errors, log.warnings) == (None, (), ()), case


def test_offline_metrics_and_settings() -> None:
    log = read_detail(LOGS / "offline_valid" / "mlperf_log_detail.txt")
    assert log.qps == 998.195
    assert log.query_count == 1
    assert log.latency_ns == dict.fromkeys(
        ("min", "max", "mean", "p50", "p90", "p95", "p97", "p99", "p99.9"), 330596878
    )
    assert log.early_stopping_latency_ns is None
    assert log.duration_s == pytest.approx(0.331)
    assert log.settings["min_duration_ms"] == 300
    assert log.settings["samples_per_query"] == 330
    assert log.settings["target_qps"] == 1000
    assert log.requested["offline_expected_qps"] == 1000
    assert "offline_expected_qps" not in log.settings


def test_server_metrics_and_settings() -> None:
    log = read_detail(LOGS / "server_valid" / "mlperf_log_detail.txt")
    assert log.qps == 1983.51
    assert log.query_count == 600
    assert log.latency_ns["p99"] == 1337270
    assert log.latency_ns["min"] == 311632
    assert log.early_stopping_latency_ns is None
    assert log.settings["target_latency_ns"] == 20000000
    assert log.settings["target_latency_percentile"] == 0.99
    assert log.requested["server_target_qps"] == 2000


def test_singlestream_metrics() -> None:
    log = read_detail(LOGS / "singlestream_valid" / "mlperf_log_detail.txt")
    assert log.qps == 1528.3
    assert log.latency_ns["p90"] == 620841
    assert log.latency_ns["p99.9"] == 2915266
    assert log.early_stopping_latency_ns == 624427
    assert log.query_count == 460
    assert log.settings["target_latency_percentile"] == 0.9


def test_multistream_reports_per_query_latency_and_no_qps() -> None:
    log = read_detail(LOGS / "multistream_valid" / "mlperf_log_detail.txt")
    assert log.qps is None
    assert log.query_count == 1144
    assert log.early_stopping_latency_ns == 616705
    assert log.latency_ns["p99"] == 563536
    assert log.settings["samples_per_query"] == 8
    # In the recording all 8 samples of a query finish together, so per-sample and per-query numbers agree;
    # change the per-query p99 to see which one the parser reports.
    edited = replace_value(detail_text("multistream_valid"), "result_99.00_percentile_per_query_latency_ns", 777)
    assert parse_detail(edited).latency_ns["p99"] == 777


def test_accuracy_mode_log_has_no_results() -> None:
    log = read_detail(LOGS / "offline_accuracy" / "mlperf_log_detail.txt")
    assert log.valid is None
    assert (log.qps, log.query_count, log.early_stopping_latency_ns, log.recommendation) == (None, None, None, None)
    assert log.latency_ns == {}
    assert log.duration_s is not None
    assert log.settings["accuracy_sample_count"] == 64


def test_raw_keeps_every_value_of_repeated_keys_in_order() -> None:
    log = read_detail(LOGS / "offline_valid" / "mlperf_log_detail.txt")
    assert log.raw["generic_message"] == [
        "Starting performance mode",
        "Ending naturally: Minimum query count and test duration met.",
    ]
    assert "loadgen_file_sha1" not in log.raw


def test_repeated_result_block_last_value_wins() -> None:
    text = detail_text("offline_valid")
    again = [line for line in text.splitlines(keepends=True) if '"key": "result_samples_per_second"' in line]
    log = parse_detail(text + replace_value("".join(again), "result_samples_per_second", 12.5))
    assert log.qps == 12.5
    assert log.raw["result_samples_per_second"] == [998.195, 12.5]


def test_warnings_are_entries_flagged_is_warning() -> None:
    text = detail_text("offline_valid")
    lines = text.splitlines(keepends=True)
    n = line_number(text, "generic_message") - 1
    record = json.loads(lines[n][len(":::MLLOG") :])
    record["metadata"]["is_warning"] = True
    lines[n] = ":::MLLOG " + json.dumps(record) + "\n"
    log = parse_detail("".join(lines))
    assert log.warnings == ("Starting performance mode",)
    assert log.errors == ()


def test_lines_without_mllog_prefix_are_ignored() -> None:
    text = detail_text("server_valid")
    noisy = "loadgen says hello\n\n" + text.replace("\n", "\nstray stdout line {not json\n", 3)
    assert parse_detail(noisy) == parse_detail(text)


def test_min_sample_count_reason_when_queries_are_enough() -> None:
    text = replace_value(detail_text("offline_valid"), "result_validity", "INVALID")
    text = replace_value(text, "result_min_queries_met", False)
    text = replace_value(text, "effective_min_sample_count", 500)
    assert parse_detail(text).invalid_reasons == ("min sample count not met (330 < 500)",)


def test_invalid_without_failed_flag_still_gives_a_reason() -> None:
    text = replace_value(detail_text("offline_valid"), "result_validity", "INVALID")
    assert parse_detail(text).invalid_reasons == ("LoadGen marked the run INVALID without naming a failed check",)


def test_malformed_mllog_line_names_source_and_line() -> None:
    text = detail_text("offline_valid")
    lines = text.splitlines(keepends=True)
    lines[39] = lines[39][:50] + "\n"
    with pytest.raises(LogParseError, match=r"^run/detail\.txt:40: malformed :::MLLOG entry") as info:
        parse_detail("".join(lines), source="run/detail.txt")
    assert (info.value.source, info.value.line) == ("run/detail.txt", 40)


def test_mllog_line_that_is_not_an_entry_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "mlperf_log_detail.txt"
    path.write_text(detail_text("offline_valid") + ':::MLLOG ["key", "value"]\n')
    last = len(detail_text("offline_valid").splitlines()) + 1
    with pytest.raises(LogParseError, match=rf"^{path}:{last}: :::MLLOG entry is not an object"):
        read_detail(path)


def test_wrong_value_type_names_the_line() -> None:
    text = replace_value(detail_text("server_valid"), "result_completed_samples_per_sec", "fast")
    where = line_number(text, "result_completed_samples_per_sec")
    with pytest.raises(LogParseError, match=rf"^x:{where}: result_completed_samples_per_sec should be a number"):
        parse_detail(text, source="x")
    bad_validity = replace_value(detail_text("server_valid"), "result_validity", "MAYBE")
    with pytest.raises(LogParseError, match=r'result_validity should be "VALID" or "INVALID", got \'MAYBE\''):
        parse_detail(bad_validity)


def test_empty_log_is_an_error() -> None:
    with pytest.raises(LogParseError, match=r"^empty\.txt: no :::MLLOG lines"):
        parse_detail("\n", source="empty.txt")


def test_performance_log_cut_before_results_is_an_error() -> None:
    text = detail_text("singlestream_invalid")
    cut = "".join(text.splitlines(keepends=True)[: line_number(text, "result_validity") - 1])
    last = len(cut.splitlines())
    with pytest.raises(LogParseError, match=rf"^d:{last}: the PerformanceOnly log ends before result_validity") as info:
        parse_detail(cut, source="d")
    assert f"(LoadGen's last error: {RUNTIME_ERROR})" in str(info.value)


def test_log_cut_before_settings_is_an_error() -> None:
    text = detail_text("server_valid")
    cut = "".join(text.splitlines(keepends=True)[:5])
    with pytest.raises(LogParseError, match=r"^d:5: the log ends before LoadGen logged effective_scenario"):
        parse_detail(cut, source="d")


def test_log_parse_error_is_value_error_and_survives_pickle() -> None:
    error = LogParseError("a.txt", 3, "broken")
    assert isinstance(error, ValueError)
    assert isinstance(error, MLPerfError)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.source, copy.line) == ("a.txt:3: broken", "a.txt", 3)


def test_accuracy_log_decodes_real_response_bytes() -> None:
    responses = read_accuracy_log(LOGS / "offline_accuracy" / "mlperf_log_accuracy.json")
    assert sorted(responses) == list(range(64))
    assert all(data == answer(idx) for idx, data in responses.items())


def test_accuracy_log_duplicates_collapse_by_qsl_idx() -> None:
    path = LOGS / "accuracy_duplicates" / "mlperf_log_accuracy.json"
    entries = json.loads(path.read_text())
    assert len(entries) == 100  # LoadGen really wrote each of the 16 loaded samples several times
    responses = read_accuracy_log(path)
    assert len(responses) == 16
    assert all(data == answer(idx) for idx, data in responses.items())


def test_accuracy_log_conflicting_duplicates_name_qsl_idx_and_file() -> None:
    path = LOGS / "accuracy_conflict" / "mlperf_log_accuracy.json"
    with pytest.raises(LogParseError, match=r"qsl_idx 13 has two different responses") as info:
        read_accuracy_log(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "seq_id 1 gave 04000000, seq_id 3 gave 05000000" in str(info.value)


def test_performance_run_accuracy_log_is_empty() -> None:
    assert (LOGS / "offline_valid" / "mlperf_log_accuracy.json").read_text() == "[\n]\n"
    assert read_accuracy_log(LOGS / "offline_valid" / "mlperf_log_accuracy.json") == {}


def test_accuracy_log_trailing_comma_is_tolerated() -> None:
    text = '[\n{ "seq_id" : 0, "qsl_idx" : 5, "data" : "0a0B" },\n]\n'
    assert parse_accuracy_log(text) == {5: b"\x0a\x0b"}


def test_accuracy_log_truncated_or_empty_is_an_error() -> None:
    text = (LOGS / "offline_accuracy" / "mlperf_log_accuracy.json").read_text()
    cut = "".join(text.splitlines(keepends=True)[:10])
    with pytest.raises(LogParseError, match=r"^acc\.json:10: the accuracy log ends without its closing"):
        parse_accuracy_log(cut, source="acc.json")
    with pytest.raises(LogParseError, match=r"^acc\.json: empty accuracy log"):
        parse_accuracy_log("", source="acc.json")


def test_accuracy_log_bad_json_and_bad_entries_name_the_place() -> None:
    with pytest.raises(LogParseError, match=r"^a:3: not valid JSON"):
        parse_accuracy_log('[\n{ "seq_id" : 0, "qsl_idx" : 1, "data" : "00" },\n{ "seq_id" : 1 "qsl_idx" }\n]', "a")
    with pytest.raises(LogParseError, match=r'^a: entry 1 \(seq_id 7\): "data" is not hex'):
        parse_accuracy_log(
            '[{"seq_id": 6, "qsl_idx": 1, "data": "00"}, {"seq_id": 7, "qsl_idx": 2, "data": "zz"}]', "a"
        )
    with pytest.raises(LogParseError, match=r'^a: entry 0 needs an integer "qsl_idx"'):
        parse_accuracy_log('[{"qsl_idx": "1", "data": "00"}]', "a")
    with pytest.raises(LogParseError, match=r"^a:1: expected a JSON array"):
        parse_accuracy_log('{"qsl_idx": 1}', "a")


def test_summary_key_values() -> None:
    summary = parse_summary((LOGS / "server_invalid" / "mlperf_log_summary.txt").read_text())
    assert summary["Scenario"] == "Server"
    assert summary["Result is"] == "INVALID"
    assert summary["Performance constraints satisfied"] == "NO"
    assert summary["Early stopping satisfied"] == "NO"
    assert summary["99.00 percentile latency (ns)"] == "356894955"
    assert summary["target_latency (ns)"] == "20000000"
    assert not any(key.startswith("*") or "Would need" in key for key in summary)


def test_summary_agrees_with_detail_log() -> None:
    for case in ("singlestream_valid", "offline_valid", "server_valid"):
        summary = parse_summary((LOGS / case / "mlperf_log_summary.txt").read_text())
        log = read_detail(LOGS / case / "mlperf_log_detail.txt")
        assert summary["Result is"] == "VALID"
        assert int(summary["Max latency (ns)"]) == log.latency_ns["max"]


def test_module_imports_neither_loadgen_nor_pytest() -> None:
    # Checked on the source, not sys.modules: the package facade may import pytest for its own reasons.
    tree = ast.parse(Path(logs_module.__file__ or "").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {name.split(".")[0] for name in imported} & {"mlperf_loadgen", "pytest", "_pytest"} == set()
