"""The ``pytest-mlperf`` command: compare's exit codes and outputs, export's formats, errors that name the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from pytest_mlperf.cli import main

DATA = Path(__file__).resolve().parent.parent / "data" / "results"
SCHEMA = Path(__file__).resolve().parents[2] / "pytest_mlperf" / "schema" / "comparison.schema.json"
BASE = str(DATA / "base.json")


def data(name: str) -> str:
    return str(DATA / f"{name}.json")


@pytest.mark.parametrize(
    ("head", "code", "first_line"),
    [
        ("head_same", 0, "pytest-mlperf comparison: NO-CHANGE"),
        ("head_missing", 0, "pytest-mlperf comparison: NO-CHANGE"),
        ("head_slow", 1, "pytest-mlperf comparison: REGRESSION"),
        ("head_other_machine", 2, "pytest-mlperf comparison: REFUSED"),
    ],
)
def test_compare_exit_codes(head: str, code: int, first_line: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", BASE, data(head)]) == code
    assert capsys.readouterr().out.splitlines()[0] == first_line


def test_force_compares_across_machines(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", BASE, data("head_other_machine"), "--force"]) == 0
    assert "WARNING: compared with --force despite: cpu 'AMD EPYC 7B13'" in capsys.readouterr().out


def test_repeated_base_and_head_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    second_base = tmp_path / "base2.json"
    shutil.copy(BASE, second_base)
    args = ["compare", "--base", BASE, "--base", str(second_base), "--head", data("head_slow")]
    assert main([*args, "--head", data("head_slow")]) == 1
    assert "1800/1800" in capsys.readouterr().out  # 900 queries per file, two files a side


def test_json_and_markdown_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "nested" / "comparison.json"
    assert main(["compare", BASE, data("head_slow"), "--format", "md", "--json", str(out)]) == 1
    assert capsys.readouterr().out.startswith("### pytest-mlperf comparison: regression\n")
    comparison = json.loads(out.read_text(encoding="utf-8"))
    jsonschema.validate(comparison, json.loads(SCHEMA.read_text(encoding="utf-8")))
    assert comparison["policy"]["alpha"] == 0.01


def test_alpha_and_floor_options(tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    # head_slow is about 20 % worse: a 30 % floor accepts it.
    assert main(["compare", BASE, data("head_slow"), "--floor", "30%", "--alpha", "0.001", "--json", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["policy"]["floor"] == pytest.approx(0.30)
    args = ["compare", BASE, data("head_slow"), "--metric-floor", "qps=0.3", "--case-floor"]
    assert main([*args, "suites/test_digits.py::test_digits[SingleStream-performance]=0.5"]) == 0
    assert main(["compare", BASE, data("head_slow"), "--metric-floor", "qps=0.3"]) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", BASE, "missing.json"], "missing.json: no such results file"),
        (["compare", BASE], "expected BASE HEAD, got 1 file(s)"),
        (["compare", BASE, BASE, "--head", BASE], "not both"),
        (["compare", "--base", BASE], "need at least one base and one head results file"),
        (["export", "--format", "bmf", "missing.json"], "missing.json: no such results file"),
    ],
)
def test_bad_input_exits_2_naming_the_problem(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_unreadable_documents_exit_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"runs": [', encoding="utf-8")
    assert main(["compare", BASE, str(broken)]) == 2
    assert f"{broken}: not valid JSON" in capsys.readouterr().err
    future = tmp_path / "future.json"
    future.write_text('{"schema_version": 3, "runs": []}', encoding="utf-8")
    assert main(["compare", str(future), BASE]) == 2
    assert f"{future}: schema_version 3; this pytest-mlperf reads versions 1 and 2. A newer pytest-mlperf wrote it: " \
        "upgrade pytest-mlperf" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text('{"benchmarks": []}', encoding="utf-8")
    assert main(["compare", BASE, str(other)]) == 2
    assert f"{other}: no 'runs' list" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["compare", BASE, BASE, "--alpha", "2"], ["compare", BASE, BASE, "--floor", "x"], []])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage: pytest-mlperf" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--help"]) == 0
    assert "--force" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["gab-smaller", "gab-bigger", "bmf", "pytest-benchmark"])
def test_export_formats_to_stdout(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--format", fmt, BASE]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported  # every format has something to say about base.json
    assert isinstance(exported, list if fmt.startswith("gab") else dict)


def test_export_to_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bmf.json"
    assert main(["export", "--format", "bmf", BASE, "-o", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert "suites/test_digits.py::test_digits[Offline-performance]" in json.loads(out.read_text(encoding="utf-8"))
