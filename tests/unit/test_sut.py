"""SUT strategies with a real dataset and a recording completion callback: batching, coverage, failure drain."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pytest_mlperf.backends.base import BackendOptions
from pytest_mlperf.backends.noop import NoopBackend
from pytest_mlperf.datasets.base import ArrayDataset, Classification
from pytest_mlperf.sut import InlineSUT, OfflineSUT, ServerSUT, SutOptions


class Recorder:
    """Collects what a SUT hands to LoadGen, copying rows as LoadGen would before the buffer goes away."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches: list[tuple[list[int], np.ndarray | None]] = []
        self.done = threading.Event()
        self.expected = 0

    def __call__(self, ids: Sequence[int], rows: Any) -> None:
        with self.lock:
            copied = None if rows is None else rows.copy() if isinstance(rows, np.ndarray) else [r.copy() for r in rows]
            self.batches.append((list(ids), copied))
            if sum(len(b[0]) for b in self.batches) >= self.expected:
                self.done.set()

    @property
    def ids(self) -> list[int]:
        return [i for ids, _ in self.batches for i in ids]


class Identity:
    """A backend whose output encodes its input, to check samples reach the right responses."""

    name = "identity"
    version = "0"

    def __init__(self, fail_on: float | None = None) -> None:
        self.fail_on = fail_on

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self.fail_on is not None and (batch[:, 0] == self.fail_on).any():
            raise RuntimeError(f"bad sample {self.fail_on}")
        logits = np.zeros((len(batch), 10), np.float32)
        logits[np.arange(len(batch)), batch[:, 0].astype(int) % 10] = 1
        return {"logits": logits}

    def warmup(self, sample: np.ndarray) -> None:
        return None


TOP1 = Classification(topk=1)


def dataset(n: int = 100) -> ArrayDataset:
    x = np.arange(n, dtype=np.float32)[:, None].repeat(2, axis=1)
    ds = ArrayDataset(x, np.arange(n) % 10, name="seq", task=Classification(topk=1))
    ds.load(list(range(n)))
    return ds


def test_inline_answers_each_query_with_its_own_sample() -> None:
    rec = Recorder()
    sut = InlineSUT(Identity(), dataset(), TOP1, rec, SutOptions())
    sut.issue([7], [3])
    sut.issue([8, 9], [14, 25])
    assert rec.batches[0][0] == [7] and rec.batches[0][1].tolist() == [[3]]
    assert rec.batches[1][1].tolist() == [[4], [5]]


def test_server_batches_never_exceed_batch_size_and_cover_every_query() -> None:
    rec = Recorder()
    rec.expected = 500
    sut = ServerSUT(Identity(), dataset(), TOP1, rec, SutOptions(batch_size=16, server_max_wait_us=2000, workers=2))
    sut.start()
    for qid in range(500):
        sut.issue([qid], [qid % 100])
    assert rec.done.wait(10)
    sut.stop()
    assert sorted(rec.ids) == list(range(500))
    assert max(len(ids) for ids, _ in rec.batches) <= 16
    assert max(len(ids) for ids, _ in rec.batches) > 1  # it did batch across queries
    for ids, rows in rec.batches:
        assert rows is not None
        assert rows[:, 0].tolist() == [(qid % 100) % 10 for qid in ids]


def test_offline_splits_one_query_across_workers() -> None:
    rec = Recorder()
    rec.expected = 1000
    sut = OfflineSUT(NoopBackend(BackendOptions()), dataset(), TOP1, rec, SutOptions(batch_size=64, workers=2))
    sut.start()
    sut.issue(list(range(1000)), [i % 100 for i in range(1000)])
    assert rec.done.wait(10)
    sut.stop()
    assert sorted(rec.ids) == list(range(1000))
    assert [len(ids) for ids, _ in rec.batches].count(64) == 15


def test_failure_is_kept_and_remaining_queries_are_drained_empty() -> None:
    rec = Recorder()
    sut = InlineSUT(Identity(fail_on=5), dataset(), TOP1, rec, SutOptions())
    for qid, idx in enumerate([1, 5, 6, 7]):
        sut.issue([qid], [idx])
    assert isinstance(sut.error, RuntimeError)
    assert str(sut.error) == "bad sample 5"
    assert [rows is None for _, rows in rec.batches] == [False, True, True, True]
    assert rec.ids == [0, 1, 2, 3]  # every query still answered, so LoadGen can finish
    assert sut.completed_samples == 1


class Ragged:
    """A task whose responses differ in length per sample: sample i answers i % 4 int32 values, all equal to i."""

    name = "ragged"
    metric = "count"
    higher_is_better = True

    def postprocess(self, outputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        column = next(iter(outputs.values()))[:, 0].astype(np.int32)
        return [np.full(int(v) % 4, v, np.int32) for v in column]

    def score(self, responses: Mapping[int, bytes], dataset: Any) -> dict[str, float]:
        return {"count": float(len(responses))}

    def accuracy_line(self, metrics: Mapping[str, float]) -> str:
        return f"count={metrics['count']:.0f}"


class Echo:
    """Returns its input as the one output."""

    name = "echo"
    version = "0"
    thread_safe = True
    model_identity = None

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return {"out": batch}


def test_ragged_responses_reach_loadgen_one_buffer_per_sample() -> None:
    rec = Recorder()
    rec.expected = 64
    sut = OfflineSUT(Echo(), dataset(), Ragged(), rec, SutOptions(batch_size=8))
    sut.start()
    sut.issue(list(range(64)), list(range(64)))
    assert rec.done.wait(10)
    sut.stop()
    assert sut.error is None
    answered = {qid: rows[j] for ids, rows in rec.batches for j, qid in enumerate(ids)}
    assert sorted(answered) == list(range(64))
    for qid, values in answered.items():
        assert values.tolist() == [qid] * (qid % 4)


class NotThreadSafe(Echo):
    """Records which threads used this instance; the harness must give each inference thread its own."""

    thread_safe = False

    def __init__(self) -> None:
        self.threads: set[int] = set()

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.threads.add(threading.get_ident())
        return {"out": np.zeros((len(batch), 1), np.float32)}


def test_each_worker_thread_uses_its_own_backend_instance() -> None:
    rec = Recorder()
    rec.expected = 2000
    backends = [NotThreadSafe(), NotThreadSafe()]
    sut = OfflineSUT(backends, dataset(), TOP1, rec, SutOptions(batch_size=4, workers=2))
    sut.start()
    sut.issue(list(range(2000)), [i % 100 for i in range(2000)])
    assert rec.done.wait(20)
    sut.stop()
    assert sorted(rec.ids) == list(range(2000))
    # Each instance is used by one thread at most (a worker may find the queue empty and use none), never shared.
    assert all(len(b.threads) <= 1 for b in backends)
    assert not backends[0].threads & backends[1].threads
    assert backends[0].threads | backends[1].threads
