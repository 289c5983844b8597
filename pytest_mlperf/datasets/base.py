"""Query sample libraries: LoadGen's QSL callbacks over samples preloaded as contiguous arrays, one or many tensors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

# Re-exported: suites written before tasks existed import them from here.
from pytest_mlperf.tasks.base import AccuracyCoverageError
from pytest_mlperf.tasks.classification import Classification

if TYPE_CHECKING:
    from pytest_mlperf.tasks.base import Task

__all__ = [
    "AccuracyCoverageError", "ArrayDataset", "Classification", "Dataset", "Inputs", "PreloadedSamples",
    "dataset_digest",
]

#: A batch as the backend takes it: one array for a one-input model (the fast path), else tensors by input name.
Inputs = np.ndarray | Mapping[str, np.ndarray]


@runtime_checkable
class Dataset(Protocol):
    """What the harness needs from a dataset: LoadGen's QSL callbacks and batches of loaded samples.

    Scoring is the task's job (:mod:`pytest_mlperf.tasks`); a dataset may name its default task as ``task`` and
    carry its ground truth (``labels``, or whatever its task reads).
    """

    name: str
    total_count: int
    performance_count: int
    synthetic_inputs: bool

    def load(self, indices: Sequence[int]) -> None: ...

    def unload(self, indices: Sequence[int]) -> None: ...

    def batch(self, indices: Sequence[int]) -> Inputs:
        """Loaded samples stacked along axis 0, contiguous, ready for the backend."""
        ...

    def one(self, index: int) -> Inputs:
        """One loaded sample with a batch axis of 1, as a view (no copy)."""
        ...


def dataset_digest(dataset: Any) -> str | None:
    """The ``sha256:`` digest a dataset reports of the data it feeds (its ``digest`` attribute), recorded with
    each run so that two results files say whether they measured the same data; None when it cannot say."""
    digest = getattr(dataset, "digest", None)
    return digest if isinstance(digest, str) else None


def array_digest(arrays: Mapping[str, np.ndarray | None]) -> str:
    """sha256 over each named array's dtype, shape and bytes, in name order."""
    import hashlib

    h = hashlib.sha256()
    for key in sorted(arrays):
        value = arrays[key]
        if value is None:
            continue
        array = np.ascontiguousarray(value)
        h.update(f"{key}\0{array.dtype.str}\0{array.shape}\0".encode())
        h.update(array.data if array.dtype != object else repr(array.tolist()).encode())
    return "sha256:" + h.hexdigest()


class PreloadedSamples:
    """The loaded half of a QSL: the samples LoadGen asked for, in one contiguous block per tensor.

    Subclasses fill the blocks in ``load`` through :meth:`store`; batching, single-sample views and unloading are
    the same for every dataset. A one-tensor dataset keeps a bare array (no dict on the hot path).
    """

    name: str
    total_count: int
    task: Task | None = None

    def _init_block(self, sample_shape: Any, dtype: npt.DTypeLike | Mapping[str, npt.DTypeLike]) -> None:
        """*sample_shape*: a shape, or a mapping name -> shape (then *dtype* maps name -> dtype too)."""
        if isinstance(sample_shape, Mapping):
            dtypes: Mapping[str, npt.DTypeLike] = dtype  # type: ignore[assignment]
            self._named: dict[str, np.ndarray] | None = {
                key: np.empty((0, *shape), dtype=dtypes[key]) for key, shape in sample_shape.items()
            }
            self._loaded: np.ndarray = np.empty((0,))
        else:
            self._named = None
            self._loaded = np.empty((0, *sample_shape), dtype=dtype)  # type: ignore[arg-type]
        # row[i] is where sample i sits in the loaded block; -1 means "not loaded".
        self._row = np.full(self.total_count, -1, dtype=np.int64)

    def store(self, indices: np.ndarray, block: Inputs) -> None:
        """Make *block* (one row per entry of *indices*, in that order) the loaded samples."""
        if isinstance(block, Mapping):
            self._named = {key: np.ascontiguousarray(value) for key, value in block.items()}
        else:
            self._loaded = np.ascontiguousarray(block)
        self._row[:] = -1
        self._row[indices] = np.arange(len(indices))

    def unload(self, indices: Sequence[int]) -> None:
        self._row[np.asarray(indices, dtype=np.int64)] = -1

    def batch(self, indices: Sequence[int]) -> Inputs:
        rows = self._row[np.asarray(indices, dtype=np.int64)]
        if rows.min(initial=0) < 0:
            raise KeyError(f"dataset {self.name!r}: LoadGen asked for samples that were never loaded")
        if self._named is not None:
            return {key: value.take(rows, axis=0) for key, value in self._named.items()}
        return self._loaded.take(rows, axis=0)

    def one(self, index: int) -> Inputs:
        row = int(self._row[index])
        if row < 0:
            raise KeyError(f"dataset {self.name!r}: sample {index} was never loaded")
        if self._named is not None:
            return {key: value[row : row + 1] for key, value in self._named.items()}
        return self._loaded[row : row + 1]


