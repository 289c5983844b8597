"""Hostile inputs the plugin reads besides options: datasets handed to ``mlperf.run`` and the baseline or load
documents. Each is refused with a message naming it and the fix, never a traceback from deep inside."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pytest_mlperf import ArrayDataset

# pytester's in-process runs restore sys.modules afterwards, and scipy fails to import a second time: load the
# comparison (and scipy) before any snapshot is taken.
import pytest_mlperf.gate.compare  # noqa: F401  # isort: skip


def assert_usage_error(result: pytest.RunResult, *patterns: str) -> None:
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    assert "Traceback" not in text and "INTERNALERROR" not in text and "AttributeError" not in text, text
    assert "passed" not in text and "failed" not in text, "a case ran before the refusal"
    result.stderr.fnmatch_lines(list(patterns))


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (np.empty((0, 4), np.float32), r"dataset 'bad': no samples \(its inputs have 0 rows\)"),
        ({"a": np.empty((0, 4), np.float32), "b": np.empty((0, 2), np.float32)}, r"dataset 'bad': no samples"),
        ({"a": np.zeros((3, 4), np.float32), "b": np.zeros((2, 4), np.float32)}, r"differ in sample count"),
        (np.array([[object()], [object()]], dtype=object), r"dataset 'bad': input has dtype object, not numbers"),
        (np.array([["a"], ["b"]]), r"dataset 'bad': input has dtype <U1, not numbers"),
        ({"x": np.zeros((2, 2), "datetime64[s]")}, r"dataset 'bad': input 'x' has dtype datetime64\[s\], not numbers"),
        ([[1.0], [2.0]], r"dataset 'bad': input is a list, not a numpy array"),
    ],
)
def test_array_dataset_refuses_what_no_engine_can_run(inputs: object, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        ArrayDataset(inputs, name="bad")  # type: ignore[arg-type]


def test_a_non_positive_performance_count_is_refused() -> None:
    with pytest.raises(ValueError, match=r"dataset 'bad': performance_count -3 must be 1 or more"):
        ArrayDataset(np.zeros((4, 2), np.float32), name="bad", performance_count=-3)


def test_an_empty_custom_dataset_fails_its_case_with_the_dataset_named(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_user="""
from tiny_conftest_module import make_dataset

class Empty:
    name = "hollow"
    total_count = 0
    performance_count = 0
    synthetic_inputs = True
    def load(self, indices): pass
    def unload(self, indices): pass
    def batch(self, indices): raise AssertionError("never asked")
    def one(self, index): raise AssertionError("never asked")

def test_empty(mlperf, tiny_model):
    mlperf.run(tiny_model, Empty(), scenario="Offline", mode="performance")
"""
    )
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*dataset 'hollow': total_count 0 and performance_count 0 must both be*"])
    assert "ZeroDivisionError" not in result.stdout.str() and "IndexError" not in result.stdout.str()


def _run(id_: str = "test_user.py::test_tiny", **fields: object) -> dict[str, object]:
    return {"id": id_, "scenario": "Offline", "mode": "performance", **fields}


BAD_BASELINES = {
    "not-json": ("hello", "*--mlperf-baseline: *base.json cannot be used as a baseline: *not valid JSON*"),
    "deep": ('{"schema_version": 2, "runs": ' + "[" * 100_000 + "]" * 100_000 + "}",
             "*base.json cannot be used as a baseline: *nested too deeply*"),
    "settings-a-string": (json.dumps({"schema_version": 2, "runs": [_run(settings="oops")]}),
                          "*base.json cannot be used as a baseline: *runs[[]0] (test_user.py::test_tiny): "
                          "settings must be an object*"),
    "thresholds-a-string": (json.dumps({"schema_version": 2, "runs": [_run(thresholds="x")]}),
                            "*base.json cannot be used as a baseline: *thresholds must be an object*"),
    "dataset-a-number": (json.dumps({"schema_version": 2, "runs": [_run(dataset=5)]}),
                         "*base.json cannot be used as a baseline: *dataset must be an object*"),
    "no-runs": (json.dumps({"schema_version": 2}), "*base.json cannot be used as a baseline: *no 'runs' list*"),
    "target-not-a-number": (json.dumps({"schema_version": 2, "runs": [_run(settings={"target_qps": "x"})]}),
                            "*settings.target_qps = 'x' is not a load LoadGen can run*"),
    "target-1e-6": (json.dumps({"schema_version": 2, "runs": [_run(settings={"target_qps": 1e-6})]}),
                    "*base.json: runs[[]0] (test_user.py::test_tiny): settings.target_qps = 1e-06 is not a load "
                    "LoadGen can run (it must be from 0.001 to 1000000000 QPS)*"),
}


@pytest.mark.parametrize("option", ["--mlperf-baseline", "--mlperf-reuse-load"])
@pytest.mark.parametrize("kind", list(BAD_BASELINES))
def test_a_bad_baseline_is_a_usage_error_at_configure_time(project: pytest.Pytester, kind: str, option: str) -> None:
    text, message = BAD_BASELINES[kind]
    (project.path / "base.json").write_text(text)
    project.makepyfile(test_user="def test_tiny(mlperf):\n    pass\n")
    result = project.runpytest(f"{option}=base.json", "-p", "no:cacheprovider")
    role = "a baseline" if option == "--mlperf-baseline" else "a load source"
    assert_usage_error(result, message.replace("--mlperf-baseline", option).replace("a baseline", role))


@pytest.mark.parametrize("option", ["--mlperf-baseline", "--mlperf-reuse-load"])
def test_a_baseline_directory_or_device_is_named_as_such(project: pytest.Pytester, option: str, tmp_path: Path) -> None:
    (project.path / "runs").mkdir()
    assert_usage_error(project.runpytest(f"{option}=runs"), f"*{option}: runs is a directory; pass the results JSON*")
    assert_usage_error(project.runpytest(f"{option}=/dev/zero"), f"*{option}: /dev/zero is not a regular file*")
