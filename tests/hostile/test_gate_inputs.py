"""`pytest-mlperf compare` on hostile or impossible results files: exit 2 naming the file and field, never 1 or 0.

Exit 1 is the gate's "regression" and 0 its "no change": CI acts on both, so a file the gate cannot trust must
give neither. Each case edits one field of a real results file (tests/data/results) and runs the command line.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_mlperf.cli import main

RESULTS = Path(__file__).resolve().parents[1] / "data" / "results"
SS, OFF, ACC = 0, 1, 2  # runs[0] SingleStream performance, runs[1] Offline performance, runs[2] Offline accuracy


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))
    return doc


def write(path: Path, doc: Any) -> Path:
    # allow_nan: a hostile file may hold the NaN and Infinity tokens that Python's json reads.
    path.write_text(json.dumps(doc, allow_nan=True), encoding="utf-8")
    return path


def compare(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["compare", *argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def compare_edited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Callable[[dict[str, Any]], None]
) -> tuple[Path, str]:
    """Compare base.json with an edited head_same.json: must exit 2; the edited file and the output."""
    head = load("head_same")
    edit(head)
    path = write(tmp_path / "head.json", head)
    code, out = compare(capsys, str(RESULTS / "base.json"), str(path))
    assert code == 2, out
    return path, out


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit of the head document: ``runs.1.metrics.qps`` -> value."""

    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (_set("machine", ["not", "an", "object"]), "machine must be an object"),
        (_set("machine.gpus", {"name": "x"}), "machine.gpus must be a list"),
        (_set("machine.gpus", [["x"]]), "machine.gpus[0] must be an object"),
        (_set("machine.cpu", {"vendor": "x"}), "machine.cpu must be a string"),
        (_set("versions", "1.0"), "versions must be an object"),
        (_set(f"runs.{SS}.thresholds", ["p90"]), f"runs[{SS}] (suites/test_digits.py::test_digits[SingleStream-"
                                                 "performance]): thresholds must be an object"),
        (_set(f"runs.{SS}.settings", [1, 2]), "settings must be an object"),
        (_set(f"runs.{SS}.dataset", "digits"), "dataset must be an object"),
        (_set(f"runs.{SS}.task", ["top1"]), "task must be an object"),
        (_set(f"runs.{SS}.metrics", 3), "metrics must be an object"),
        (_set(f"runs.{SS}.metrics.latency_ns", [1, 2]), "metrics.latency_ns must be an object"),
        (_set(f"runs.{SS}.metrics.latency_ns.p90", "fast"), "metrics.latency_ns.p90 must be a finite number"),
        (_set(f"runs.{OFF}.metrics.qps", "500"), "metrics.qps must be a finite number > 0"),
        (_set(f"runs.{OFF}.metrics.qps", True), "metrics.qps must be a finite number > 0"),
        (_set(f"runs.{SS}.latency_samples_ns", [1, "2"]), "latency_samples_ns must be a list of non-negative"),
        (_set(f"runs.{SS}.latency_samples_ns", [[1, 2]]), "latency_samples_ns must be a list of non-negative"),
        (_set(f"runs.{SS}.latency_samples_ns", {"a": 1}), "latency_samples_ns must be a list of non-negative"),
        (_set(f"runs.{SS}.repeat", "0"), "repeat must be a whole number"),
        (_set(f"runs.{SS}.valid", "yes"), "valid must be true or false"),
    ],
)
def test_wrong_typed_fields_exit_2_naming_the_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Callable[[dict[str, Any]], None], field: str
) -> None:
    path, out = compare_edited(tmp_path, capsys, edit)
    assert f"{path}: " in out and field in out, out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (_set(f"runs.{ACC}.metrics.accuracy.top1", math.nan), "metrics.accuracy.top1 must be a finite number >= 0"),
        (_set(f"runs.{ACC}.metrics.accuracy.top1", 5.0), "metrics.accuracy.top1 must be a finite number >= 0 and <= 1"),
        (_set(f"runs.{ACC}.metrics.accuracy.top1", -0.1), "metrics.accuracy.top1 must be a finite number >= 0"),
        (_set(f"runs.{ACC}.thresholds.accuracy", 3.0), "thresholds.accuracy must be a finite number >= 0 and <= 1"),
        (_set(f"runs.{SS}.metrics.latency_ns.p90", 1e308), "metrics.latency_ns.p90 must be a finite number >= 0"),
        (_set(f"runs.{SS}.metrics.latency_ns.p90", -5), "metrics.latency_ns.p90 must be a finite number >= 0"),
        (_set(f"runs.{SS}.latency_samples_ns", [1e308] * 50), "latency_samples_ns must be a list of non-negative"),
        (_set(f"runs.{SS}.latency_samples_ns", [math.inf] * 50), "latency_samples_ns must be a list of non-negative"),
        (_set(f"runs.{OFF}.metrics.qps", math.nan), "metrics.qps must be a finite number > 0"),
        (_set(f"runs.{OFF}.metrics.qps", -500.0), "metrics.qps must be a finite number > 0"),
        (_set(f"runs.{OFF}.metrics.qps", 0), "metrics.qps must be a finite number > 0"),
        (_set(f"runs.{OFF}.metrics.qps", math.inf), "metrics.qps must be a finite number > 0"),
    ],
)
def test_impossible_values_are_refused_not_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Callable[[dict[str, Any]], None], field: str
) -> None:
    path, out = compare_edited(tmp_path, capsys, edit)
    assert f"{path}: runs[" in out and field in out, out