class ArrayDataset(PreloadedSamples):
    """A QSL over in-memory (or memory-mapped) arrays; ``load`` copies the chosen rows into one block.

    *inputs* is one array (a one-input model) or a mapping input name -> array, each with one row per sample.
    *task* is the default task of ``mlperf.run`` for this dataset (classification when not given).
    """

    def __init__(
        self,
        inputs: Inputs,
        labels: np.ndarray | None = None,
        *,
        name: str = "arrays",
        performance_count: int | None = None,
        task: Task | None = None,
        synthetic_inputs: bool = False,
    ) -> None:
        arrays = dict(inputs) if isinstance(inputs, Mapping) else {"": inputs}
        if not arrays:
            raise ValueError(f"dataset {name!r}: no input tensors given")
        for key, value in arrays.items():
            label = f" {key!r}" if key else ""
            if not isinstance(value, np.ndarray):
                raise TypeError(
                    f"dataset {name!r}: input{label} is a {type(value).__name__}, not a numpy array; pass "
                    "np.asarray(...) with a numeric dtype"
                )
            # Engines take numbers: an object or string array fails deep inside one, far from its cause.
            if value.dtype.kind not in "biufc":
                raise ValueError(
                    f"dataset {name!r}: input{label} has dtype {value.dtype}, not numbers; convert it, e.g. "
                    "np.asarray(x, dtype=np.float32)"
                )
            if value.ndim < 2:
                raise ValueError(
                    f"dataset {name!r}: input{label} needs a sample axis and a feature axis, got {value.shape}"
                )
        counts = {key: len(value) for key, value in arrays.items()}
        if len(set(counts.values())) != 1:
            raise ValueError(f"dataset {name!r}: input tensors differ in sample count: {counts}")
        total = next(iter(counts.values()))
        if total == 0:
            raise ValueError(f"dataset {name!r}: no samples (its inputs have 0 rows); LoadGen needs at least one")
        if labels is not None and len(labels) != total:
            raise ValueError(f"dataset {name!r}: {total} inputs but {len(labels)} labels")
        if performance_count is not None and (isinstance(performance_count, bool) or performance_count < 1):
            raise ValueError(f"dataset {name!r}: performance_count {performance_count!r} must be 1 or more")
        self.name = name
        self.inputs = inputs
        self.labels = labels
        self.total_count = total
        self.performance_count = min(performance_count or self.total_count, self.total_count)
        self.task = task or Classification()
        self.synthetic_inputs = synthetic_inputs
        if isinstance(inputs, Mapping):
            self._init_block({k: v.shape[1:] for k, v in inputs.items()}, {k: v.dtype for k, v in inputs.items()})
        else:
            self._init_block(inputs.shape[1:], inputs.dtype)

    @cached_property
    def digest(self) -> str:
        """sha256 of the inputs and labels (computed once: large arrays take a moment)."""
        arrays = dict(self.inputs) if isinstance(self.inputs, Mapping) else {"": self.inputs}
        return array_digest({f"input:{k}": v for k, v in arrays.items()} | {"labels": self.labels})

    def load(self, indices: Sequence[int]) -> None:
        idx = np.asarray(indices, dtype=np.int64)
        if isinstance(self.inputs, Mapping):
            self.store(idx, {key: value[idx] for key, value in self.inputs.items()})
        else:
            self.store(idx, self.inputs[idx])
