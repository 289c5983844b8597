"""Models that give NaN, inputs that do not fit the model, and sessions that record nothing: each says so."""

from __future__ import annotations

import json

import pytest

from pytest_mlperf.results import failed_run, read_document
from tests.conftest import FAST

#: A model of the tiny conftest's shape whose outputs are NaN exactly for samples with a negative feature:
#: ``Sqrt`` of a negative number.
SQRT_MODEL = """
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pytest_mlperf import ArrayDataset, Classification


def sqrt_model(path):
    graph = helper.make_graph(
        [helper.make_node("Sqrt", ["input"], ["root"]), helper.make_node("MatMul", ["root", "W"], ["logits"])],
        "sqrt",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(np.eye(4, 3, dtype=np.float32), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def data(negative_rows):
    x = np.abs(np.random.default_rng(3).standard_normal((64, 4))).astype(np.float32) + 0.1
    x[negative_rows, 1] = -1.0
    labels = np.argmax(np.sqrt(np.abs(x)) @ np.eye(4, 3), axis=1)
    return ArrayDataset(x, labels, name="sqrt-data", task=Classification(topk=1))


@pytest.fixture
def nan_model(tmp_path):
    return sqrt_model(tmp_path / "sqrt.onnx")
"""


def test_nan_outputs_in_the_warm_up_fail_the_case_and_record_the_run(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_nan=SQRT_MODEL + """
def test_all_nan(mlperf, nan_model):
    mlperf.run(nan_model, data(slice(0, 64)), scenario="Offline", mode="performance")
"""
    )
    result = project.runpytest(*FAST, "--mlperf-batch-size=4")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*sqrt on onnxruntime gave non-finite outputs (NaN or inf) for 8 of 8 warm-up*"])
    run = read_document(project.path / "mlperf-results" / "results.json")["runs"][0]
    assert failed_run(run) and run["valid"] is False and run["metrics"]["qps"] is None
    assert "non-finite" in run["error"]


def test_nan_outputs_during_an_accuracy_run_fail_it_with_the_count(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_nan=SQRT_MODEL + """
@pytest.mark.parametrize("scenario", ["SingleStream", "Server", "Offline"])
def test_some_nan(mlperf, nan_model, scenario):
    # The warm-up samples (the first 8) are clean; 10 later ones give NaN.
    mlperf.run(nan_model, data(slice(40, 50)), scenario=scenario, mode="accuracy")
"""
    )
    result = project.runpytest(*FAST, "--mlperf-batch-size=4")
    result.assert_outcomes(failed=3)
    document = read_document(project.path / "mlperf-results" / "results.json")
    assert len(document["runs"]) == 3
    for run in document["runs"]:
        assert run["error"] == (
            "InferenceError: sqrt gave non-finite outputs (NaN or inf) for 10 of 64 samples; its accuracy would be "
            "scored on garbage"
        ), run["scenario"]
        assert run["metrics"]["accuracy"] is None and run["passed"] is False


@pytest.mark.parametrize(
    ("features", "dtype", "given"),
    [(5, "float32", "shape (1, 5) float32"), (4, "float64", "shape (1, 4) float64")],
    ids=["shape", "dtype"],
)
def test_inputs_that_do_not_fit_the_model_are_named_and_the_run_recorded(
    project: pytest.Pytester, features: int, dtype: str, given: str
) -> None:
    project.makepyfile(
        test_fit=f"""
import numpy as np
from pytest_mlperf import ArrayDataset, Classification

def test_misfit(mlperf, tiny_model):
    x = np.zeros((16, {features}), dtype="{dtype}")
    data = ArrayDataset(x, np.zeros(16, dtype=np.int64), name="misfit", task=Classification(topk=1))
    mlperf.run(tiny_model, data, scenario="SingleStream", mode="performance")
"""
    )
    result = project.runpytest(*FAST)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*the warm-up of tiny on onnxruntime raised*",
        "*the model's inputs: input shape ('N', 4) tensor(float)*",
        f"*dataset 'misfit' gives: (one array) {given} (a batch of one sample)*",
    ])
    run = read_document(project.path / "mlperf-results" / "results.json")["runs"][0]
    assert failed_run(run) and run["valid"] is False and run["passed"] is False
    assert run["reasons"][0].startswith("inference failed: ") and "before LoadGen ran" in run["reasons"][0]


def test_a_session_that_records_no_run_replaces_the_previous_results(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_one="""
def test_one(mlperf, tiny_model, tiny_dataset):
    mlperf.run(tiny_model, tiny_dataset, scenario="Offline", mode="accuracy")
"""
    )
    project.runpytest(*FAST).assert_outcomes(passed=1)
    results = project.path / "mlperf-results" / "results.json"
    first = read_document(results)
    assert len(first["runs"]) == 1
    stale_comparison = project.path / "mlperf-results" / "results.comparison.json"
    stale_comparison.write_text(json.dumps({"verdict": "improvement", "cases": []}))
    # A session that selects nothing: whatever reads results.json next must not take the first session's run.
    project.runpytest(*FAST, "-k", "no_such_case")
    second = read_document(results)
    assert second["runs"] == [] and second["status"] == "complete"
    assert not stale_comparison.exists()


def test_non_finite_samples_are_counted_once_and_huge_finite_values_are_not() -> None:
    import numpy as np

    from pytest_mlperf.sut import count_nonfinite

    logits = np.ones((5, 3), np.float32)
    logits[2, 1], logits[4, 0], logits[4, 2] = np.nan, np.inf, -np.inf
    boxes = np.zeros((5, 4))
    boxes[2, 0] = np.nan  # the same sample as a NaN logit: still one sample
    boxes[3, 3] = np.nan
    assert count_nonfinite({"logits": logits, "boxes": boxes}) == 3
    assert count_nonfinite(np.full((4, 3), 3e38, np.float32)) == 0  # the sum overflows; no value is non-finite
    assert count_nonfinite({"labels": np.array([1, 2])}) == 0
