"""Object detection: model outputs -> the MLPerf reference's ragged float32 responses, scored as COCO bbox mAP.

A response is what the reference's ``PostProcessCoco*`` classes write and MLCommons' ``tools/accuracy-coco.py``
(and ``accuracy-openimages.py``) decode: float32 values, 7 per detection, ``[qsl_idx, ymin, xmin, ymax, xmax,
score, class]``, boxes normalised to 0..1, ``class`` a category id of the annotation file. A sample with no
detection gets an empty response. Responses differ in length, so :meth:`Detection.postprocess` returns one view per
sample into a single block packed for the whole batch (no per-sample copy).

What a model's outputs mean is declared, not guessed: the output names, the box order (``yxyx`` or ``xyxy``), the
box units (``normalized``, or ``pixels`` of the model input), a detection-count output or a score threshold (the
reference stops at the first score below it: detections come sorted), and the label convention (``coco``: the
model gives category ids; ``coco80``: contiguous 1..80, mapped to the COCO ids). The profiles below are the
reference's for its three detectors.

Scoring (:meth:`Detection.score`) is ``accuracy-coco.py``'s, vectorised: boxes to ``[x, y, w, h]`` in the original
image's pixels in float32, pycocotools ``COCOeval(iouType="bbox")`` over the image ids of the logged samples.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

from pytest_mlperf.tasks.base import AccuracyCoverageError, scored_indices

if TYPE_CHECKING:
    from pytest_mlperf.datasets.base import Dataset
    from pytest_mlperf.tasks.base import Outputs

__all__ = [
    "COCO80_TO_COCO",
    "RETINANET",
    "SSD_MOBILENET",
    "SSD_RESNET34",
    "CocoGroundTruth",
    "Detection",
    "DetectionInterfaceError",
    "decode_responses",
]

#: Values per detection in a response.
FIELDS = 7
#: The COCO 2017 category ids in order: contiguous label ``i`` (1..80) is ``COCO80_TO_COCO[i]``; index 0 is the
#: background, unused. Equal to ``[0] + COCO(instances_val2017.json).getCatIds()``, the reference's ``inv_map``.
COCO80_TO_COCO: tuple[int, ...] = (0, *(i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}))


class DetectionInterfaceError(ValueError):
    """The model's outputs are not what the detection task was told to expect."""


@dataclass(frozen=True)
class CocoGroundTruth:
    """A COCO-format annotation document and the QSL order of its images (the order of its ``images`` list)."""

    annotations: Mapping[str, Any]
    source: str
    image_ids: npt.NDArray[np.int64] = field(init=False)
    heights: npt.NDArray[np.int64] = field(init=False)
    widths: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        images = self.annotations["images"]
        object.__setattr__(self, "image_ids", np.array([int(i["id"]) for i in images], np.int64))
        object.__setattr__(self, "heights", np.array([int(i["height"]) for i in images], np.int64))
        object.__setattr__(self, "widths", np.array([int(i["width"]) for i in images], np.int64))

    def __len__(self) -> int:
        return len(self.image_ids)

    def coco(self) -> Any:
        """A pycocotools ``COCO`` over the document, built without its progress prints."""
        from pycocotools.coco import COCO  # deferred: only detection accuracy needs pycocotools

        gt = COCO()
        gt.dataset = dict(self.annotations)
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
        return gt


def _pick(outputs: Outputs, name: str, role: str) -> np.ndarray:
    if isinstance(outputs, np.ndarray):
        raise DetectionInterfaceError(
            f"the detector returned one unnamed output; the detection task needs its {role} output {name!r}. "
            "Give the backend a model with named outputs"
        )
    try:
        return np.asarray(outputs[name])
    except KeyError:
        raise DetectionInterfaceError(
            f"the detector has no {role} output {name!r}; its outputs are {', '.join(map(repr, outputs))}. "
            f"Name the right one with Detection({role}=...)"
        ) from None


