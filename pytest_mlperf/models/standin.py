"""A ResNet50 v1.5 shaped ONNX graph with random weights: a stand-in for the MLPerf model in tests and benchmarks.

Same topology as the real model (7x7 stem, max pool, bottlenecks 3-4-6-3 with the stride on the 3x3, global
average pool, 1001 classes, NCHW 3x224x224), batch norm folded into the convolutions, and every channel count
divided by ``width``: ``width=1`` has the real 25.6 M parameters (about 40 ms per image on 2 threads), ``width=8``
about 0.4 M and runs in a millisecond or two. Its predictions mean nothing; it serves harness, provisioning and
speed checks.

By default it also copies the real file's interface (``interface="mlperf"``): input ``input_tensor:0``, outputs
``ArgMax:0`` (int64 class indices, listed first as in the MLPerf ONNX) and ``softmax_tensor:0`` (N x 1001), so
code that works with the stand-in works with the real model. ``interface="logits"`` gives one float output,
``logits``. Class 0 plays the real model's "background" class: its bias is very negative, so it is never the
argmax, and prediction - 1 is always a valid ImageNet label.

Weights come from a fixed seed, so a build is byte-identical.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["NUM_CLASSES", "build_resnet50_standin"]

OPSET = 13
NUM_CLASSES = 1001
#: Stage layout of ResNet50: (bottleneck blocks, bottleneck width) per stage; the output has 4x the width.
STAGES = ((3, 64), (4, 128), (6, 256), (3, 512))


class GraphBuilder:
    """Accumulates nodes and initializers; weights are He-scaled so activations stay finite (no denormals)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def tensor(self, value: np.ndarray, prefix: str) -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def weight(self, shape: tuple[int, ...], fan_in: int, scale: float = 1.0) -> str:
        std = scale * np.sqrt(2.0 / fan_in)
        return self.tensor(self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std), "w")

    def conv(self, x: str, c_in: int, c_out: int, k: int, stride: int = 1, relu: bool = True,
             scale: float = 1.0) -> str:
        w = self.weight((c_out, c_in, k, k), c_in * k * k, scale)
        b = self.tensor(np.full(c_out, 0.01, np.float32), "b")
        out = self.name("conv")
        pad = k // 2
        self.nodes.append(helper.make_node("Conv", [x, w, b], [out], kernel_shape=[k, k], strides=[stride, stride],
                                           pads=[pad, pad, pad, pad]))
        return self.relu(out) if relu else out

    def relu(self, x: str) -> str:
        out = self.name("relu")
        self.nodes.append(helper.make_node("Relu", [x], [out]))
        return out

    def add(self, a: str, b: str) -> str:
        out = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [out]))
        return out

    def classifier(self, x: str, c_in: int, classes: int, output: str, bias: np.ndarray | None = None) -> None:
        """Global average pool, flatten and a fully connected layer writing *output*."""
        gap, flat = self.name("gap"), self.name("flat")
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], [gap]))
        self.nodes.append(helper.make_node("Flatten", [gap], [flat], axis=1))
        fc_b = self.tensor(bias if bias is not None else np.full(classes, 0.01, np.float32), "fc_b")
        self.nodes.append(helper.make_node("Gemm", [flat, self.weight((c_in, classes), c_in, 0.5), fc_b], [output]))

    def serialize(
        self, name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]
    ) -> bytes:
        """The checked, serialized model (deterministic: same seed, same bytes)."""
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pytest-mlperf")
        model.ir_version = 8
        onnx.checker.check_model(model)
        data: bytes = model.SerializeToString()
        return data


def build_resnet50_standin(
    width: int = 8,
    *,
    seed: int = 50,
    interface: Literal["mlperf", "logits"] = "mlperf",
) -> bytes:
    """Serialized ONNX model: ResNet50 v1.5 topology with every channel count divided by ``width``."""
    if width < 1 or 64 % width:
        raise ValueError(f"width must divide 64 (1, 2, 4, 8, 16, 32 or 64), got {width}")
    input_name = "input_tensor:0" if interface == "mlperf" else "input"
    g = GraphBuilder(seed)
    stem = 64 // width
    x = g.conv(input_name, 3, stem, 7, stride=2)
    pooled = g.name("maxpool")
    g.nodes.append(helper.make_node("MaxPool", [x], [pooled], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x, c_in = pooled, stem
    for stage, (blocks, full_width) in enumerate(STAGES):
        mid = full_width // width
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 0 else 1
            y = g.conv(x, c_in, mid, 1)
            y = g.conv(y, mid, mid, 3, stride=stride)
            y = g.conv(y, mid, mid * 4, 1, relu=False, scale=0.2)
            short = g.conv(x, c_in, mid * 4, 1, stride=stride, relu=False) if block == 0 else x
            x, c_in = g.relu(g.add(y, short)), mid * 4
    bias = np.full(NUM_CLASSES, 0.01, np.float32)
    bias[0] = -1e4  # "background": never the argmax, as with the real model on ImageNet photos
    logits = "logits"
    g.classifier(x, c_in, NUM_CLASSES, logits, bias)
    batch = "unk__batch"
    if interface == "mlperf":
        g.nodes.append(helper.make_node("Softmax", [logits], ["softmax_tensor:0"], axis=1))
        g.nodes.append(helper.make_node("ArgMax", ["softmax_tensor:0"], ["ArgMax:0"], axis=1, keepdims=0))
        outputs = [
            helper.make_tensor_value_info("ArgMax:0", TensorProto.INT64, [batch]),
            helper.make_tensor_value_info("softmax_tensor:0", TensorProto.FLOAT, [batch, NUM_CLASSES]),
        ]
    else:
        outputs = [helper.make_tensor_value_info(logits, TensorProto.FLOAT, [batch, NUM_CLASSES])]
    inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 3, 224, 224])]
    return g.serialize(f"resnet50_standin_w{width}", inputs, outputs)
