"""The benchmark ONNX graphs for engines that do not read ONNX: a TensorFlow SavedModel and a LiteRT ``.tflite``.

The graphs of :mod:`models` use nine ONNX ops (Conv, Relu, Add, MaxPool, GlobalAveragePool, Flatten, Gemm, Softmax,
ArgMax); each is rebuilt op by op as a ``tf.function`` with the ONNX weights as constants, computing in NHWC (the
layout TensorFlow's CPU kernels take) behind the same NCHW ``input``. The ``.tflite`` is that function through
TensorFlow's own converter, which runs offline. Both need ``tensorflow`` and are built once next to the ONNX file.
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
ENGINES = ("litert", "tensorflow")
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

    def convert() -> bytes:
        import tensorflow as tf

        module, function = _function(onnx_path)
        data: bytes = tf.lite.TFLiteConverter.from_concrete_functions([function], module).convert()
        return data

    return ensure_built(cache, f"{stem}.tflite", convert, what=f"{onnx_path.name} for LiteRT")