@dataclass(frozen=True)
class Detection:
    """Detections from named outputs, as the MLPerf reference's responses; mAP (COCO bbox, 0..1) is the metric.

    ``boxes`` [N, K, 4], ``scores`` [N, K], ``classes`` [N, K] name the outputs (a model that answers one image
    without a batch axis, [K, 4], is read as a batch of one); ``count`` names a [N] detection-count output, or
    None. ``box_order`` is ``yxyx`` or ``xyxy``; ``box_units`` ``normalized`` or ``pixels`` of the model input,
    whose (height, width) is ``input_size``. Detections are kept up to the first score below
    ``score_threshold`` (the reference's ``break``). ``labels``: ``coco`` (the model's classes are category ids,
    written as they are) or ``coco80`` (contiguous 1..80, written as COCO category ids).
    """

    boxes: str = "detection_boxes:0"
    scores: str = "detection_scores:0"
    classes: str = "detection_classes:0"
    count: str | None = "num_detections:0"
    box_order: Literal["yxyx", "xyxy"] = "yxyx"
    box_units: Literal["normalized", "pixels"] = "normalized"
    input_size: tuple[int, int] | None = None
    score_threshold: float = 0.0
    labels: Literal["coco", "coco80"] = "coco"
    name: str = "detection"
    metric: str = "mAP"
    higher_is_better: bool = True
    _order: npt.NDArray[np.intp] = field(init=False, repr=False, compare=False)
    _scale: npt.NDArray[np.float32] | None = field(init=False, repr=False, compare=False)
    _table: npt.NDArray[np.float32] | None = field(init=False, repr=False, compare=False)
    #: The SUT passes each batch's qsl indices to :meth:`postprocess`: a response starts with its sample's index.
    indexed_responses: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.box_order not in ("yxyx", "xyxy"):
            raise ValueError(f"Detection(box_order={self.box_order!r}): use 'yxyx' or 'xyxy'")
        if self.box_units not in ("normalized", "pixels"):
            raise ValueError(f"Detection(box_units={self.box_units!r}): use 'normalized' or 'pixels'")
        if self.box_units == "pixels" and not self.input_size:
            raise ValueError("Detection(box_units='pixels') needs input_size=(height, width) of the model input")
        if self.labels not in ("coco", "coco80"):
            raise ValueError(f"Detection(labels={self.labels!r}): use 'coco' or 'coco80'")
        # Box columns in response order (ymin, xmin, ymax, xmax) and their scale, fixed once.
        order = (0, 1, 2, 3) if self.box_order == "yxyx" else (1, 0, 3, 2)
        object.__setattr__(self, "_order", np.array(order, np.intp))
        if self.box_units == "pixels" and self.input_size:
            h, w = self.input_size
            scale = np.array([h, w, h, w], np.float32)  # divided, as the reference does: box[1] / height
        else:
            scale = None
        object.__setattr__(self, "_scale", scale)
        table = np.asarray(COCO80_TO_COCO, np.float32) if self.labels == "coco80" else None
        object.__setattr__(self, "_table", table)

    # -- outputs -> responses ------------------------------------------------------------------------------------

    def postprocess(self, outputs: Outputs, indices: Sequence[int] | None = None) -> list[np.ndarray]:
        """One float32 (k, 7) view per sample of one block packed for the batch; *indices* fill column 0."""
        boxes = _pick(outputs, self.boxes, "boxes")
        scores = _pick(outputs, self.scores, "scores")
        classes = _pick(outputs, self.classes, "classes")
        if boxes.ndim == 2:  # one image without a batch axis (the MLPerf RetinaNet ONNX)
            if indices is not None and len(indices) != 1:
                raise DetectionInterfaceError(
                    f"detector output {self.boxes!r} {boxes.shape} has no batch axis, so it answers one image at a "
                    f"time, but it was given a batch of {len(indices)}: run it with --mlperf-batch-size 1"
                )
            boxes, scores, classes = boxes[None], scores.reshape(1, -1), classes.reshape(1, -1)
        if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.shape != boxes.shape[:2] or classes.shape != scores.shape:
            raise DetectionInterfaceError(
                f"detector outputs do not match the declared interface: {self.boxes!r} {boxes.shape} must be "
                f"[N, K, 4], {self.scores!r} {scores.shape} and {self.classes!r} {classes.shape} [N, K]"
            )
        n, k = scores.shape
        keep: np.ndarray | None = None
        if self.count is not None:
            count = _pick(outputs, self.count, "count").reshape(-1)
            if count.shape != (n,):
                raise DetectionInterfaceError(
                    f"detector output {self.count!r} has shape {count.shape}; the declared interface wants [N]={n}"
                )
            keep = np.arange(k) < count.astype(np.int64)[:, None]
        if self.score_threshold > 0:
            # The reference stops at the first score below the threshold (detections come sorted by score).
            above = np.logical_and.accumulate(scores >= self.score_threshold, axis=1)
            keep = above if keep is None else keep & above
        if keep is None:
            keep = np.ones((n, k), bool)
        rows, cols = np.nonzero(keep)
        packed = np.empty((len(rows), FIELDS), np.float32)
        qsl = np.zeros(n, np.float32) if indices is None else np.asarray(indices, np.float32)
        packed[:, 0] = qsl[rows]
        chosen = boxes[rows, cols][:, self._order]
        packed[:, 1:5] = chosen if self._scale is None else chosen / self._scale
        packed[:, 5] = scores[rows, cols]
        packed[:, 6] = self._classes(classes[rows, cols])
        per_sample = keep.sum(axis=1)
        return np.split(packed, np.cumsum(per_sample)[:-1])

    def _classes(self, classes: np.ndarray) -> np.ndarray:
        table = self._table
        if table is None:
            return classes
        labels = classes.astype(np.int64)
        if labels.size and (labels.min() < 1 or labels.max() > 80):
            bad = labels[(labels < 1) | (labels > 80)]
            raise DetectionInterfaceError(
                f"detector output {self.classes!r} has label {int(bad[0])}; labels='coco80' declares contiguous "
                "labels 1..80. If the model gives COCO category ids, use labels='coco'"
            )
        return table[labels]

    # -- responses -> metrics ------------------------------------------------------------------------------------

    def score(self, responses: Mapping[int, bytes], dataset: Dataset) -> dict[str, float]:
        return self._score(responses, dataset, subset=False)

    def score_subset(self, responses: Mapping[int, bytes], dataset: Dataset) -> dict[str, float]:
        """COCO AP over the images the responses hold, as ``accuracy-coco.py`` scores a partial log."""
        return self._score(responses, dataset, subset=True)

    def _score(self, responses: Mapping[int, bytes], dataset: Dataset, subset: bool) -> dict[str, float]:
        truth = ground_truth_of(dataset)
        return evaluate(decode_responses(responses), scored_indices(responses, len(truth), subset), truth)

    def accuracy_line(self, metrics: Mapping[str, float]) -> str:
        # tools/accuracy-coco.py: print("mAP={:.3f}%".format(100.0 * cocoEval.stats[0]))
        return f"mAP={100.0 * metrics['mAP']:.3f}%"


