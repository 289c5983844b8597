"""ONNX graphs for the performance scripts, written with ``onnx.helper`` and cached.

* ``heavy``: ResNet50 v1.5 shaped (bottlenecks 3-4-6-3, stride on the 3x3, batch norm folded into the
  convolutions, 1001 classes, NCHW 224), random weights. About 40 ms per image on 2 threads. Its argmax means
  nothing: it serves speed measurements only.
* ``light``: a small CNN on 3x32x32 inputs, about 1 ms per batch of 32 on 2 threads, so the harness's own
  per-query and per-batch costs show.

Weights come from a fixed seed, so a build is byte-identical; the file name carries a build version, and the
file is written atomically into ``<cache>/benchmarks`` (the plugin's cache dir unless one is given).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pytest_mlperf.config import default_cache_dir

__all__ = ["MODELS", "ModelSpec", "build_heavy", "build_light", "ensure_model"]

OPSET = 13
#: Bump when a graph changes: it is part of the cached file name.
BUILD_VERSION = 1
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class _Graph:
    """Accumulates nodes and initializers; weights are He-scaled so activations stay finite (no denormals)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def weight(self, shape: tuple[int, ...], fan_in: int, scale: float = 1.0) -> str:
        std = scale * np.sqrt(2.0 / fan_in)
        value = (self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)
        name = self.name("w")
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def bias(self, n: int) -> str:
        name = self.name("b")
        self.inits.append(numpy_helper.from_array(np.full(n, 0.01, dtype=np.float32), name))
        return name

    def conv(
        self, x: str, c_in: int, c_out: int, k: int, stride: int = 1, relu: bool = True, scale: float = 1.0
    ) -> str:
        w = self.weight((c_out, c_in, k, k), c_in * k * k, scale)
        out = self.name("conv")
        pad = k // 2
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, w, self.bias(c_out)],
                [out],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[pad, pad, pad, pad],
            )
        )
        return self.relu(out) if relu else out

    def relu(self, x: str) -> str:
        out = self.name("relu")
        self.nodes.append(helper.make_node("Relu", [x], [out]))
        return out

    def head(self, x: str, c_in: int, classes: int) -> None:
        pooled, flat = self.name("gap"), self.name("flat")
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled]))
        self.nodes.append(helper.make_node("Flatten", [pooled], [flat], axis=1))
        w = self.weight((c_in, classes), c_in, 0.5)
        self.nodes.append(helper.make_node("Gemm", [flat, w, self.bias(classes)], [OUTPUT_NAME]))

    def model(self, name: str, input_shape: tuple[int, ...], classes: int) -> bytes:
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", *input_shape])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", classes])],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pytest-mlperf")
        model.ir_version = 8
        onnx.checker.check_model(model)
        data: bytes = model.SerializeToString()
        return data


def build_heavy(seed: int = 50) -> bytes:
    """ResNet50 v1.5 shaped graph (25.6 M parameters, about 102 MB)."""
    g = _Graph(seed)
    x = g.conv(INPUT_NAME, 3, 64, 7, stride=2)
    pooled = g.name("maxpool")
    g.nodes.append(helper.make_node("MaxPool", [x], [pooled], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x, c_in = pooled, 64
    for stage, (blocks, width) in enumerate(((3, 64), (4, 128), (6, 256), (3, 512))):
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 0 else 1
            y = g.conv(x, c_in, width, 1)
            y = g.conv(y, width, width, 3, stride=stride)
            y = g.conv(y, width, width * 4, 1, relu=False, scale=0.2)
            short = g.conv(x, c_in, width * 4, 1, stride=stride, relu=False) if block == 0 else x
            added = g.name("add")
            g.nodes.append(helper.make_node("Add", [y, short], [added]))
            x, c_in = g.relu(added), width * 4
    g.head(x, c_in, 1001)
    return g.model("resnet50_shaped", (3, 224, 224), 1001)


def build_light(seed: int = 1) -> bytes:
    """Two convolutions and a linear head on 3x32x32 (about 1 ms per batch of 32)."""
    g = _Graph(seed)
    x = g.conv(INPUT_NAME, 3, 16, 3)
    x = g.conv(x, 16, 32, 3, stride=2)
    g.head(x, 32, 10)
    return g.model("light_cnn", (3, 32, 32), 10)


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
    """The cached ONNX file of model *name*, built and written atomically first if absent."""
    spec = MODELS[name]
    directory = (cache_dir or default_cache_dir()) / "benchmarks"
    path = directory / spec.filename
    if path.is_file():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    data = spec.build()
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{spec.filename}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
