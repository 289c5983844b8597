"""The Task and Backend seams through pytester: a backend from a conftest hook, named tensors, ragged responses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from pytest_mlperf.gate.fingerprint import run_fingerprint
from pytest_mlperf.results import schema
from tests.conftest import FAST

TOY_BACKEND = """
import numpy as np
import pytest
from conftest import BIAS, WEIGHTS

CLOSED = []


class ToyBackend:
    '''The tiny linear model in numpy: a real engine that is not ONNX Runtime, served at a URL-like reference.'''

    name = "toy"
    version = "3.1"
    thread_safe = False
    made = 0

    def __init__(self, model, options):
        self.model_identity = f"{model}@sha-of-weights"
        self.scale = float(options.option("scale", "1"))
        ToyBackend.made += 1

    def run(self, inputs):
        return {"logits": (inputs @ WEIGHTS + BIAS) * self.scale}

    def warmup(self, sample):
        self.run(sample)

    def describe(self):
        return {"version": self.version, "scale": self.scale}

    def close(self):
        CLOSED.append(self)


def pytest_mlperf_backend_names(config):
    return ["toy"]


def pytest_mlperf_make_backend(config, name, model, options):
    if name == "toy":
        return ToyBackend(model, options)
    return None


def pytest_unconfigure(config):
    # The plugin closes backends in its own pytest_unconfigure; this one runs after it (conftests register later).
    import pathlib
    pathlib.Path("closed.txt").write_text(str(len(CLOSED)))
"""


def results_of(pytester: pytest.Pytester) -> dict:
    return json.loads((pytester.path / "mlperf-results" / "results.json").read_text())


def test_a_conftest_backend_runs_every_scenario_through_the_hook(project: pytest.Pytester) -> None:
    project.makeconftest(Path(project.path / "conftest.py").read_text() + TOY_BACKEND)
    project.makepyfile(
        """
        import pytest

        @pytest.mark.mlperf(accuracy=0.95)
        def test_toy(mlperf, mlperf_scenario, mlperf_mode, tiny_dataset):
            result = mlperf.run("toy://models/linear", tiny_dataset)
            assert result.backend == "toy"
        """
    )
    result = project.runpytest(
        *FAST, "--mlperf-backend=toy", "--mlperf-backend-option=scale=2", "--mlperf-workers=2",
        "--mlperf-scenarios=SingleStream,Offline",
    )
    result.assert_outcomes(passed=4)
    doc = results_of(project)
    jsonschema.validate(doc, schema())
    for run in doc["runs"]:
        assert run["backend"] == "toy"
        assert run["backend_options"]["scale"] == 2.0 and run["backend_options"]["version"] == "3.1"
        assert run["model_sha256"] is None
        assert run["model_identity"] == "toy://models/linear@sha-of-weights"
        assert run["model"] == "linear"
        assert run["task"] == {"name": "classification", "metric": "top1", "higher_is_better": True}
    accuracy = [r for r in doc["runs"] if r["mode"] == "accuracy"]
    assert {r["metrics"]["accuracy"]["top1"] for r in accuracy} == {1.0}
    line = (project.path / "mlperf-results" / accuracy[0]["log_dir"] / "accuracy.txt").read_text()
    assert re.fullmatch(r"accuracy=100\.000%, good=64, total=64\n", line)
    # Not thread-safe: Offline's two inference threads got one instance each, and every instance was closed.
    assert (project.path / "closed.txt").read_text() == "2"
    other = dict(doc["runs"][0], model_identity="toy://models/linear@another")
    assert run_fingerprint(doc["runs"][0]) != run_fingerprint(other)


def test_an_unknown_backend_names_every_backend_plugins_offer(project: pytest.Pytester) -> None:
    project.makeconftest(Path(project.path / "conftest.py").read_text() + TOY_BACKEND)
    result = project.runpytest("--mlperf-backend=jax")
    result.stderr.fnmatch_lines(
        ["*--mlperf-backend: unknown backend 'jax'; valid backends are toy, onnxruntime, openvino, litert, torch, "
         "*, noop*"]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("outputs", "*--mlperf-backend-option: 'outputs' is not KEY=VALUE*"),
        ("=x", "*--mlperf-backend-option: '=x' is not KEY=VALUE*"),
    ],
)
def test_a_malformed_backend_option_is_a_usage_error(project: pytest.Pytester, option: str, message: str) -> None:
    result = project.runpytest(f"--mlperf-backend-option={option}")
    result.stderr.fnmatch_lines([message])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_onnxruntime_outputs_are_picked_by_name(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        def test_ok(mlperf, tiny_model, tiny_dataset):
            assert mlperf.run(tiny_model, tiny_dataset, scenario="Offline", mode="accuracy").passed

        def test_unknown(mlperf, tiny_model, tiny_dataset):
            mlperf.run(tiny_model, tiny_dataset, scenario="Offline", mode="accuracy")
        """
    )
    ok = project.runpytest(*FAST, "-k", "ok", "--mlperf-backend-option=outputs=logits")
    ok.assert_outcomes(passed=1)
    bad = project.runpytest(*FAST, "-k", "unknown", "--mlperf-backend-option=outputs=probabilities")
    bad.assert_outcomes(failed=1)
    bad.stdout.fnmatch_lines(["*has no output 'probabilities'; its outputs are logits*"])