def ground_truth_of(dataset: Dataset) -> CocoGroundTruth:
    """The dataset's COCO-format ground truth, or a clear refusal (synthetic or unannotated inputs)."""
    if getattr(dataset, "synthetic_inputs", False):
        raise ValueError(f"dataset {dataset.name!r} is synthetic; its detection accuracy would mean nothing")
    truth = getattr(dataset, "ground_truth", None)
    if not isinstance(truth, CocoGroundTruth):
        raise ValueError(
            f"dataset {dataset.name!r} has no COCO-format ground truth (a CocoGroundTruth as .ground_truth), so "
            "detection accuracy cannot be scored; use CocoDataset, or give the dataset a ground_truth"
        )
    return truth


def decode_responses(responses: Mapping[int, bytes]) -> npt.NDArray[np.float32]:
    """All responses as one float32 (M, 7) block; each response's column 0 must be its own qsl index."""
    blocks = []
    for idx in sorted(responses):
        data = responses[idx]
        if len(data) % (4 * FIELDS):
            raise AccuracyCoverageError(
                f"response for qsl index {idx} has {len(data)} bytes, not a whole number of 7-float32 detections"
            )
        block = np.frombuffer(data, np.float32).reshape(-1, FIELDS)
        if len(block) and not np.all(block[:, 0] == np.float32(idx)):
            other = block[block[:, 0] != np.float32(idx), 0][0]
            raise AccuracyCoverageError(
                f"response for qsl index {idx} carries detections of sample {other:g}: LoadGen and the payload "
                "disagree on the image (accuracy-coco.py reports the same as 'disagree on image_idx')"
            )
        blocks.append(block)
    if not blocks:
        return np.empty((0, FIELDS), np.float32)
    return np.concatenate(blocks)


