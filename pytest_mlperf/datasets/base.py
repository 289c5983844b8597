"""Query sample libraries: samples preloaded as one contiguous array, classification post-processing and scoring."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


@runtime_checkable
class Dataset(Protocol):
    """What the harness needs from a dataset: LoadGen's QSL callbacks, batching and scoring."""

    name: str
    total_count: int
    performance_count: int
    synthetic_inputs: bool

    def load(self, indices: Sequence[int]) -> None: ...

    def unload(self, indices: Sequence[int]) -> None: ...

    def batch(self, indices: Sequence[int]) -> np.ndarray:
        """Loaded samples stacked along axis 0, contiguous, ready for the backend."""
        ...

    def one(self, index: int) -> np.ndarray:
        """One loaded sample with a batch axis of 1, as a view (no copy)."""
        ...

    def postprocess(self, outputs: np.ndarray) -> np.ndarray:
        """Backend outputs -> one fixed-size response row per sample (what LoadGen logs)."""
        ...

    def score(self, responses: Mapping[int, bytes]) -> dict[str, float]:
        """Responses from mlperf_log_accuracy.json (qsl index -> bytes) -> metrics, e.g. ``top1``."""
        ...


class AccuracyCoverageError(ValueError):
    """The accuracy log does not cover every sample; scoring a subset silently would inflate accuracy."""


@dataclass(frozen=True)
class Classification:
    """Top-k class indices as int32 responses; ``label_offset`` maps model classes to dataset labels."""

    topk: int = 5
    label_offset: int = 0

    def postprocess(self, outputs: np.ndarray) -> np.ndarray:
        logits = outputs.reshape(len(outputs), -1)
        n, classes = logits.shape
        k = min(self.topk, classes)
        if k == 1:
            return np.ascontiguousarray(np.argmax(logits, axis=1).astype(np.int32)[:, None])
        if classes <= 128:  # on the SingleStream hot path one small sort beats argpartition + gathers
            return np.ascontiguousarray(np.argsort(-logits, axis=1)[:, :k].astype(np.int32))
        part = np.argpartition(logits, classes - k, axis=1)[:, classes - k :]
        rows = np.arange(n)[:, None]
        order = np.argsort(logits[rows, part], axis=1)[:, ::-1]
        return np.ascontiguousarray(part[rows, order].astype(np.int32))

    def score(self, responses: Mapping[int, bytes], labels: np.ndarray) -> dict[str, float]:
        expected = set(range(len(labels)))
        missing = sorted(expected - set(responses))
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise AccuracyCoverageError(
                f"accuracy log covers {len(expected) - len(missing)} of {len(labels)} samples; "
                f"missing qsl indices: {shown}"
            )
        extra = sorted(set(responses) - expected)
        if extra:
            raise AccuracyCoverageError(f"accuracy log has responses for unknown qsl indices {extra[:10]}")
        top1 = top5 = 0
        for idx in range(len(labels)):
            classes = np.frombuffer(responses[idx], dtype=np.int32) - self.label_offset
            if len(classes) == 0:
                raise AccuracyCoverageError(f"empty response for qsl index {idx}: the SUT answered nothing")
            label = int(labels[idx])
            top1 += int(classes[0] == label)
            top5 += int(label in classes[:5])
        n = len(labels)
        metrics = {"top1": top1 / n, "count": float(n)}
        if self.topk >= 5:
            metrics["top5"] = top5 / n
        return metrics


class PreloadedSamples:
    """The loaded half of a QSL: the samples LoadGen asked for, in one contiguous block, found by sample index.

    Subclasses fill the block in ``load`` through :meth:`store`; batching, single-sample views, unloading and
    post-processing are the same for every dataset.
    """

    name: str
    total_count: int
    task: Classification

    def _init_block(self, sample_shape: tuple[int, ...], dtype: npt.DTypeLike) -> None:
        self._loaded: np.ndarray = np.empty((0, *sample_shape), dtype=dtype)
        # row[i] is where sample i sits in the loaded block; -1 means "not loaded".
        self._row = np.full(self.total_count, -1, dtype=np.int64)

    def store(self, indices: np.ndarray, block: np.ndarray) -> None:
        """Make *block* (one row per entry of *indices*, in that order) the loaded samples."""
        self._loaded = np.ascontiguousarray(block)
        self._row[:] = -1
        self._row[indices] = np.arange(len(indices))

    def unload(self, indices: Sequence[int]) -> None:
        self._row[np.asarray(indices, dtype=np.int64)] = -1

    def batch(self, indices: Sequence[int]) -> np.ndarray:
        rows = self._row[np.asarray(indices, dtype=np.int64)]
        if rows.min(initial=0) < 0:
            raise KeyError(f"dataset {self.name!r}: LoadGen asked for samples that were never loaded")
        return self._loaded.take(rows, axis=0)

    def one(self, index: int) -> np.ndarray:
        row = int(self._row[index])
        if row < 0:
            raise KeyError(f"dataset {self.name!r}: sample {index} was never loaded")
        return self._loaded[row : row + 1]

    def postprocess(self, outputs: np.ndarray) -> np.ndarray:
        return self.task.postprocess(outputs)


class ArrayDataset(PreloadedSamples):
    """A QSL over in-memory (or memory-mapped) arrays; ``load`` copies the chosen rows into one block."""

    def __init__(
        self,
        inputs: np.ndarray,
        labels: np.ndarray | None = None,
        *,
        name: str = "arrays",
        performance_count: int | None = None,
        task: Classification | None = None,
        synthetic_inputs: bool = False,
    ) -> None:
        if inputs.ndim < 2:
            raise ValueError(f"dataset {name!r}: inputs need a sample axis and a feature axis, got {inputs.shape}")
        if labels is not None and len(labels) != len(inputs):
            raise ValueError(f"dataset {name!r}: {len(inputs)} inputs but {len(labels)} labels")
        self.name = name
        self.inputs = inputs
        self.labels = labels
        self.total_count = len(inputs)
        self.performance_count = min(performance_count or self.total_count, self.total_count)
        self.task = task or Classification()
        self.synthetic_inputs = synthetic_inputs
        self._init_block(inputs.shape[1:], inputs.dtype)

    def load(self, indices: Sequence[int]) -> None:
        idx = np.asarray(indices, dtype=np.int64)
        self.store(idx, self.inputs[idx])

    def score(self, responses: Mapping[int, bytes]) -> dict[str, float]:
        if self.labels is None:
            raise ValueError(f"dataset {self.name!r} has no labels, so accuracy mode cannot score it")
        if self.synthetic_inputs:
            raise ValueError(f"dataset {self.name!r} is synthetic; its accuracy means nothing")
        return self.task.score(responses, self.labels)
