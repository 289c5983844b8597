"""Checks every engine's e2e tests share: the digits suite run on an engine beside onnxruntime, read back by engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SUITES = Path(__file__).resolve().parents[2] / "suites"


def run_digits_suite(pytester: pytest.Pytester, tmp_path: Path, engine: str, *args: str) -> dict[str, Any]:
    """Run the embedded digits suite's accuracy cases, every scenario, on onnxruntime and *engine* in one session;
    every case must pass. Returns the results document.

    Accuracy mode drives each scenario's SUT path (the Server batcher, the Offline pool) through the engine with a
    verdict the machine's load cannot move; the suite's latency bounds would make a loaded runner fail it."""
    results = tmp_path / "results.json"
    result = pytester.runpytest_subprocess(
        str(SUITES / "test_digits.py"), f"--mlperf-backends=onnxruntime,{engine}", f"--mlperf-results={results}",
        f"--mlperf-log-dir={tmp_path / 'logs'}", f"--mlperf-cache-dir={tmp_path / 'cache'}",
        "--mlperf-mode=accuracy", "-p", "no:cacheprovider", *args,
        timeout=600,
    )
    result.assert_outcomes(passed=8)
    doc: dict[str, Any] = json.loads(results.read_text())
    assert {run["backend"] for run in doc["runs"]} == {"onnxruntime", engine}
    return doc


def top1_by_engine(doc: dict[str, Any]) -> dict[str, float]:
    """Each engine's top-1 accuracy, the same in every scenario (else a KeyError-free AssertionError says which)."""
    found: dict[str, set[float]] = {}
    for run in doc["runs"]:
        found.setdefault(run["backend"], set()).add(run["metrics"]["accuracy"]["top1"])
    assert all(len(values) == 1 for values in found.values()), found
    return {engine: values.pop() for engine, values in found.items()}


def runs_of(doc: dict[str, Any], engine: str) -> list[dict[str, Any]]:
    return [run for run in doc["runs"] if run["backend"] == engine]