def evaluate(
    detections: npt.NDArray[np.float32], logged: Sequence[int], truth: CocoGroundTruth
) -> dict[str, float]:
    """COCO bbox AP over the images of the *logged* qsl indices, as ``accuracy-coco.py`` computes it."""
    from pycocotools.cocoeval import COCOeval

    qsl = detections[:, 0].astype(np.int64)
    h = truth.heights[qsl]
    w = truth.widths[qsl]
    # float32 throughout, as accuracy-coco.py multiplies the decoded float32 values by the image's integer size.
    ymin, xmin = detections[:, 1] * h.astype(np.float32), detections[:, 2] * w.astype(np.float32)
    ymax, xmax = detections[:, 3] * h.astype(np.float32), detections[:, 4] * w.astype(np.float32)
    table = np.empty((len(detections), 7), np.float64)
    table[:, 0] = truth.image_ids[qsl]
    table[:, 1], table[:, 2] = xmin, ymin
    table[:, 3], table[:, 4] = xmax - xmin, ymax - ymin
    table[:, 5] = detections[:, 5]
    table[:, 6] = detections[:, 6].astype(np.int64)
    image_ids = sorted({int(i) for i in truth.image_ids[np.asarray(logged, np.int64)]})
    metrics = {"images": float(len(image_ids)), "detections": float(len(detections))}
    if not len(detections):
        return {"mAP": 0.0, "AP50": 0.0, "AP75": 0.0, **metrics}
    gt = truth.coco()
    unknown = set(np.unique(table[:, 6]).astype(int).tolist()) - set(gt.getCatIds())
    if unknown:
        raise AccuracyCoverageError(
            f"detections name category ids {sorted(unknown)[:10]} that {truth.source} does not define; check the "
            "task's labels= convention (coco or coco80)"
        )
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(table)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # COCOeval reports -1 where nothing can be measured (no ground truth at all); that is an AP of 0 here.
    stats = [max(float(s), 0.0) for s in ev.stats[:3]]
    return {"mAP": stats[0], "AP50": stats[1], "AP75": stats[2], **metrics}


#: The reference's three detectors (vision/classification_and_detection/python: main.py, coco.py, openimages.py).
SSD_MOBILENET = Detection()  # PostProcessCoco: num_detections:0 and COCO ids, boxes yxyx normalised
SSD_RESNET34 = Detection(  # PostProcessCocoOnnx ("coco-1200-onnx"): xyxy normalised, stop below 0.5, labels 1..80
    boxes="bboxes", scores="scores", classes="labels", count=None, box_order="xyxy", score_threshold=0.5,
    labels="coco80",
)
RETINANET = Detection(  # PostProcessOpenImagesRetinanet(False, 0.05, 800, 800): xyxy pixels of the 800x800 input
    boxes="boxes", scores="scores", classes="labels", count=None, box_order="xyxy", box_units="pixels",
    input_size=(800, 800), score_threshold=0.05,
)