TWO_INPUTS = """
import numpy as np
import onnx
from onnx import TensorProto, helper

from pytest_mlperf import ArrayDataset


def write_two_input_model(path):
    # scores = a @ I + b @ I: the class is the argmax of a + b, so labels are known exactly.
    eye = onnx.numpy_helper.from_array(np.eye(3, dtype=np.float32), "I")
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("MatMul", ["s", "I"], ["scores"])],
        "two",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3])],
        [eye],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_two_inputs(mlperf, mlperf_scenario, tmp_path):
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((48, 3)).astype(np.float32), rng.standard_normal((48, 3)).astype(np.float32)
    dataset = ArrayDataset({"a": a, "b": b}, np.argmax(a + b, axis=1), name="two-inputs")
    model = write_two_input_model(tmp_path / "two.onnx")
    result = mlperf.run(model, dataset, mode="accuracy")
    assert result.metrics.accuracy["top1"] == 1.0
"""


def test_a_model_with_two_named_inputs_runs_in_every_scenario(project: pytest.Pytester) -> None:
    project.makepyfile(test_two=TWO_INPUTS)
    result = project.runpytest(*FAST)
    result.assert_outcomes(passed=4)


RAGGED = """
import json
from pathlib import Path

import numpy as np

from pytest_mlperf import ArrayDataset


class FirstWords:
    '''A task whose responses differ in length: sample i answers the first (i % 5) values of its own input.'''

    name = "ragged"
    metric = "exact"
    higher_is_better = True

    def postprocess(self, outputs):
        scores = outputs["logits"]
        return [np.arange(int(row[0]) % 5, dtype=np.int32) + int(row[0]) for row in scores]

    def score(self, responses, dataset):
        good = sum(
            np.frombuffer(responses[i], np.int32).tolist() == list(range(i, i + i % 5)) for i in range(len(responses))
        )
        return {"exact": good / dataset.total_count, "count": float(dataset.total_count)}

    def accuracy_line(self, metrics):
        return json.dumps({"exact": 100 * metrics["exact"]})


class Echo:
    name = "echo"
    version = "1"
    thread_safe = True
    model_identity = "echo"

    def run(self, inputs):
        return {"logits": inputs}

    def warmup(self, sample):
        pass

    def describe(self):
        return {"version": "1"}

    def close(self):
        pass


def pytest_mlperf_backend_names(config):
    return ["echo"]


def pytest_mlperf_make_backend(config, name, model, options):
    return Echo() if name == "echo" else None
"""


