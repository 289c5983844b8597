"""The benchmark ONNX graphs for engines that do not read ONNX: a TensorFlow SavedModel, a LiteRT ``.tflite`` and a
TorchScript archive.

The graphs of :mod:`models` use nine ONNX ops (Conv, Relu, Add, MaxPool, GlobalAveragePool, Flatten, Gemm, Softmax,
ArgMax); each is rebuilt op by op as a ``tf.function`` with the ONNX weights as constants, computing in NHWC (the
layout TensorFlow's CPU kernels take) behind the same NCHW ``input``. The ``.tflite`` is that function through
TensorFlow's own converter, which runs offline. Both need ``tensorflow``. For torch the same ops become an
``nn.Module`` (NCHW, the ONNX weights as parameters) traced into TorchScript, the format the torch backend loads by
default (``mode=scripted``); it returns ``{output name: tensor}`` like the ONNX graph. Each is built once next to the
ONNX file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from pytest_mlperf.fileio import ensure_built, ensure_built_dir

__all__ = ["ENGINES", "engine_model"]

#: Engines this module converts for; bump CONVERT_VERSION when the conversion changes (it renames the outputs).
ENGINES = ("litert", "tensorflow", "torch")
CONVERT_VERSION = 1


def _function(onnx_path: Path) -> tuple[Any, Any]:
    """(module, concrete function) computing the ONNX graph in TensorFlow."""
    import tensorflow as tf

    model = onnx.load(str(onnx_path))
    graph = model.graph
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    (inp,) = [i for i in graph.input if i.name not in consts]
    channels, height, width = (d.dim_value for d in inp.type.tensor_type.shape.dim[1:])
    outputs = [o.name for o in graph.output]

    def attrs(node: onnx.NodeProto) -> dict[str, Any]:
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def pad_nhwc(x: Any, pads: list[int], value: float = 0.0) -> Any:
        top, left, bottom, right = pads
        if not any(pads):
            return x
        return tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=value)

    class Converted(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None, channels, height, width], tf.float32, name="input")])  # type: ignore[untyped-decorator]
        def __call__(self, images: Any) -> dict[str, Any]:
            values: dict[str, Any] = {inp.name: tf.transpose(images, [0, 2, 3, 1])}
            for node in graph.node:
                a, args = attrs(node), [values.get(n) for n in node.input]
                op = node.op_type
                if op == "Conv":
                    w = consts[node.input[1]].transpose(2, 3, 1, 0)  # OIHW -> HWIO
                    x = pad_nhwc(args[0], list(a.get("pads", [0, 0, 0, 0])))
                    y = tf.nn.conv2d(x, tf.constant(w), strides=list(a.get("strides", [1, 1])), padding="VALID")
                    out = y + consts[node.input[2]] if len(node.input) > 2 else y
                elif op == "Relu":
                    out = tf.nn.relu(args[0])
                elif op == "Add":
                    out = args[0] + args[1]
                elif op == "MaxPool":
                    x = pad_nhwc(args[0], list(a.get("pads", [0, 0, 0, 0])), float("-inf"))
                    out = tf.nn.max_pool2d(x, a["kernel_shape"], a["strides"], "VALID")
                elif op == "GlobalAveragePool":
                    out = tf.reduce_mean(args[0], axis=[1, 2], keepdims=True)
                elif op == "Flatten":
                    # NHWC -> NCHW first, so the flattened order is ONNX's (identical when H = W = 1).
                    x = tf.transpose(args[0], [0, 3, 1, 2]) if args[0].shape.rank == 4 else args[0]
                    out = tf.reshape(x, [-1, int(np.prod(x.shape[1:]))])
                elif op == "Gemm":
                    w = consts[node.input[1]]
                    out = tf.matmul(args[0], tf.constant(w.T if a.get("transB", 0) else w)) + consts[node.input[2]]
                elif op == "Softmax":
                    out = tf.nn.softmax(args[0], axis=a.get("axis", -1))
                elif op == "ArgMax":
                    out = tf.argmax(args[0], axis=a.get("axis", 0))
                else:
                    raise NotImplementedError(f"{onnx_path}: no conversion for ONNX op {op}")
                values[node.output[0]] = out
            return {name: values[name] for name in outputs}

    module = Converted()
    return module, module.__call__.get_concrete_function()


def _torch_module(onnx_path: Path) -> Any:
    """An ``nn.Module`` computing the ONNX graph in torch (NCHW, as ONNX), with the ONNX weights as its parameters."""
    import torch
    import torch.nn.functional as F

    model = onnx.load(str(onnx_path))
    graph = model.graph
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    (inp,) = [i for i in graph.input if i.name not in consts]
    outputs = [o.name for o in graph.output]

    def attrs(node: onnx.NodeProto) -> dict[str, Any]:
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def padding(pads: list[int]) -> tuple[tuple[int, int], tuple[int, int, int, int] | None]:
        """(symmetric padding the layer takes, explicit F.pad for asymmetric ONNX pads [top, left, bottom, right])."""
        top, left, bottom, right = pads
        if (top, left) == (bottom, right):
            return (top, left), None
        return (0, 0), (left, right, top, bottom)

    class Converted(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleDict()
            self.steps: list[tuple[str, str, list[str], str, Any]] = []  # (op, layer key, inputs, output, extra)
            for k, node in enumerate(graph.node):
                a, op, key, extra = attrs(node), node.op_type, f"n{k}", None
                if op == "Conv":
                    w = torch.from_numpy(consts[node.input[1]].copy())
                    pad, extra = padding(list(a.get("pads", [0, 0, 0, 0])))
                    conv = torch.nn.Conv2d(
                        w.shape[1] * a.get("group", 1), w.shape[0], tuple(w.shape[2:]),
                        stride=tuple(a.get("strides", [1, 1])), padding=pad, dilation=tuple(a.get("dilations", [1, 1])),
                        groups=a.get("group", 1), bias=len(node.input) > 2,
                    )
                    conv.weight.data.copy_(w)
                    if conv.bias is not None:
                        conv.bias.data.copy_(torch.from_numpy(consts[node.input[2]].copy()))
                    self.layers[key] = conv
                elif op == "MaxPool":
                    pad, extra = padding(list(a.get("pads", [0, 0, 0, 0])))
                    self.layers[key] = torch.nn.MaxPool2d(tuple(a["kernel_shape"]), tuple(a["strides"]), pad)
                elif op == "Gemm":
                    w = consts[node.input[1]]
                    w = w if a.get("transB", 0) else w.T  # Linear keeps (out, in)
                    linear = torch.nn.Linear(w.shape[1], w.shape[0])
                    linear.weight.data.copy_(torch.from_numpy(np.ascontiguousarray(w)))
                    linear.bias.data.copy_(torch.from_numpy(consts[node.input[2]].copy()))
                    self.layers[key] = linear
                elif op in ("Softmax", "ArgMax", "Flatten"):
                    extra = a.get("axis", {"Softmax": -1, "ArgMax": 0, "Flatten": 1}[op])
                elif op not in ("Relu", "Add", "GlobalAveragePool"):
                    raise NotImplementedError(f"{onnx_path}: no conversion for ONNX op {op}")
                self.steps.append((op, key, list(node.input), node.output[0], extra))

        def forward(self, images: Any) -> dict[str, Any]:
            values: dict[str, Any] = {inp.name: images}
            for op, key, names, out, extra in self.steps:
                x = values[names[0]]
                if op in ("Conv", "MaxPool"):
                    if extra is not None:
                        x = F.pad(x, extra, value=0.0 if op == "Conv" else float("-inf"))
                    y = self.layers[key](x)
                elif op == "Gemm":
                    y = self.layers[key](x)
                elif op == "Relu":
                    y = torch.relu(x)
                elif op == "Add":
                    y = x + values[names[1]]
                elif op == "GlobalAveragePool":
                    y = torch.mean(x, dim=(2, 3), keepdim=True)
                elif op == "Flatten":
                    y = torch.flatten(x, extra)
                elif op == "Softmax":
                    y = torch.softmax(x, extra)
                else:  # ArgMax
                    y = torch.argmax(x, extra)
                values[out] = y
            return {name: values[name] for name in outputs}

    channels, height, width = (d.dim_value for d in inp.type.tensor_type.shape.dim[1:])
    return Converted().eval(), (channels, height, width)


def _torchscript(onnx_path: Path) -> bytes:
    """The converted module traced (on a batch of 2, the batch axis stays free) and saved as TorchScript."""
    import io

    import torch

    from pytest_mlperf.backends.torch import quiet_jit

    module, shape = _torch_module(onnx_path)
    buffer = io.BytesIO()
    with torch.inference_mode(False), torch.no_grad(), quiet_jit():
        # strict=False: the module returns a dict by output name, as the ONNX graph names its outputs.
        traced = torch.jit.trace(module, torch.zeros((2, *shape)), strict=False)
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def engine_model(onnx_path: Path, engine: str) -> Path:
    """The model *engine* loads for the benchmark graph *onnx_path*, converted once and cached beside it."""
    if engine not in ENGINES:
        return onnx_path
    key = hashlib.sha256(onnx_path.read_bytes()).hexdigest()[:12]
    cache, stem = onnx_path.parent, f"{onnx_path.stem}-{key}-c{CONVERT_VERSION}"

    if engine == "tensorflow":

        def save(target: Path) -> None:
            import tensorflow as tf

            module, function = _function(onnx_path)
            tf.saved_model.save(module, str(target), signatures={"serving_default": function})

        return ensure_built_dir(cache, f"{stem}.savedmodel", save, what=f"{onnx_path.name} for TensorFlow")
    if engine == "torch":
        what = f"{onnx_path.name} for torch"
        return ensure_built(cache, f"{stem}.torchscript.pt", lambda: _torchscript(onnx_path), what=what)

    def convert() -> bytes:
        import tensorflow as tf

        module, function = _function(onnx_path)
        data: bytes = tf.lite.TFLiteConverter.from_concrete_functions([function], module).convert()
        return data

    return ensure_built(cache, f"{stem}.tflite", convert, what=f"{onnx_path.name} for LiteRT")
