"""Batch plumbing the engine wrappers share: a batch's length, cutting it into parts, joining the parts' outputs."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from pytest_mlperf.backends.base import run_in_chunks
from pytest_mlperf.datasets.base import Inputs

__all__ = ["batch_length", "join_outputs", "run_in_fixed_batches", "split_batch"]


def batch_length(inputs: Inputs) -> int:
    """The number of samples in *inputs* (the first axis of its first tensor)."""
    return len(inputs) if isinstance(inputs, np.ndarray) else len(next(iter(inputs.values())))


def split_batch(inputs: Inputs, parts: int) -> list[Inputs]:
    """*inputs* cut along the batch axis into at most *parts* near-equal, non-empty views (no copy)."""
    n = batch_length(inputs)
    bounds = np.linspace(0, n, min(parts, n) + 1).astype(int)
    spans = list(itertools.pairwise(bounds.tolist()))
    if isinstance(inputs, np.ndarray):
        return [inputs[a:b] for a, b in spans]
    return [{name: array[a:b] for name, array in inputs.items()} for a, b in spans]


def join_outputs(pieces: Sequence[Mapping[str, np.ndarray]], keep: int | None = None) -> dict[str, np.ndarray]:
    """The parts' outputs joined along the batch axis, cut to the first *keep* rows (dropping padding)."""
    if len(pieces) == 1 and keep is None:
        return dict(pieces[0])
    joined = {name: np.concatenate([piece[name] for piece in pieces]) for name in pieces[0]}
    return joined if keep is None else {name: array[:keep] for name, array in joined.items()}


def run_in_fixed_batches(
    run: Callable[[Inputs], Mapping[str, np.ndarray]], inputs: Inputs, size: int
) -> dict[str, np.ndarray]:
    """Run a batch of any size on a model whose batch axis is fixed at *size*: chunks of *size*, the last one padded
    with copies of its final sample, and the padding's outputs dropped."""
    return run_in_chunks(run, inputs, size, pad=True)
