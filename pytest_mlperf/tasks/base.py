"""The Task protocol: what a benchmark's outputs mean, how they become LoadGen responses, and how they are scored."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # numpy is imported by the code that runs a case, never by the plugin's import
    import numpy as np

    from pytest_mlperf.datasets.base import Dataset

    #: What a backend returns: named tensors, first axis = batch. A bare array is accepted as one unnamed output.
    Outputs = Mapping[str, np.ndarray] | np.ndarray
    #: What a task hands to LoadGen for a batch: a 2-D contiguous array, one fixed-size row per sample (the fast
    #: path), or one contiguous buffer per sample when responses differ in length (detections). Each buffer is
    #: referenced by this object until LoadGen has copied it.
    Responses = np.ndarray | Sequence[np.ndarray]


class AccuracyCoverageError(ValueError):
    """The accuracy log does not cover every sample; scoring a subset silently would inflate accuracy."""


@runtime_checkable
class Task(Protocol):
    """One kind of benchmark (classification, detection, question answering).

    ``metric`` names the primary accuracy metric among those :meth:`score` returns (fractions, e.g. ``top1``,
    ``mAP``, ``f1``); verdicts, comparisons, exports and the terminal table read that key and no other.
    """

    @property
    def name(self) -> str: ...

    @property
    def metric(self) -> str: ...

    @property
    def higher_is_better(self) -> bool: ...

    def postprocess(self, outputs: Outputs) -> Responses:
        """A batch of backend outputs -> one response per sample, in the order of the batch.

        A task with a true ``indexed_responses`` attribute (detection: each response starts with its sample's qsl
        index, as the MLPerf reference writes it) is called as ``postprocess(outputs, indices)`` by the SUT, with
        the batch's qsl indices; elsewhere (calibration) without them.
        """
        ...

    def score(self, responses: Mapping[int, bytes], dataset: Dataset) -> dict[str, float]:
        """Responses from ``mlperf_log_accuracy.json`` (qsl index -> bytes) -> metrics, ``metric`` among them.

        Raises :class:`AccuracyCoverageError` when the responses do not cover exactly the dataset's samples.
        """
        ...

    def accuracy_line(self, metrics: Mapping[str, float]) -> str:
        """The ``accuracy.txt`` line, as the MLCommons accuracy script of this task prints it."""
        ...

    # Optional, and so not a member of the protocol: ``score_subset(responses, dataset)`` scores responses that
    # cover only some samples, as the MLCommons script scores a partial log. TEST01 uses it to rescore the sampled
    # responses against the accuracy run's when the two differ; a task without it fails that comparison instead.


def describe(task: Task) -> dict[str, Any]:
    """The task as a run records it: its name, primary metric and direction."""
    return {"name": task.name, "metric": task.metric, "higher_is_better": bool(task.higher_is_better)}


def check_coverage(responses: Mapping[int, bytes], count: int) -> None:
    """Refuse responses that miss samples or name unknown ones: a partial log would score as a better model."""
    expected = set(range(count))
    missing = sorted(expected - set(responses))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise AccuracyCoverageError(
            f"accuracy log covers {count - len(missing)} of {count} samples; missing qsl indices: {shown}"
        )
    extra = sorted(set(responses) - expected)
    if extra:
        raise AccuracyCoverageError(f"accuracy log has responses for unknown qsl indices {extra[:10]}")


def check_subset(responses: Mapping[int, bytes], count: int) -> list[int]:
    """The sorted qsl indices of a partial log, refusing an empty one or one that names unknown samples."""
    if not responses:
        raise AccuracyCoverageError("the accuracy log has no responses to score")
    indices = sorted(responses)
    unknown = [i for i in indices if not 0 <= i < count]
    if unknown:
        raise AccuracyCoverageError(f"accuracy log has responses for unknown qsl indices {unknown[:10]}")
    return indices


def scored_indices(responses: Mapping[int, bytes], count: int, subset: bool) -> list[int]:
    """The sorted qsl indices to score: all *count* samples (the log must cover each), or with *subset* the ones a
    partial log holds (it must hold some and name no unknown sample)."""
    if subset:
        return check_subset(responses, count)
    check_coverage(responses, count)
    return list(range(count))


def labels_of(dataset: Dataset, task: str) -> Any:
    """The dataset's ground truth, or a clear refusal when it has none (synthetic or unlabelled inputs)."""
    if getattr(dataset, "synthetic_inputs", False):
        raise ValueError(f"dataset {dataset.name!r} is synthetic; its {task} accuracy would mean nothing")
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise ValueError(
            f"dataset {dataset.name!r} has no labels, so accuracy mode cannot score it; give it labels, or pass a "
            "task= whose score() brings its own ground truth"
        )
    return labels
