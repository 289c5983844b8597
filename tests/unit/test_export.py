"""Exporters against each format's documented shape: github-action-benchmark, Bencher BMF, pytest-benchmark."""

from __future__ import annotations

import copy
import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

import pytest

from pytest_mlperf.export import (
    FORMATS,
    MEASURES,
    bencher_metric_format,
    export,
    github_action_benchmark,
    pytest_benchmark,
)
from pytest_mlperf.rules import LATENCY_PERCENTILE, QPS_SCENARIOS, SCENARIOS

DATA = Path(__file__).resolve().parent.parent / "data" / "results"
SS = "suites/test_digits.py::test_digits[SingleStream-performance]"
OFF = "suites/test_digits.py::test_digits[Offline-performance]"
ACC = "suites/test_digits.py::test_digits[Offline-accuracy]"


@pytest.fixture
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / "base.json").read_text(encoding="utf-8"))
    return loaded


def runs_of(document: dict[str, Any], case_id: str) -> list[dict[str, Any]]:
    return [run for run in document["runs"] if run["id"] == case_id]


def check_gab_entry(entry: dict[str, Any]) -> None:
    """github-action-benchmark custom tools: name/unit/value required, range and extra optional strings."""
    assert set(entry) <= {"name", "unit", "value", "range", "extra"}
    assert isinstance(entry["name"], str)
    assert entry["name"]
    assert isinstance(entry["unit"], str)
    assert isinstance(entry["value"], int | float)
    assert math.isfinite(entry["value"])
    for optional in ("range", "extra"):
        if optional in entry:
            assert isinstance(entry[optional], str)


def test_gab_smaller_is_latency_in_ms(document: dict[str, Any]) -> None:
    entries = github_action_benchmark(document, bigger_is_better=False)
    for entry in entries:
        check_gab_entry(entry)
    # Offline is judged on throughput alone (MLPerf names no latency percentile for it), so only SingleStream here.
    assert [e["name"] for e in entries] == [f"{SS} p90 latency"]
    p90s = [run["metrics"]["latency_ns"]["p90"] / 1e6 for run in runs_of(document, SS)]
    assert entries[0]["unit"] == "ms"
    assert entries[0]["value"] == pytest.approx(statistics.median(p90s))
    assert re.fullmatch(r"± \S+", entries[0]["range"])
    assert "scenario: SingleStream" in entries[0]["extra"]
    assert "runs: 3" in entries[0]["extra"]


def test_gab_bigger_is_throughput_and_accuracy(document: dict[str, Any]) -> None:
    entries = github_action_benchmark(document, bigger_is_better=True)
    for entry in entries:
        check_gab_entry(entry)
    named = {e["name"]: e for e in entries}
    assert set(named) == {f"{OFF} throughput", f"{ACC} top1 accuracy"}
    qps = [run["metrics"]["qps"] for run in runs_of(document, OFF)]
    assert named[f"{OFF} throughput"]["value"] == pytest.approx(statistics.median(qps))
    assert named[f"{OFF} throughput"]["unit"] == "samples/s"
    assert named[f"{ACC} top1 accuracy"] == {
        "name": f"{ACC} top1 accuracy",
        "unit": "%",
        "value": pytest.approx(97.5),
        "extra": "scenario: Offline\nprofile: smoke\nruns: 1",
    }


#: The JSON Schema Bencher publishes for BMF (https://bencher.dev/docs/reference/bencher-metric-format).
BMF_SCHEMA = {
    "type": "object",
    "patternProperties": {
        ".+": {
            "type": "object",
            "patternProperties": {
                ".+": {
                    "type": "object",
                    "properties": {
                        "value": {"type": "number"},
                        "lower_value": {"type": "number"},
                        "upper_value": {"type": "number"},
                    },
                    "required": ["value"],
                }
            },
        }
    },
}


def test_bmf_shape(document: dict[str, Any]) -> None:
    import jsonschema

    bmf = bencher_metric_format(document)
    jsonschema.validate(bmf, BMF_SCHEMA)
    assert json.loads(json.dumps(bmf)) == bmf  # plain JSON: names -> measure slugs -> metric
    for benchmark, measures in bmf.items():
        assert isinstance(benchmark, str)
        for slug, metric in measures.items():
            assert re.fullmatch(r"[a-z0-9-]+", slug)
            assert set(metric) <= {"value", "lower_value", "upper_value"}
            assert "value" in metric
            if "lower_value" in metric:
                assert metric["lower_value"] <= metric["value"] <= metric["upper_value"]
    assert set(bmf[SS]) == {"latency"}
    assert set(bmf[OFF]) == {"throughput"}
    assert bmf[ACC] == {"accuracy": {"value": pytest.approx(97.5)}}
    p90s = [run["metrics"]["latency_ns"]["p90"] for run in runs_of(document, SS)]
    assert bmf[SS]["latency"] == {"value": statistics.median(p90s), "lower_value": min(p90s), "upper_value": max(p90s)}