def test_ragged_responses_reach_the_accuracy_log_one_buffer_per_sample(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(RAGGED)
    pytester.makepyfile(
        """
        import numpy as np
        from conftest import FirstWords
        from pytest_mlperf import ArrayDataset

        def test_ragged(mlperf, mlperf_scenario):
            x = np.arange(40, dtype=np.float32)[:, None]
            result = mlperf.run("echo", ArrayDataset(x, name="counting"), task=FirstWords(), mode="accuracy",
                                accuracy=1.0)
            assert result.metrics.accuracy["exact"] == 1.0
        """
    )
    result = pytester.runpytest(*FAST, "--mlperf-backend=echo")
    result.assert_outcomes(passed=4)
    doc = results_of(pytester)
    for run in doc["runs"]:
        assert run["task"] == {"name": "ragged", "metric": "exact", "higher_is_better": True}
        log_dir = pytester.path / "mlperf-results" / run["log_dir"]
        entries = json.loads((log_dir / "mlperf_log_accuracy.json").read_text())
        sizes = {e["qsl_idx"]: len(e["data"]) // 2 for e in entries}  # hex: two characters a byte
        assert sizes == {i: 4 * (i % 5) for i in range(40)}
        assert (log_dir / "accuracy.txt").read_text() == '{"exact": 100.0}\n'


def test_backends_parametrize_every_case_like_scenarios(project: pytest.Pytester) -> None:
    project.makeconftest(Path(project.path / "conftest.py").read_text() + TOY_BACKEND)
    project.makepyfile(
        """
        def test_both(mlperf, mlperf_backend, mlperf_scenario, tiny_model, tiny_dataset):
            model = tiny_model if mlperf_backend == "onnxruntime" else "toy://linear"
            result = mlperf.run(model, tiny_dataset, mode="accuracy")
            assert result.backend == mlperf_backend
        """
    )
    result = project.runpytest(
        *FAST, "--mlperf-backends=onnxruntime,toy", "--mlperf-scenarios=Offline,SingleStream", "-v",
        "--mlperf-backend-option=toy.scale=3", "--mlperf-backend-option=onnxruntime.outputs=logits",
    )
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines_random(
        ["*test_both?onnxruntime-Offline? PASSED*", "*test_both?toy-SingleStream? PASSED*"]
    )
    runs = results_of(project)["runs"]
    assert {r["backend"] for r in runs} == {"onnxruntime", "toy"}
    for run in runs:  # each engine saw only its own options
        options = run["backend_options"]
        assert options.get("scale") == (3.0 if run["backend"] == "toy" else None)
        if run["backend"] == "onnxruntime":
            assert options["options"] == {"outputs": "logits"}


def test_backends_installed_lists_importable_engines_and_a_missing_one_names_its_extra(
    project: pytest.Pytester,
) -> None:
    from pytest_mlperf.backends import ENGINES, URL_ENGINES, is_installed

    project.makepyfile(
        """
        def test_x(mlperf, mlperf_backend):
            pass
        """
    )
    result = project.runpytest("--mlperf-backends=installed", "--collect-only", "-q")
    # remote needs a server URL, so `installed` leaves it out, like noop, which measures nothing.
    installed = [n for n in ENGINES if n not in ("noop", *URL_ENGINES) and is_installed(n)]
    assert "onnxruntime" in installed
    assert "remote" not in result.stdout.str()
    result.stdout.fnmatch_lines([f"*test_x?{name}?*" for name in installed])
    missing = [n for n in ENGINES if not is_installed(n)]
    if missing:  # whichever engines this environment lacks
        bad = project.runpytest(f"--mlperf-backends=onnxruntime,{missing[0]}")
        assert bad.ret == pytest.ExitCode.USAGE_ERROR
        bad.stderr.fnmatch_lines(
            [f"*--mlperf-backends: the {missing[0]} backend needs the * package*pytest-mlperf?{missing[0]}?*"]
        )
