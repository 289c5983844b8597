"""ONNX graphs for the performance scripts, written with ``onnx.helper`` and cached.

* ``heavy``: the ResNet50 v1.5 shaped stand-in at full width (``pytest_mlperf.models.standin``, 25.6 M
  parameters, about 102 MB, 1001 classes, NCHW 224), random weights. About 40 ms per image on 2 threads. Its
  argmax means nothing: it serves speed measurements only.
* ``light``: a small CNN on 3x32x32 inputs, about 1 ms per batch of 32 on 2 threads, so the harness's own
  per-query and per-batch costs show.

Weights come from a fixed seed, so a build is byte-identical; the file name carries a build version, and the
file is built once into ``<cache>/benchmarks`` (the plugin's cache dir unless one is given), checksum-verified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from onnx import TensorProto, helper

from pytest_mlperf.fileio import ensure_built
from pytest_mlperf.models.standin import GraphBuilder, build_resnet50_standin
from pytest_mlperf.provisioning.cache import default_cache_dir

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime as ort

    from pytest_mlperf.datasets.base import ArrayDataset

__all__ = ["MODELS", "ModelSpec", "bare_session", "build_heavy", "build_light", "ensure_model", "random_inputs"]

#: Bump when a graph changes: it is part of the cached file name.
BUILD_VERSION = 2
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def build_heavy(seed: int = 50) -> bytes:
    """ResNet50 v1.5 shaped graph at full width, with a plain ``input`` -> ``logits`` interface."""
    return build_resnet50_standin(width=1, seed=seed, interface="logits")


def build_light(seed: int = 1) -> bytes:
    """Two convolutions and a linear head on 3x32x32 (about 1 ms per batch of 32)."""
    g = GraphBuilder(seed)
    x = g.conv(INPUT_NAME, 3, 16, 3)
    x = g.conv(x, 16, 32, 3, stride=2)
    g.classifier(x, 32, 10, OUTPUT_NAME)
    return g.serialize(
        "light_cnn",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 10])],
    )


@dataclass(frozen=True)
class ModelSpec:
    """A benchmark model: how to build it and the shape of one input sample."""

    name: str
    build: Callable[[], bytes]
    sample_shape: tuple[int, ...]

    @property
    def filename(self) -> str:
        return f"bench-{self.name}-v{BUILD_VERSION}.onnx"


MODELS = {
    "heavy": ModelSpec("heavy", build_heavy, (3, 224, 224)),
    "light": ModelSpec("light", build_light, (3, 32, 32)),
}


def ensure_model(name: str, cache_dir: Path | None = None) -> Path:
    """The cached ONNX file of model *name*, built (once, checksum-verified) if absent."""
    spec = MODELS[name]
    return ensure_built(
        cache_dir or default_cache_dir(), f"benchmarks/{spec.filename}", spec.build, what=f"benchmark model {name!r}"
    )


def bare_session(path: Path, threads: int) -> ort.InferenceSession:
    """The scripts' bare reference session: the options the harness's onnxruntime backend uses (CPU)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def random_inputs(name: str) -> tuple[np.ndarray, ArrayDataset]:
    """Fixed-seed random inputs for model *name* (64 samples heavy, 1,024 light) and a dataset over them."""
    import numpy as np

    from pytest_mlperf.datasets.base import ArrayDataset

    count = 64 if name == "heavy" else 1024
    inputs = np.random.default_rng(7).random((count, *MODELS[name].sample_shape), dtype=np.float32)
    return inputs, ArrayDataset(inputs, name=f"{name}-random", synthetic_inputs=True)
