"""Write the digits CNN as a LiteRT (TFLite) flatbuffer from the numpy weights, and cache it.

No TensorFlow is involved: the graph is assembled with the flatbuffer object classes that ``ai_edge_litert`` ships
(``ai_edge_litert.schema_py_generated``, generated from the TFLite schema) and serialised with the ``flatbuffers``
package it depends on. The model takes the same NCHW input as the ONNX file (``input`` [N,1,8,8] -> ``logits``
[N,10]); a TRANSPOSE inside the graph turns it into the NHWC layout TFLite's kernels use, so the backend and the
dataset need not know about layouts. The batch axis is dynamic (shape signature -1).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from pytest_mlperf.errors import ModelError
from pytest_mlperf.fileio import ensure_built
from pytest_mlperf.models.digits import (
    DIGITS_MODEL_NAME,
    _checked_weights,
    digits_recipe_hash,
    digits_weights_from_onnx,
    ensure_digits_model,
)

__all__ = ["build_digits_tflite", "ensure_digits_tflite"]

# Bump when the graph written below changes; it renames the cached file.
_EXPORT_VERSION: Final = 1
# The TFLite schema version the interpreter expects ("TFL3").
_SCHEMA_VERSION: Final = 3
_FILE_IDENTIFIER: Final = b"TFL3"
# Constant data is aligned like the TFLite converter aligns it, so kernels may read it in place.
_BUFFER_ALIGNMENT: Final = 16


class _AlignedBuffer:
    """A ``Buffer`` table whose bytes start on a 16-byte boundary (the generated ``BufferT`` aligns to 1 byte).

    ``ModelT.Pack`` only calls ``Pack(builder)`` on each entry of ``buffers``, so this stands in for ``BufferT``.
    """

    def __init__(self, schema: Any, data: bytes) -> None:
        self._schema, self._data = schema, data

    def Pack(self, builder: Any) -> int:  # the name ModelT.Pack calls
        data = None
        if self._data:
            builder.StartVector(1, len(self._data), _BUFFER_ALIGNMENT)
            builder.head = builder.head - len(self._data)
            builder.Bytes[builder.head : builder.head + len(self._data)] = self._data
            data = builder.EndVector()
        self._schema.BufferStart(builder)
        if data is not None:
            self._schema.BufferAddData(builder, data)
        offset: int = self._schema.BufferEnd(builder)
        return offset


class _Graph:
    """Collects tensors, constant buffers, operator codes and operators for one subgraph."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self.tensors: list[Any] = []
        self.buffers: list[_AlignedBuffer] = [_AlignedBuffer(schema, b"")]  # buffer 0: the empty sentinel
        self.codes: list[int] = []
        self.operators: list[Any] = []

    def tensor(self, name: str, shape: tuple[int, ...], data: npt.NDArray[Any] | None = None) -> int:
        s = self.schema
        t = s.TensorT()
        t.name = name
        # A leading -1 marks the batch axis as resizable; constants have fixed shapes.
        t.shape = [1 if d == -1 else d for d in shape]
        if data is None and -1 in shape:
            t.shapeSignature = list(shape)
        if data is None:
            t.type = s.TensorType.FLOAT32
        else:
            t.type = s.TensorType.INT32 if data.dtype == np.int32 else s.TensorType.FLOAT32
            if tuple(data.shape) != shape:
                raise ModelError(f"digits tflite: constant {name!r} has shape {data.shape}, expected {shape}")
            little_endian = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
            self.buffers.append(_AlignedBuffer(s, little_endian.tobytes()))
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, code: int, inputs: list[int], outputs: list[int], options_type: int = 0, options: Any = None) -> None:
        s = self.schema
        if code not in self.codes:
            self.codes.append(code)
        o = s.OperatorT()
        o.opcodeIndex = self.codes.index(code)
        o.inputs, o.outputs = inputs, outputs
        o.builtinOptionsType, o.builtinOptions = options_type, options
        self.operators.append(o)

    def serialise(self, inputs: list[int], outputs: list[int], description: str) -> bytes:
        import flatbuffers

        s = self.schema
        subgraph = s.SubGraphT()
        subgraph.name = "main"
        subgraph.tensors, subgraph.operators = self.tensors, self.operators
        subgraph.inputs, subgraph.outputs = inputs, outputs
        codes = []
        for code in self.codes:
            c = s.OperatorCodeT()
            # Codes below 127 must also sit in the int8 field older readers look at.
            c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), 1
            codes.append(c)
        model = s.ModelT()
        model.version = _SCHEMA_VERSION
        model.description = description
        model.operatorCodes, model.subgraphs, model.buffers = codes, [subgraph], self.buffers
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
        return bytes(builder.Output())


