"""ONNX stand-ins with the MLPerf detectors' interfaces that read their detections from a payload in the pixels.

Each stand-in (written with ``onnx.helper``, a few hundred bytes) has the input and outputs of one MLPerf
detector (:data:`INTERFACES`): SSD-MobileNet (``image_tensor:0`` uint8 NHWC 300x300; ``num_detections:0``,
``detection_boxes:0`` yxyx normalised, ``detection_scores:0``, ``detection_classes:0`` float COCO ids),
SSD-ResNet34 (``image`` float32 NCHW 1200x1200 normalised with the ImageNet mean and std; ``bboxes`` xyxy
normalised, ``labels`` int64 1..80, ``scores``), RetinaNet (``images`` float32 NCHW 800x800 scaled to 0..1;
``boxes`` xyxy in input pixels, ``labels`` int64, ``scores``).

What it detects is written into the image itself (:func:`write_payload`): a grid of 4x4-pixel cells (in model
input pixels) at the top of the image, channel 0. Each cell holds 6 bits as ``4 * v + 2`` and the model reads
``floor(p / 4)`` at the cell's centre, so the value survives bilinear resizing (the cell's inside stays
constant), float rounding and the reference's float-to-uint8 truncation. Two cells make a 12-bit value: cells 0-1
the detection count, then per detection ymin, xmin, ymax, xmax (in 1/4000 of the image), score (in 1/4095) and
class. Unused slots have score 0; an image whose count exceeds the maximum (no payload: synthetic inputs) detects
nothing. Images whose size is a whole multiple of the model input keep the cells intact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["INTERFACES", "Interface", "PayloadDetection", "build_detector_standin", "write_payload"]

CELL = 4
#: Box coordinates and scores are sent as integers over these.
BOX_UNITS = 4000
SCORE_UNITS = 4095
_VALUES = 6  # ymin, xmin, ymax, xmax, score, class


@dataclass(frozen=True)
class Interface:
    """One MLPerf detector's model interface."""

    name: str
    input: str
    size: int
    layout: str  # NHWC or NCHW
    dtype: str  # uint8 or float32
    mean: tuple[float, float, float]  # per channel, on the 0..1 scale, subtracted after /255 (float inputs)
    std: tuple[float, float, float]
    outputs: tuple[str, ...]  # boxes, scores, classes[, count]
    box_order: str
    box_units: str
    int_labels: bool


INTERFACES = {
    "ssd-mobilenet": Interface(
        "ssd-mobilenet", "image_tensor:0", 300, "NHWC", "uint8", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0),
        ("detection_boxes:0", "detection_scores:0", "detection_classes:0", "num_detections:0"), "yxyx",
        "normalized", False,
    ),
    "ssd-resnet34": Interface(
        "ssd-resnet34", "image", 1200, "NCHW", "float32", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
        ("bboxes", "scores", "labels"), "xyxy", "normalized", True,
    ),
    "retinanet": Interface(
        "retinanet", "images", 800, "NCHW", "float32", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0),
        ("boxes", "scores", "labels"), "xyxy", "pixels", True,
    ),
}


@dataclass(frozen=True)
class PayloadDetection:
    """One detection to encode: a box normalised to the image (ymin, xmin, ymax, xmax), a score and a class."""

    box: tuple[float, float, float, float]
    score: float
    label: int


def _cells_per_row(size: int) -> int:
    return size // CELL


