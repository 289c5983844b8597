"""conftest for pytester projects: a tiny ONNX classifier and a matching dataset, built on the spot."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pytest_mlperf import ArrayDataset, Classification
from pytest_mlperf.tasks.classification import select_output

FEATURES, CLASSES = 4, 3
RNG = np.random.default_rng(7)
WEIGHTS = RNG.standard_normal((FEATURES, CLASSES)).astype(np.float32)
BIAS = RNG.standard_normal(CLASSES).astype(np.float32)


def write_linear_model(path: Path, features: int = FEATURES, symbolic_features: bool = False) -> Path:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["mm"]), helper.make_node("Add", ["mm", "B"], ["logits"])],
        "tiny",
        # A symbolic feature axis defers the shape check from load time to run time.
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", "F" if symbolic_features else features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])],
        [numpy_helper.from_array(np.resize(WEIGHTS, (features, CLASSES)), "W"), numpy_helper.from_array(BIAS, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def make_dataset(count: int = 64, wrong_labels: int = 0) -> ArrayDataset:
    x = np.random.default_rng(1).standard_normal((count, FEATURES)).astype(np.float32)
    labels = np.argmax(x @ WEIGHTS + BIAS, axis=1)
    labels[:wrong_labels] = (labels[:wrong_labels] + 1) % CLASSES
    return ArrayDataset(x, labels, name="tiny", task=Classification(topk=1))


@dataclass(frozen=True)
class DelayedClassification(Classification):
    """Sleeps a fixed time per sample after inference: a deterministic slowdown that dominates the tiny model."""

    delay_s: float = 0.0

    def postprocess(self, outputs: Any) -> np.ndarray:
        if self.delay_s:
            time.sleep(self.delay_s * len(select_output(outputs, None)))
        return super().postprocess(outputs)


def make_delayed_dataset(delay_s: float) -> ArrayDataset:
    """``make_dataset()``'s samples, each costing *delay_s* extra seconds of post-processing (its task's)."""
    base = make_dataset()
    return ArrayDataset(base.inputs, base.labels, name="tiny", task=DelayedClassification(topk=1, delay_s=delay_s))


#: Batch sizes ToyLinear ran on the Server SUT's threads, for tests that check the batcher.
SERVED: list[int] = []


class ToyLinear:
    """A real engine for plugin tests: the tiny linear model in numpy, its call time set by backend options.

    ``per_sample_ms`` makes a batch cost as much as its samples one by one (batching buys nothing), ``per_call_ms``
    makes any batch cost one call (batching pays fully), ``main_thread_ms`` slows only the calls on pytest's own
    thread (warm-up and calibration), as a CI neighbour that stops between the warm-up and the run does.
    A test's conftest makes it through the backend hooks under the name it chooses.
    """

    version = "1"
    thread_safe = True

    def __init__(self, name: str, options: Any) -> None:
        self.name = self.model_identity = name
        self.per_sample = float(options.option("per_sample_ms", "0")) / 1e3
        self.per_call = float(options.option("per_call_ms", "0")) / 1e3
        self.main_thread = float(options.option("main_thread_ms", "0")) / 1e3

    def run(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        thread = threading.current_thread()
        if thread.name.startswith("mlperf-server"):
            SERVED.append(len(inputs))
        delay = self.per_call + self.per_sample * len(inputs)
        if thread is threading.main_thread():
            delay += self.main_thread
        if delay:
            time.sleep(delay)
        return {"logits": inputs @ WEIGHTS + BIAS}

    def warmup(self, sample: np.ndarray) -> None:
        self.run(sample)

    def describe(self) -> dict[str, Any]:
        return {"version": self.version}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_linear_model(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture
def tiny_dataset() -> ArrayDataset:
    return make_dataset()