STATS_KEYS = {
    "min",
    "max",
    "mean",
    "stddev",
    "rounds",
    "median",
    "iqr",
    "q1",
    "q3",
    "iqr_outliers",
    "stddev_outliers",
    "outliers",
    "ld15iqr",
    "hd15iqr",
    "ops",
    "total",
    "iterations",
}
BENCHMARK_KEYS = {"group", "name", "fullname", "params", "param", "extra_info", "options", "stats"}


def test_pytest_benchmark_shape(document: dict[str, Any]) -> None:
    out = pytest_benchmark(document)
    assert set(out) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    assert out["machine_info"]["cpu"]["brand_raw"] == "AMD EPYC 7B13"
    assert out["machine_info"]["system"] == "Linux"
    assert out["commit_info"]["id"] == document["commit"]["sha"]
    assert out["commit_info"]["branch"] == "main"
    # Accuracy runs have no timing, so pytest-benchmark has nothing to hold them in.
    assert [b["fullname"] for b in out["benchmarks"]] == [SS, OFF]
    for bench in out["benchmarks"]:
        assert set(bench) == BENCHMARK_KEYS
        assert set(bench["stats"]) == STATS_KEYS
        stats = bench["stats"]
        assert stats["min"] <= stats["q1"] <= stats["median"] <= stats["q3"] <= stats["max"]
        assert stats["ops"] == pytest.approx(1 / stats["mean"])
        assert isinstance(stats["outliers"], str)


def test_pytest_benchmark_rounds_are_queries_or_runs(document: dict[str, Any]) -> None:
    ss, off = pytest_benchmark(document)["benchmarks"]
    samples = [v for run in runs_of(document, SS) for v in run["latency_samples_ns"]]
    assert ss["name"] == "test_digits[SingleStream-performance]"
    assert ss["param"] == "SingleStream-performance"
    assert ss["stats"]["rounds"] == len(samples) == 900
    assert ss["stats"]["mean"] == pytest.approx(statistics.fmean(samples) / 1e9)
    assert ss["extra_info"]["round"] == "query latency"
    qps = [run["metrics"]["qps"] for run in runs_of(document, OFF)]
    assert off["stats"]["rounds"] == 3
    assert off["stats"]["min"] == pytest.approx(1 / max(qps))
    assert off["extra_info"]["samples_per_second"] == qps


def test_no_commit_and_no_runs() -> None:
    empty: dict[str, Any] = {"schema_version": 1, "commit": None, "runs": [], "machine": {}, "versions": {}}
    assert github_action_benchmark(empty, bigger_is_better=False) == []
    assert bencher_metric_format(empty) == {}
    out = pytest_benchmark(empty)
    assert out["benchmarks"] == []
    assert "error" in out["commit_info"]


def test_export_dispatch(document: dict[str, Any]) -> None:
    assert FORMATS == ("gab-smaller", "gab-bigger", "bmf", "pytest-benchmark")
    assert export(document, "bmf") == bencher_metric_format(document)
    with pytest.raises(ValueError, match="unknown export format 'csv'; use one of gab-smaller, gab-bigger"):
        export(document, "csv")


@pytest.fixture(scope="module")
def every_scenario() -> dict[str, Any]:
    """A real run of suites/test_digits.py in all four scenarios and both modes (latency samples cut to 200)."""
    loaded: dict[str, Any] = json.loads((DATA / "all_scenarios.json").read_text(encoding="utf-8"))
    return loaded