def payload_rows(size: int, max_detections: int) -> int:
    """Cell rows the payload of *max_detections* needs at model input *size*."""
    cells = 2 + 2 * _VALUES * max_detections
    return -(-cells // _cells_per_row(size))


def quantize_box(value: float) -> int:
    return round(value * BOX_UNITS)


def quantize_score(value: float) -> int:
    return round(value * SCORE_UNITS)


def write_payload(
    image: npt.NDArray[np.uint8], detections: Sequence[PayloadDetection], interface: Interface, max_detections: int
) -> None:
    """Write *detections* into *image* (HxWx3 uint8, H and W whole multiples of the model input size) in place."""
    height, width = image.shape[:2]
    fy, fx = height // interface.size, width // interface.size
    if fy * interface.size != height or fx * interface.size != width or fy < 1 or fx < 1:
        raise ValueError(f"image {width}x{height} is not a whole multiple of the {interface.size} model input")
    if len(detections) > max_detections:
        raise ValueError(f"{len(detections)} detections; the stand-in was built for {max_detections}")
    values = [len(detections)]
    for det in detections:
        values += [*(quantize_box(v) for v in det.box), quantize_score(det.score), int(det.label)]
    if any(not 0 <= v < 4096 for v in values):
        raise ValueError(f"payload values must be 0..4095, got {values}")
    cells = np.zeros(2 + 2 * _VALUES * max_detections, np.int64)
    pairs = np.asarray(values, np.int64)
    cells[0 : 2 * len(pairs) : 2], cells[1 : 2 * len(pairs) : 2] = pairs // 64, pairs % 64
    per_row = _cells_per_row(interface.size)
    for n, v in enumerate(cells):
        r, c = divmod(n, per_row)
        image[r * CELL * fy : (r + 1) * CELL * fy, c * CELL * fx : (c + 1) * CELL * fx, 0] = 4 * v + 2


def build_detector_standin(interface: Interface | str, max_detections: int = 100) -> bytes:
    """The serialized ONNX stand-in for *interface*, answering up to *max_detections* per image."""
    spec = INTERFACES[interface] if isinstance(interface, str) else interface
    rows = payload_rows(spec.size, max_detections)
    per_row = _cells_per_row(spec.size)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def const(name: str, value: npt.ArrayLike, dtype: type = np.int64) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: int) -> str:
        made = helper.make_node(op, inputs, [output], output.replace(":", "_"))
        made.attribute.extend(helper.make_attribute(key, value) for key, value in attrs.items())
        nodes.append(made)
        return output

    half = CELL // 2
    # Cell centres of channel 0, as [N, rows, per_row].
    if spec.layout == "NHWC":
        starts, ends, axes = [half, half, 0], [rows * CELL, per_row * CELL, 1], [1, 2, 3]
    else:
        starts, ends, axes = [0, half, half], [1, rows * CELL, per_row * CELL], [1, 2, 3]
    x = spec.input
    if spec.dtype == "uint8":
        x = node("Cast", [x], "pixels", to=TensorProto.FLOAT)
    sliced = node("Slice", [x, const("starts", starts), const("ends", ends), const("axes", axes),
                            const("steps", [CELL, CELL, 1] if spec.layout == "NHWC" else [1, CELL, CELL])], "cells")
    flat = node("Reshape", [sliced, const("flat_shape", [0, rows * per_row])], "flat")
    # Back to 0..255 pixels: x * 255 * std + 255 * mean (exact for the uint8 input), then 6 bits per cell.
    if spec.dtype != "uint8":
        flat = node("Mul", [flat, const("scale", 255.0 * spec.std[0], np.float32)], "scaled")
        flat = node("Add", [flat, const("offset", 255.0 * spec.mean[0], np.float32)], "pixels")
    six = node("Floor", [node("Div", [flat, const("four", 4.0, np.float32)], "quarter")], "six_bits")
    hi = node("Slice", [six, const("hi_start", [0]), const("hi_end", [2 * (1 + _VALUES * max_detections)]),
                        const("pair_axis", [1]), const("two", [2])], "hi")
    lo = node("Slice", [six, const("lo_start", [1]), const("lo_end", [2 * (1 + _VALUES * max_detections)]),
                        const("pair_axis2", [1]), const("two2", [2])], "lo")
    value = node("Add", [node("Mul", [hi, const("sixty_four", 64.0, np.float32)], "hi64"), lo], "values")
    raw_count = node("Slice", [value, const("c0", [0]), const("c1", [1]), const("c_axis", [1])], "raw_count")
    # An image without a payload (synthetic inputs) reads as a count above the maximum: it detects nothing.
    valid = node("Cast", [node("LessOrEqual", [raw_count, const("most", float(max_detections), np.float32)],
                               "payload_ok")], "valid", to=TensorProto.FLOAT)
    count = node("Mul", [raw_count, valid], "count")
    dets = node("Slice", [value, const("d0", [1]), const("d1", [1 + _VALUES * max_detections]),
                          const("d_axis", [1])], "det_values")
    table = node("Reshape", [dets, const("det_shape", [0, max_detections, _VALUES])], "table")

    def column(first: int, last: int, name: str) -> str:
        return node("Slice", [table, const(f"{name}_s", [first]), const(f"{name}_e", [last]),
                              const(f"{name}_a", [2])], f"{name}_raw")

    yxyx = node("Div", [column(0, 4, "box"), const("box_units", float(BOX_UNITS), np.float32)], "yxyx")
    boxes_name, scores_name, classes_name = spec.outputs[:3]
    boxes = yxyx
    if spec.box_order == "xyxy":
        boxes = node("Gather", [yxyx, const("xyxy_order", [1, 0, 3, 2])], "xyxy", axis=2)
    if spec.box_units == "pixels":
        boxes = node("Mul", [boxes, const("input_size", float(spec.size), np.float32)], "box_pixels")
    node("Identity", [boxes], boxes_name)
    score = node("Div", [column(4, 5, "score"), const("score_units", float(SCORE_UNITS), np.float32)], "score_scaled")
    score = node("Mul", [score, node("Unsqueeze", [valid, const("last0", [2])], "valid3")], "score3")
    node("Squeeze", [score, const("last", [2])], scores_name)
    label = node("Squeeze", [column(5, 6, "label"), const("last2", [2])], "label_float")
    node("Cast", [label], classes_name, to=TensorProto.INT64 if spec.int_labels else TensorProto.FLOAT)
    outputs = [
        helper.make_tensor_value_info(boxes_name, TensorProto.FLOAT, ["N", max_detections, 4]),
        helper.make_tensor_value_info(scores_name, TensorProto.FLOAT, ["N", max_detections]),
        helper.make_tensor_value_info(
            classes_name, TensorProto.INT64 if spec.int_labels else TensorProto.FLOAT, ["N", max_detections]
        ),
    ]
    if len(spec.outputs) > 3:
        node("Squeeze", [count, const("count_axis", [1])], spec.outputs[3])
        outputs.append(helper.make_tensor_value_info(spec.outputs[3], TensorProto.FLOAT, ["N"]))
    shape: list[str | int] = ["N", spec.size, spec.size, 3] if spec.layout == "NHWC" else ["N", 3, spec.size, spec.size]
    dtype = TensorProto.UINT8 if spec.dtype == "uint8" else TensorProto.FLOAT
    graph = helper.make_graph(nodes, f"{spec.name}-standin", [helper.make_tensor_value_info(spec.input, dtype, shape)],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="pytest-mlperf")
    model.ir_version = 8
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data