@pytest.mark.parametrize("side", ["base", "head"])
def test_a_side_without_runs_is_an_error_not_no_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], side: str
) -> None:
    empty = load("head_same")
    empty["runs"] = []
    path = write(tmp_path / f"{side}.json", empty)
    other = str(RESULTS / ("head_same.json" if side == "base" else "base.json"))
    code, out = compare(capsys, *((str(path), other) if side == "base" else (other, str(path))))
    assert code == 2, out
    assert f"{path}: no runs: the benchmark did not run" in out


def test_deeply_nested_json_exits_2_without_a_traceback(tmp_path: Path) -> None:
    """json's C parser raises RecursionError on deep input: a real process shows what the user would see."""
    deep = tmp_path / "deep.json"
    deep.write_text('{"schema_version": 2, "runs": [' + "[" * 200_000 + "]" * 200_000 + "]}", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_mlperf.cli", "compare", str(RESULTS / "base.json"), str(deep)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{deep}: JSON nested too deeply to read" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_nesting_deeper_than_a_results_file_needs_is_refused_with_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = load("head_same")
    node: dict[str, Any] = {}
    head["runs"][SS]["backend_options"] = {"x": node}
    for _ in range(300):  # within what Python parses, beyond what any results file holds
        node["x"] = {}
        node = node["x"]
    path = write(tmp_path / "head.json", head)
    code, out = compare(capsys, str(RESULTS / "base.json"), str(path))
    assert code == 2, out
    assert f"{path}: JSON nested more than 64 levels deep at runs[{SS}].backend_options.x.x" in out


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = write(tmp_path / "head.json", load("head_same"))
    code, out = compare(capsys, str(RESULTS / "base.json"), str(head), "--max-file-mb", "0.01")
    assert code == 2, out
    size = (RESULTS / "base.json").stat().st_size
    assert f"{RESULTS / 'base.json'}: results file is {size:,} bytes, over the 10,485 bytes this reader accepts" in out
    assert "--max-file-mb" in out


def test_the_compacted_reader_decides_exactly_as_before(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI keeps per-query latencies as arrays (a fifth of the memory); the verdicts must not move."""
    from pytest_mlperf.gate.compare import compare_documents

    expected = compare_documents([load("base")], [copy.deepcopy(load("head_slow"))])
    out = tmp_path / "comparison.json"
    code, _ = compare(capsys, str(RESULTS / "base.json"), str(RESULTS / "head_slow.json"), "--json", str(out))
    got = json.loads(out.read_text(encoding="utf-8"))
    assert code == 1
    assert [(c["id"], c["metric"], c["verdict"], c["message"]) for c in got["cases"]] == [
        (c["id"], c["metric"], c["verdict"], c["message"]) for c in expected["cases"]
    ]


@pytest.mark.parametrize("fmt", ["bmf", "gab-bigger", "pytest-benchmark"])
@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (_set(f"runs.{ACC}.metrics.accuracy.top1", math.nan), "metrics.accuracy.top1 must be a finite number >= 0"),
        (_set(f"runs.{OFF}.metrics.qps", 0), "metrics.qps must be a finite number > 0"),
        (_set(f"runs.{SS}.metrics", [1]), "metrics must be an object"),
        (_set(f"runs.{SS}.thresholds", "p90"), "thresholds must be an object"),
    ],
)
def test_export_refuses_what_compare_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Callable[[dict[str, Any]], None], field: str, fmt: str
) -> None:
    """An impossible value is never published to a dashboard as a measurement."""
    doc = load("head_same")
    edit(doc)
    path = write(tmp_path / "results.json", doc)
    code = main(["export", "--format", fmt, str(path), "-o", str(tmp_path / "out.json")])
    out = capsys.readouterr().err
    assert code == 2, out
    assert f"{path}: runs[" in out and field in out
    assert not (tmp_path / "out.json").exists()


def test_a_wrong_typed_baseline_is_a_usage_error_before_any_case_runs(tmp_path: Path) -> None:
    """--mlperf-baseline goes through the same checks: before, a list for thresholds failed cases mid-session."""
    from pytest_mlperf.config import UsageProblem, load_baseline

    doc = load("base")
    doc["runs"][SS]["thresholds"] = ["p90"]
    path = write(tmp_path / "baseline.json", doc)
    with pytest.raises(UsageProblem, match=r"--mlperf-baseline: .*baseline.json cannot be used as a baseline: .*"
                                           r"runs\[0\] \(.*\): thresholds must be an object"):
        load_baseline(path)


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_path_that_is_not_a_regular_file_is_refused_without_blocking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """A FIFO would block the read until a writer came; /dev/zero would fill the memory up to the cap."""
    import os

    if kind == "fifo":
        path = tmp_path / "head.json"
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    else:
        path = tmp_path
    code, out = compare(capsys, str(RESULTS / "base.json"), str(path))
    assert code == 2, out
    expected = "is a directory" if kind == "directory" else "is not a regular file (a FIFO, device or socket)"
    assert f"{path}: results file {expected}" in out


def test_outputs_never_carry_url_credentials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run's fields (the model, a reason) may name a mirror URL with its user and password."""
    secret = "https://alice:s3cret@mirror.example/digits.onnx"
    docs = {}
    for side in ("base", "head_slow"):
        doc = load(side)
        for run in doc["runs"]:
            run["id"] = run["id"].replace("test_digits[", f"test_digits[{secret}-")
            run["model"] = secret
        docs[side] = write(tmp_path / f"{side}.json", doc)
    for fmt in ("text", "md"):
        code, out = compare(capsys, str(docs["base"]), str(docs["head_slow"]), "--format", fmt,
                            "--json", str(tmp_path / "c.json"))
        assert code == 1 and "s3cret" not in out and "alice" not in out
        assert "s3cret" not in (tmp_path / "c.json").read_text(encoding="utf-8")
    for fmt in ("bmf", "gab-smaller", "pytest-benchmark"):
        assert main(["export", "--format", fmt, str(docs["head_slow"])]) == 0
        out = capsys.readouterr().out
        assert "s3cret" not in out and "https://***@mirror.example/digits.onnx" in out
