"""Results documents: schema-valid envelope, atomic writes, readable case directories, the terminal table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

from pytest_mlperf.results import (
    Metrics,
    RunResult,
    case_dirname,
    new_document,
    read_document,
    runs_table,
    schema,
    write_json_atomic,
)


def make_run(**changes: object) -> RunResult:
    run = RunResult(
        id="suites/test_digits.py::test_digits[Offline-performance]", model="digits-cnn", model_sha256="a" * 64,
        dataset={"name": "digits-heldout", "count": 359}, backend="onnxruntime", backend_options={"threads": 2},
        scenario="Offline", mode="performance", profile="smoke", settings={"min_duration_ms": 1000},
        overrides={"min_duration_ms": 1000},
        metrics=Metrics(qps=1234.5, latency_ns={"mean": 1, "p50": 1, "p90": 2, "p95": 3, "p99": 4, "p99.9": 5}),
        thresholds={"min_qps": 10.0}, valid=True, passed=True, reasons=[], log_dir="logs/x", duration_s=1.5,
    )
    for key, value in changes.items():
        setattr(run, key, value)
    return run


def test_document_validates_against_packaged_schema(tmp_path: Path) -> None:
    doc = new_document(tmp_path)
    doc["runs"].append(make_run().to_dict())
    accuracy = Metrics(accuracy={"top1": 0.98, "count": 359})
    doc["runs"].append(make_run(mode="accuracy", valid=None, metrics=accuracy).to_dict())
    jsonschema.validate(doc, schema())
    assert doc["commit"] is None  # tmp_path is no git repository
    assert doc["machine"]["cores"] >= 1
    assert set(doc["versions"]) >= {"plugin", "loadgen", "onnxruntime", "python"}


def test_schema_rejects_a_run_without_metrics(tmp_path: Path) -> None:
    doc = new_document(tmp_path)
    run = make_run().to_dict()
    del run["metrics"]
    doc["runs"].append(run)
    with pytest.raises(jsonschema.ValidationError, match="'metrics' is a required property"):
        jsonschema.validate(doc, schema())


def test_atomic_write_keeps_old_file_when_serialisation_fails(tmp_path: Path) -> None:
    target = tmp_path / "out" / "results.json"
    write_json_atomic(target, {"schema_version": 1, "runs": []})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"schema_version": 1, "runs": [object()]})
    assert json.loads(target.read_text()) == {"schema_version": 1, "runs": []}
    assert os.listdir(target.parent) == ["results.json"]


def test_read_document_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "r.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match=r"r.json: not valid JSON"):
        read_document(bad)
    bad.write_text('{"schema_version": 99}')
    with pytest.raises(ValueError, match="schema_version 99; this pytest-mlperf reads versions 1 and 2"):
        read_document(bad)


def test_case_dirname_is_safe_and_distinct() -> None:
    a = case_dirname("suites/t.py::test[Server-performance]")
    b = case_dirname("other/t.py::test[Server-performance]")
    assert a != b
    assert "/" not in a and ".." not in a
    assert a.startswith("test_Server-performance")
    assert case_dirname("x::y", repeat=2).endswith("-r2")


def test_runs_table_marks_synthetic_inputs_and_verdicts() -> None:
    runs = [make_run().to_dict(), make_run(synthetic_inputs=True, passed=False, valid=False).to_dict()]
    lines = runs_table(runs)
    assert lines[0].split() == ["case", "scenario", "mode", "qps", "latency", "accuracy", "valid", "result"]
    assert "1,234.5" in lines[1] and "VALID" in lines[1] and lines[1].endswith("PASS")
    assert "(synthetic inputs)" in lines[2] and "INVALID" in lines[2] and lines[2].endswith("FAIL")
