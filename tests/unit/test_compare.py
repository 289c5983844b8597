"""Comparing results documents: case matching, pooling, fingerprints and refusals, rendering, the JSON contract."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pytest_mlperf.gate.compare import (
    ComparisonInputError,
    Source,
    compare_documents,
    exit_code,
    failures_by_case,
)
from pytest_mlperf.gate.fingerprint import comparable_settings
from pytest_mlperf.gate.render import render_markdown, render_text
from pytest_mlperf.gate.statistics import GatePolicy, Look
from pytest_mlperf.results import read_document

DATA = Path(__file__).resolve().parent.parent / "data" / "results"
SCHEMAS = Path(__file__).resolve().parents[2] / "pytest_mlperf" / "schema"
SS = "suites/test_digits.py::test_digits[SingleStream-performance]"
OFF = "suites/test_digits.py::test_digits[Offline-performance]"
ACC = "suites/test_digits.py::test_digits[Offline-accuracy]"
MS = "suites/test_digits.py::test_digits[MultiStream-performance]"


def load(name: str) -> dict[str, Any]:
    """A recorded document of release 1 (schema version 1), as the one reader gives it: upgraded to this version."""
    return read_document(DATA / f"{name}.json")


def check_contract(comparison: dict[str, Any]) -> None:
    schema = json.loads((SCHEMAS / "comparison.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(comparison, schema)


def by_id(comparison: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(case["id"], case["metric"]): case for case in comparison["cases"]}


@pytest.mark.parametrize("name", ["base", "head_same", "head_slow", "head_other_machine", "head_missing"])
def test_recorded_documents_follow_the_results_contract(name: str) -> None:
    schema = json.loads((SCHEMAS / "results.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(load(name), schema)


def test_same_code_is_no_change() -> None:
    comparison = compare_documents([load("base")], [load("head_same")])
    check_contract(comparison)
    assert comparison["verdict"] == "no-change"
    assert comparison["counts"] == {"regressions": 0, "improvements": 0, "unchanged": 3, "missing": 0}
    cases = by_id(comparison)
    assert set(cases) == {(SS, "p90_latency"), (OFF, "qps"), (ACC, "accuracy")}
    assert cases[(SS, "p90_latency")]["n_base"] == 900  # three repeats of 300 queries pooled
    assert cases[(OFF, "qps")]["n_base"] == 3  # three runs
    latency = cases[(SS, "p90_latency")]
    assert (latency["runs_base"], latency["runs_head"], latency["noise"]) == (3, 3, "between-runs")
    assert cases[(ACC, "accuracy")]["noise"] == "deterministic"
    assert all("runs 3 base / 3 head" in c["message"] for c in comparison["cases"] if c["metric"] != "accuracy")
    assert comparison["fingerprint"]["differences"] == []
    assert exit_code(comparison) == 0
    assert failures_by_case(comparison) == {}


def test_slower_head_regresses_with_messages_per_case() -> None:
    comparison = compare_documents([load("base")], [load("head_slow")])
    check_contract(comparison)
    assert comparison["verdict"] == "regression"
    assert exit_code(comparison) == 1
    failures = failures_by_case(comparison)
    assert set(failures) == {SS, OFF}
    assert re.fullmatch(
        r"p90 latency \+\d+\.\d % \[\+\d+\.\d, \+\d+\.\d\] vs baseline \(p<0\.0001, floor 5 %; runs 3 base / 3 head, "
        r"noise: run-to-run spread of both sides, \d\.\d %\)",
        failures[SS][0],
    )
    assert failures[OFF][0].startswith("qps -")
    latency = by_id(comparison)[(SS, "p90_latency")]
    assert latency["higher_is_better"] is False
    assert latency["unit"] == "ns"
    assert latency["ci"][0] > 0.05


def test_floor_per_case_and_per_metric() -> None:
    policy = GatePolicy(metric_floors={"qps": 0.25}, case_floors={SS: 0.30})
    comparison = compare_documents([load("base")], [load("head_slow")], policy)
    assert comparison["verdict"] == "no-change"
    assert "floor 30 %" in by_id(comparison)[(SS, "p90_latency")]["message"]
    assert comparison["policy"]["case_floors"] == {SS: 0.30}


def test_other_machine_is_refused_naming_each_difference() -> None:
    comparison = compare_documents(
        [Source("base.json", load("base"))], [Source("head.json", load("head_other_machine"))]
    )
    check_contract(comparison)
    assert comparison["verdict"] == "refused"
    assert exit_code(comparison) == 2
    assert comparison["cases"] == []
    reason = comparison["refused_reason"]
    assert reason.startswith("fingerprints differ: cpu 'AMD EPYC 7B13' != 'Intel(R) Xeon(R) Platinum 8375C")
    assert "onnxruntime version '1.32.0' != '1.31.0'" in reason
    assert reason.endswith("or pass --force")


def test_forced_comparison_keeps_the_differences_visible() -> None:
    comparison = compare_documents([load("base")], [load("head_other_machine")], force=True)
    check_contract(comparison)
    assert comparison["verdict"] == "no-change"
    assert len(comparison["fingerprint"]["differences"]) == 2
    assert "Compared with --force despite these differences" in render_markdown(comparison)
    assert "WARNING: compared with --force despite: cpu" in render_text(comparison)


def mutate_runs(document: dict[str, Any], case_id: str, **fields: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    for run in changed["runs"]:
        if run["id"] == case_id:
            run.update(fields)
    return changed


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"synthetic_inputs": True}, f"{SS}: synthetic_inputs false != true"),
        ({"profile": "official"}, f"{SS}: profile 'smoke' != 'official'"),
        ({"model_sha256": "0" * 64}, f"{SS}: model_sha256 '3f1c0a5e9b7d...' != '000000000000...'"),
        ({"backend": "openvino"}, f"{SS}: backend 'onnxruntime' != 'openvino'"),
    ],
)
def test_run_fingerprint_mismatch_is_refused(fields: dict[str, Any], expected: str) -> None:
    comparison = compare_documents([load("base")], [mutate_runs(load("head_same"), SS, **fields)])
    assert comparison["verdict"] == "refused"
    assert expected in comparison["refused_reason"]


def test_settings_that_define_the_measurement_must_match() -> None:
    head = load("head_same")
    for run in head["runs"]:
        if run["id"] == SS:
            run["settings"]["min_query_count"] = 1024
    comparison = compare_documents([load("base")], [head])
    assert comparison["verdict"] == "refused"
    assert f"{SS}: settings.min_query_count 300 != 1024" in comparison["refused_reason"]


def test_calibration_hints_do_not_count_but_server_load_does() -> None:
    # The recorded Offline runs already carry per-run target_qps/samples_per_query from calibration.
    assert compare_documents([load("base")], [load("head_same")])["verdict"] != "refused"
    offline = {"effective_target_qps": 4000, "samples_per_query": 4400, "min_duration_ms": 1000}
    assert comparable_settings("Offline", offline) == {"min_duration_ms": 1000}
    assert comparable_settings("Server", {"target_qps": 100}) == {"target_qps": 100}
    # An accuracy run's score does not depend on the load it ran under.
    assert comparable_settings("Server", {"target_qps": 100}, mode="accuracy") == {}


def test_pinned_cores_count_but_not_which_ones() -> None:
    from pytest_mlperf.gate.fingerprint import run_fingerprint

    run = {"scenario": "Offline", "mode": "performance", "backend_options": {"threads": 1, "cpu_affinity": [0]}}
    other = copy.deepcopy(run)
    other["backend_options"]["cpu_affinity"] = [1]
    assert run_fingerprint(run) == run_fingerprint(other)
    other["backend_options"]["cpu_affinity"] = [0, 1]
    assert run_fingerprint(run) != run_fingerprint(other)


def test_missing_cases_are_reported_on_both_sides() -> None:
    comparison = compare_documents([load("base")], [load("head_missing")])
    check_contract(comparison)
    cases = by_id(comparison)
    assert cases[(ACC, "accuracy")]["verdict"] == "missing-in-head"
    assert cases[(ACC, "accuracy")]["base"] == 0.975
    assert cases[(ACC, "accuracy")]["head"] is None
    assert cases[(MS, "p99_latency")]["verdict"] == "missing-in-base"
    assert cases[(MS, "p99_latency")]["n_head"] == 3
    assert comparison["counts"]["missing"] == 2
    assert comparison["verdict"] == "no-change"
    assert exit_code(comparison) == 0


def test_ids_limit_the_comparison_to_the_cases_that_ran() -> None:
    comparison = compare_documents([load("base")], [load("head_missing")], ids={SS})
    assert [case["id"] for case in comparison["cases"]] == [SS]
    assert comparison["counts"]["missing"] == 0


def split_by_repeat(document: dict[str, Any]) -> list[dict[str, Any]]:
    parts = []
    for repeat in range(3):
        part = copy.deepcopy(document)
        part["runs"] = [run for run in document["runs"] if run["repeat"] == repeat]
        parts.append(part)
    return parts


def test_several_files_per_side_pool_like_one() -> None:
    single = compare_documents([load("base")], [load("head_slow")])
    split = compare_documents(split_by_repeat(load("base")), split_by_repeat(load("head_slow")))
    assert split["cases"] == single["cases"]


def test_base_files_that_disagree_are_refused() -> None:
    parts = split_by_repeat(load("base"))
    parts[1]["machine"]["cores"] = 8
    comparison = compare_documents([Source(f"b{i}.json", p) for i, p in enumerate(parts)], [load("head_same")])
    assert comparison["verdict"] == "refused"
    assert "base files disagree (b0.json vs b1.json): cores 2 != 8" in comparison["refused_reason"]


def test_accuracy_drop_regresses() -> None:
    head = load("head_same")
    for run in head["runs"]:
        if run["id"] == ACC:
            run["metrics"]["accuracy"]["top1"] = 0.955
    case = by_id(compare_documents([load("base")], [head]))[(ACC, "accuracy")]
    assert case["verdict"] == "regression"
    assert case["change"] == pytest.approx(-0.02)
    assert case["message"] == (
        "top1 accuracy 95.50 % vs 97.50 % baseline (-2.00 points, tolerance 1.0 points; runs 1 base / 1 head, "
        "noise: none needed, accuracy is deterministic)"
    )


def without_samples(document: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    for run in changed["runs"]:
        run["latency_samples_ns"] = None
    return changed


def test_without_per_query_latencies_runs_decide() -> None:
    comparison = compare_documents([without_samples(load("base"))], [without_samples(load("head_slow"))])
    case = by_id(comparison)[(SS, "p90_latency")]
    assert (case["n_base"], case["n_head"]) == (3, 3)
    assert case["verdict"] == "regression"


def first_repeat(document: dict[str, Any]) -> dict[str, Any]:
    return {**document, "runs": [run for run in document["runs"] if run["repeat"] == 0]}


def test_one_run_per_side_is_not_decided_and_says_how_many_to_add() -> None:
    comparison = compare_documents([first_repeat(load("base"))], [first_repeat(load("head_slow"))])
    check_contract(comparison)
    assert comparison["verdict"] == "no-change"
    for case in comparison["cases"]:
        if case["metric"] == "accuracy":
            continue
        assert (case["verdict"], case["noise"], case["p_value"], case["ci"]) == ("no-change", "none", None, None)
        assert "one run per side cannot be told from machine noise" in case["message"]
        assert "add 2 runs per side (--mlperf-repeat 3)" in case["message"]
    latency = by_id(comparison)[(SS, "p90_latency")]
    assert (latency["runs_base"], latency["runs_head"], latency["n_base"]) == (1, 1, 300)
    assert latency["change"] > 0.05  # shown, never acted on
    assert "+24.6 %, not decided (1 run per side)" in render_text(comparison)


def test_one_head_run_against_a_baseline_with_repeats_is_a_prediction() -> None:
    comparison = compare_documents([load("base")], [first_repeat(load("head_slow"))])
    check_contract(comparison)
    assert comparison["verdict"] == "regression"
    cases = by_id(comparison)
    for key in ((SS, "p90_latency"), (OFF, "qps")):
        assert (cases[key]["runs_base"], cases[key]["runs_head"], cases[key]["noise"]) == (3, 1, "base-runs")
        assert "prediction interval from the base runs' spread" in cases[key]["message"]
    same = compare_documents([load("base")], [first_repeat(load("head_same"))])
    assert same["verdict"] == "no-change"


def test_single_runs_without_samples_say_what_is_missing() -> None:
    base, head = without_samples(load("base")), load("head_slow")
    base["runs"] = [run for run in base["runs"] if run["repeat"] == 0 and run["id"] != SS]
    case = by_id(compare_documents([base], [head]))[(SS, "p90_latency")]
    assert case["verdict"] == "missing-in-base"
    base = without_samples(load("base"))
    for run in base["runs"]:
        run["metrics"]["latency_ns"] = None
    case = by_id(compare_documents([base], [head]))[(SS, "p90_latency")]
    assert case["verdict"] == "no-change"
    assert "insufficient samples (base 0, head 3 runs" in case["message"]
    assert case["message"].endswith("no per-query latencies in base (run with the LoadGen trace enabled)")


def test_comparisons_written_before_the_noise_fields_still_render() -> None:
    comparison = compare_documents([load("base")], [load("head_slow")])
    for case in comparison["cases"]:
        for key in ("runs_base", "runs_head", "noise", "run_spread"):
            del case[key]
    check_contract(comparison)
    assert "| p90_latency |" in render_markdown(comparison)
    assert "p90_latency" in render_text(comparison)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "bad.json: expected a JSON object"),
        ({"schema_version": 1}, "bad.json: no 'runs' list; is this a pytest-mlperf results file"),
        ({"runs": [{"scenario": "Offline"}]}, r"bad.json: runs\[0\] has no 'id'"),
        ({"runs": [{"id": "t", "scenario": "Batch", "mode": "performance"}]}, "scenario 'Batch' is not one of"),
        (
            {"runs": [{"id": "t", "scenario": "Offline", "mode": "performance", "latency_samples_ns": [-1]}]},
            r"runs\[0\] \(t\): latency_samples_ns must be a list of non-negative numbers",
        ),
    ],
)
def test_bad_documents_name_the_file_and_field(document: Any, message: str) -> None:
    with pytest.raises(ComparisonInputError, match=message):
        compare_documents([Source("bad.json", document)], [load("head_same")])


def test_markdown_report() -> None:
    text = render_markdown(compare_documents([load("base")], [load("head_slow")]))
    assert text.startswith("### pytest-mlperf comparison: regression\n")
    assert "| case | metric | base | head | change [CI] | p | n base/head | verdict |" in text
    assert f"| `{SS}` | p90_latency |" in text
    assert ":red_circle: regression" in text
    assert "<details><summary>Changes beyond the floor</summary>" in text


def test_markdown_escapes_pipes_in_ids() -> None:
    base = mutate_runs(load("base"), ACC, id="t[a|b]")
    head = mutate_runs(load("head_same"), ACC, id="t[a|b]")
    assert "`t[a\\|b]`" in render_markdown(compare_documents([base], [head]))


def test_text_report_for_refusal_and_missing() -> None:
    refused = render_text(compare_documents([load("base")], [load("head_other_machine")]))
    assert refused.startswith("pytest-mlperf comparison: REFUSED\nrefused: fingerprints differ: cpu")
    missing = render_text(compare_documents([load("base")], [load("head_missing")]))
    assert "missing in head" in missing
    assert "2 missing" in missing


def test_an_adaptive_look_records_its_round_level_and_whether_it_is_decided() -> None:
    clear = compare_documents([load("base")], [load("head_slow")], look=Look(3))
    check_contract(clear)
    assert clear["verdict"] == "regression"
    assert clear["sequential"] == {"round": 3, "min_rounds": 3, "max_rounds": 10,
                                   "level": pytest.approx(Look(3).level(0.01)), "decided": True}
    assert "round 3 of 3-10, level 0.0042; runs 3 base / 3 head" in by_id(clear)[(SS, "p90_latency")]["message"]
    # A 4 % drop under about 1 % run-to-run noise: neither significant at this look's share of alpha nor
    # clearly below the floor, so another round is needed.
    head = copy.deepcopy(load("head_same"))
    for run in head["runs"]:
        if run["id"] == OFF:
            run["metrics"]["qps"] *= 0.95
    interim = compare_documents([load("base")], [head], look=Look(3))
    check_contract(interim)
    assert by_id(interim)[(OFF, "qps")]["decided"] is False
    assert interim["sequential"]["decided"] is False
    assert compare_documents([load("base")], [head], look=Look(10))["sequential"]["decided"] is True
    assert "sequential" not in compare_documents([load("base")], [head])