def _performance_run(document: dict[str, Any], scenario: str) -> dict[str, Any]:
    (run,) = [r for r in document["runs"] if r["scenario"] == scenario and r["mode"] == "performance"]
    return run


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_exported_metric_has_the_unit_and_direction_of_its_mlperf_metric(
    every_scenario: dict[str, Any], scenario: str
) -> None:
    run = _performance_run(every_scenario, scenario)
    case = run["id"]
    metrics = run["metrics"]
    percentile = LATENCY_PERCENTILE[scenario]
    smaller = {e["name"]: e for e in github_action_benchmark(every_scenario, bigger_is_better=False)}
    bigger = {e["name"]: e for e in github_action_benchmark(every_scenario, bigger_is_better=True)}
    # Lower-is-better latency only in the smaller list, in ms; throughput and accuracy only in the bigger list.
    assert all(e["unit"] == "ms" and e["name"].endswith(" latency") for e in smaller.values())
    assert all(e["unit"] in ("samples/s", "%") and "latency" not in e["name"] for e in bigger.values())
    mine_smaller = {n: e for n, e in smaller.items() if n.startswith(case)}
    mine_bigger = {n: e for n, e in bigger.items() if n.startswith(case)}
    if percentile is None:  # Offline: judged on throughput alone
        assert mine_smaller == {}
    else:
        assert list(mine_smaller) == [f"{case} {percentile} latency"]
        assert mine_smaller[f"{case} {percentile} latency"]["value"] == metrics["latency_ns"][percentile] / 1e6
    bmf = bencher_metric_format(every_scenario)[case]
    (bench,) = [b for b in pytest_benchmark(every_scenario)["benchmarks"] if b["fullname"] == case]
    if scenario in QPS_SCENARIOS:
        # Samples per second as LoadGen reports the scenario's metric (Server: result_completed_samples_per_sec),
        # never a rate of queries such as the inverse of the mean query latency.
        samples_per_s = metrics["qps"]
        inverse_mean_latency = 1e9 / statistics.fmean(run["latency_samples_ns"] or [metrics["latency_ns"]["mean"]])
        assert samples_per_s != pytest.approx(inverse_mean_latency, rel=0.05)
        assert mine_bigger == {f"{case} throughput": {**mine_bigger[f"{case} throughput"], "unit": "samples/s"}}
        assert mine_bigger[f"{case} throughput"]["value"] == samples_per_s
        assert bmf["throughput"] == {"value": samples_per_s}
        # pytest-benchmark: stats in seconds per sample (lower is better), ops in samples/s (bigger is better).
        assert bench["stats"]["ops"] == pytest.approx(samples_per_s)
        assert bench["extra_info"]["samples_per_second"] == [samples_per_s]
    else:
        assert mine_bigger == {}
        assert "throughput" not in bmf
        # Judged on latency: rounds are queries, stats their latencies in seconds (lower is better).
        assert bench["extra_info"]["round"] == "query latency"
        assert bench["stats"]["median"] == pytest.approx(statistics.median(run["latency_samples_ns"]) / 1e9)
    if percentile is not None:
        assert bmf["latency"] == {"value": metrics["latency_ns"][percentile]}  # Bencher's latency is in ns
        assert bench["extra_info"][f"{percentile}_latency_ns"] == [metrics["latency_ns"][percentile]]
    (accuracy_run,) = [r for r in every_scenario["runs"] if r["scenario"] == scenario and r["mode"] == "accuracy"]
    accuracy_case = accuracy_run["id"]
    accuracy = bigger[f"{accuracy_case} top1 accuracy"]
    assert accuracy["unit"] == "%"
    assert accuracy["value"] == pytest.approx(accuracy_run["metrics"]["accuracy"]["top1"] * 100)
    assert not any(n.startswith(accuracy_case) for n in smaller)


def test_the_measures_table_names_every_exported_measure(every_scenario: dict[str, Any]) -> None:
    slugs = {slug for measures in bencher_metric_format(every_scenario).values() for slug in measures}
    assert slugs == set(MEASURES) == {"latency", "throughput", "accuracy"}
    assert {m: bigger for m, (_, bigger) in MEASURES.items()} == {
        "latency": False, "throughput": True, "accuracy": True,
    }


def test_a_lower_is_better_accuracy_metric_goes_to_the_smaller_list(every_scenario: dict[str, Any]) -> None:
    every_scenario = copy.deepcopy(every_scenario)  # the fixture is shared by the module
    (run,) = [r for r in every_scenario["runs"] if r["scenario"] == "Offline" and r["mode"] == "accuracy"]
    # The task of an error rate, say: the same figure, judged the other way.
    run["task"] = {**run["task"], "higher_is_better": False}
    name = f"{run['id']} {run['task']['metric']} accuracy"
    smaller = {e["name"]: e for e in github_action_benchmark(every_scenario, bigger_is_better=False)}
    bigger = {e["name"] for e in github_action_benchmark(every_scenario, bigger_is_better=True)}
    assert name not in bigger
    assert smaller[name]["unit"] == "%"
    assert smaller[name]["value"] == pytest.approx(run["metrics"]["accuracy"][run["task"]["metric"]] * 100)
