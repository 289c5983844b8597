"""Exporters against each format's documented shape: github-action-benchmark, Bencher BMF, pytest-benchmark."""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

import pytest

from pytest_mlperf.export import (
    FORMATS,
    bencher_metric_format,
    export,
    github_action_benchmark,
    pytest_benchmark,
)

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
    assert off["extra_info"]["qps"] == qps


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
