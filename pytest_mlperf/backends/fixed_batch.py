"""Run a batch of any size on a model whose batch axis is fixed: cut into chunks, the last one padded."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from pytest_mlperf.datasets.base import Inputs


def fit_batch(
    run: Callable[[Inputs], Mapping[str, np.ndarray]], inputs: Inputs, size: int | None
) -> Mapping[str, np.ndarray]:
    """*run* the batch as it is when the model's batch axis is free (*size* None) or already fits, else in chunks."""
    if size is not None:
        n = len(inputs) if isinstance(inputs, np.ndarray) else len(next(iter(inputs.values())))
        if n != size:
            return run_in_fixed_batches(run, inputs, n, size)
    return run(inputs)


def run_in_fixed_batches(
    run: Callable[[Inputs], Mapping[str, np.ndarray]], inputs: Inputs, n: int, size: int
) -> Mapping[str, np.ndarray]:
    """Run *n* samples through *run*, which takes exactly *size*: chunks of *size*, the last one padded with copies
    of its final sample, and the padding's outputs dropped."""

    def chunk(array: np.ndarray, start: int) -> np.ndarray:
        part = array[start : start + size]
        if len(part) < size:
            part = np.concatenate([part, np.repeat(part[-1:], size - len(part), axis=0)])
        return part

    pieces: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, size):
        if isinstance(inputs, np.ndarray):
            part: Inputs = chunk(inputs, start)
        else:
            part = {name: chunk(array, start) for name, array in inputs.items()}
        for name, out in run(part).items():
            pieces.setdefault(name, []).append(out)
    return {name: np.concatenate(outs)[:n] for name, outs in pieces.items()}