def build_digits_tflite(weights: Mapping[str, npt.ArrayLike], batch: int | None = None) -> bytes:
    """Serialise the weights as a TFLite flatbuffer, ``input`` [N,1,8,8] (NCHW) -> ``logits`` [N,10].

    *batch* None leaves N resizable (shape signature -1); a number fixes it, as exports for fixed-shape runtimes do.

    TRANSPOSE to NHWC -> CONV_2D 3x3 SAME + fused ReLU -> MAX_POOL_2D 2x2 -> FULLY_CONNECTED + ReLU ->
    FULLY_CONNECTED. ONNX flattens the pooled map in (C, H, W) order and FULLY_CONNECTED flattens NHWC in (H, W, C)
    order, so fc1's columns are permuted here instead of transposing back at run time.
    """
    try:
        from ai_edge_litert import schema_py_generated as s
    except ImportError as exc:
        raise ModelError(
            f"writing the digits model for LiteRT needs ai_edge_litert.schema_py_generated ({exc}); install it with "
            'pip install "pytest-mlperf[litert]"'
        ) from exc
    w = _checked_weights(weights)
    channels, hidden, classes = w["conv1.weight"].shape[0], w["fc1.weight"].shape[0], w["fc2.weight"].shape[0]
    if batch is not None and batch < 1:
        raise ModelError(f"build_digits_tflite: batch must be None (resizable) or at least 1, got {batch}")
    n = -1 if batch is None else batch
    side = 8
    pooled = side // 2
    conv_w = np.ascontiguousarray(w["conv1.weight"].transpose(0, 2, 3, 1))  # OIHW -> OHWI
    fc1_w = np.ascontiguousarray(
        w["fc1.weight"].reshape(hidden, channels, pooled, pooled).transpose(0, 2, 3, 1).reshape(hidden, -1)
    )

    g = _Graph(s)
    op, opts = s.BuiltinOperator, s.BuiltinOptions
    x = g.tensor("input", (n, 1, side, side))
    perm = g.tensor("nchw_to_nhwc", (4,), np.array([0, 2, 3, 1], dtype=np.int32))
    x_nhwc = g.tensor("input_nhwc", (n, side, side, 1))
    g.op(op.TRANSPOSE, [x, perm], [x_nhwc], opts.TransposeOptions, s.TransposeOptionsT())

    conv_opts = s.Conv2DOptionsT()
    conv_opts.padding, conv_opts.strideH, conv_opts.strideW = s.Padding.SAME, 1, 1
    conv_opts.fusedActivationFunction = s.ActivationFunctionType.RELU
    conv_w_t = g.tensor("conv1.weight", conv_w.shape, conv_w)
    conv_b_t = g.tensor("conv1.bias", (channels,), w["conv1.bias"])
    relu1 = g.tensor("relu1", (n, side, side, channels))
    g.op(op.CONV_2D, [x_nhwc, conv_w_t, conv_b_t], [relu1], opts.Conv2DOptions, conv_opts)

    pool_opts = s.Pool2DOptionsT()
    pool_opts.padding, pool_opts.strideH, pool_opts.strideW = s.Padding.VALID, 2, 2
    pool_opts.filterHeight, pool_opts.filterWidth = 2, 2
    pool1 = g.tensor("pool1", (n, pooled, pooled, channels))
    g.op(op.MAX_POOL_2D, [relu1], [pool1], opts.Pool2DOptions, pool_opts)

    # FULLY_CONNECTED flattens its input to (N, 256) itself (keepNumDims false).
    fc1_opts = s.FullyConnectedOptionsT()
    fc1_opts.fusedActivationFunction = s.ActivationFunctionType.RELU
    fc1_w_t = g.tensor("fc1.weight", fc1_w.shape, fc1_w)
    fc1_b_t = g.tensor("fc1.bias", (hidden,), w["fc1.bias"])
    relu2 = g.tensor("relu2", (n, hidden))
    g.op(op.FULLY_CONNECTED, [pool1, fc1_w_t, fc1_b_t], [relu2], opts.FullyConnectedOptions, fc1_opts)

    fc2_w_t = g.tensor("fc2.weight", (classes, hidden), w["fc2.weight"])
    fc2_b_t = g.tensor("fc2.bias", (classes,), w["fc2.bias"])
    logits = g.tensor("logits", (n, classes))
    g.op(op.FULLY_CONNECTED, [relu2, fc2_w_t, fc2_b_t], [logits], opts.FullyConnectedOptions,
         s.FullyConnectedOptionsT())

    description = f"pytest-mlperf {DIGITS_MODEL_NAME}, recipe {digits_recipe_hash()}, tflite export {_EXPORT_VERSION}"
    return g.serialise([x], [logits], description)


def ensure_digits_tflite(cache_dir: Path) -> Path:
    """Return the cached digits ``.tflite`` in cache_dir, writing it from the cached ONNX model's weights if absent."""
    onnx_path = ensure_digits_model(cache_dir)
    name = f"litert/{DIGITS_MODEL_NAME}-{digits_recipe_hash()}-e{_EXPORT_VERSION}.tflite"
    return ensure_built(
        cache_dir,
        name,
        lambda: build_digits_tflite(digits_weights_from_onnx(onnx_path)),
        what="the digits model for LiteRT",
    )
