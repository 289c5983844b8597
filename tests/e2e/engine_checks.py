"""Checks every engine's e2e tests share: the digits suite run on an engine beside onnxruntime, read back by engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SUITES = Path(__file__).resolve().parents[2] / "suites"


def run_digits_suite(pytester: pytest.Pytester, tmp_path: Path, engine: str, *args: str) -> dict[str, Any]:
    """Run the embedded digits suite on onnxruntime and *engine* in one session; every case must pass. Returns the
    results document."""
    results = tmp_path / "results.json"
    result = pytester.runpytest_subprocess(
        str(SUITES / "test_digits.py"), f"--mlperf-backends=onnxruntime,{engine}", f"--mlperf-results={results}",
        f"--mlperf-log-dir={tmp_path / 'logs'}", f"--mlperf-cache-dir={tmp_path / 'cache'}",
        "--mlperf-min-duration-ms=300", "-p", "no:cacheprovider", *args,
        timeout=600,
    )
    result.assert_outcomes(passed=16)
    doc: dict[str, Any] = json.loads(results.read_text())
    assert {run["backend"] for run in doc["runs"]} == {"onnxruntime", engine}
    return doc


def top1_by_engine(doc: dict[str, Any]) -> dict[str, float]:
    """Each engine's top-1 accuracy from the Offline accuracy run."""
    return {
        run["backend"]: run["metrics"]["accuracy"]["top1"]
        for run in doc["runs"]
        if run["mode"] == "accuracy" and run["scenario"] == "Offline"
    }


def runs_of(doc: dict[str, Any], engine: str) -> list[dict[str, Any]]:
    return [run for run in doc["runs"] if run["backend"] == engine]
