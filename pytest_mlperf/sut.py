"""SUT strategies per scenario: inline SingleStream/MultiStream, a dynamic batcher for Server, a pool for Offline."""

from __future__ import annotations

import functools
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_mlperf.backends.base import Backend
from pytest_mlperf.datasets.base import Dataset
from pytest_mlperf.tasks.base import Task

if TYPE_CHECKING:
    from pytest_mlperf.tasks.base import Responses

#: Sends responses to LoadGen: query ids and their responses (a 2-D array, one row per id, or one buffer per id).
#: Provided by loadgen/run.py, the only module that may touch mlperf_loadgen. ``None`` completes the ids with
#: empty responses, used only to drain LoadGen after a failure that has already failed the case.
Complete = Callable[[Sequence[int], "Responses | None"], None]

_STOP = None


@dataclass(frozen=True)
class SutOptions:
    """Batching policy, shared by every scenario strategy."""

    batch_size: int = 32
    server_max_wait_us: int = 0
    workers: int = 1


class BaseSUT:
    """Common failure handling: the first exception is kept, later queries are drained so LoadGen can end.

    *backends* holds one instance shared by every thread, or (for engines that are not thread-safe) one per
    inference thread: worker *n* uses ``backends[n % len(backends)]``.
    """

    def __init__(
        self,
        backends: Backend | Sequence[Backend],
        dataset: Dataset,
        task: Task,
        complete: Complete,
        options: SutOptions,
    ) -> None:
        self.backends: tuple[Backend, ...] = (
            tuple(backends) if isinstance(backends, Sequence) else (backends,)
        )
        self.backend = self.backends[0]
        self.dataset = dataset
        self.task = task
        self._complete = complete
        self.options = options
        self.error: BaseException | None = None
        self.aborted = False
        self.completed_samples = 0
        # A task whose responses name their sample (detection: [qsl_idx, box, score, class]) gets the indices too.
        self._indexed = bool(getattr(task, "indexed_responses", False))
        self._setup()

    def _setup(self) -> None:
        """Per-strategy state (queues), made once before LoadGen can call ``issue``."""

    # LoadGen calls these two from its own threads.
    def issue(self, ids: Sequence[int], indices: Sequence[int]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        return None

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def abort(self) -> None:
        """Stop doing real work (Ctrl-C): answer everything at once so LoadGen finishes quickly."""
        self.aborted = True

    @property
    def failing(self) -> bool:
        return self.error is not None or self.aborted

    def _infer_and_complete(self, ids: Sequence[int], indices: Sequence[int], backend: Backend | None = None) -> None:
        if self.failing:
            self._complete(ids, None)
            return
        backend = backend or self.backend
        try:
            # A single sample is a view of the loaded block: no copy on the SingleStream hot path.
            inputs = self.dataset.one(indices[0]) if len(indices) == 1 else self.dataset.batch(indices)
            outputs = backend.run(inputs)
            rows = (
                self.task.postprocess(outputs, indices)  # type: ignore[call-arg]
                if self._indexed
                else self.task.postprocess(outputs)
            )
            if len(rows) != len(ids):
                raise RuntimeError(
                    f"backend {backend.name} with task {self.task.name} gave {len(rows)} responses for a batch "
                    f"of {len(ids)}"
                )
        except BaseException as exc:
            if self.error is None:
                self.error = exc
            self._complete(ids, None)
            return
        # rows stays referenced until QuerySamplesComplete returns inside _complete.
        self._complete(ids, rows)
        self.completed_samples += len(ids)


class InlineSUT(BaseSUT):
    """SingleStream and MultiStream: LoadGen waits for each query, so infer right in the issue callback."""

    def issue(self, ids: Sequence[int], indices: Sequence[int]) -> None:
        self._infer_and_complete(ids, indices)


class QueuedSUT(BaseSUT):
    """The issue callback only enqueues, O(1) under the GIL; threads started by ``start`` do the work."""

    def _setup(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Sequence[int], Sequence[int]] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def issue(self, ids: Sequence[int], indices: Sequence[int]) -> None:
        self._queue.put((ids, indices))

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _join(self) -> None:
        for thread in self._threads:
            thread.join()
        self._threads.clear()


class ServerSUT(QueuedSUT):
    """Dynamic batching: workers take what is queued, up to the batch size, waiting at most max-wait to fill it."""

    def start(self) -> None:
        for n in range(self.options.workers):
            self._spawn(functools.partial(self._work, self.backends[n % len(self.backends)]), f"mlperf-server-{n}")

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        self._join()

    def _work(self, backend: Backend) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        max_batch = self.options.batch_size
        max_wait = self.options.server_max_wait_us / 1e6
        while True:
            item = get()
            if item is _STOP:
                return
            ids, indices = list(item[0]), list(item[1])
            deadline = time.perf_counter() + max_wait if max_wait else 0.0
            stop_after = False
            while len(ids) < max_batch:
                try:
                    if max_wait:
                        remaining = deadline - time.perf_counter()
                        if remaining <= 0:
                            break
                        nxt = get(timeout=remaining)
                    else:
                        nxt = get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop_after = True
                    break
                ids.extend(nxt[0])
                indices.extend(nxt[1])
            # A burst can overshoot the batch size by one query's samples; split rather than exceed it.
            for start in range(0, len(ids), max_batch):
                self._infer_and_complete(
                    ids[start : start + max_batch], indices[start : start + max_batch], backend
                )
            if stop_after:
                return


class OfflineSUT(QueuedSUT):
    """Offline: one huge query, cut into batches (off LoadGen's thread) that a pool of workers runs and completes."""

    def start(self) -> None:
        self._batches: queue.SimpleQueue[tuple[Sequence[int], Sequence[int]] | None] = queue.SimpleQueue()
        self._spawn(self._split, "mlperf-offline-split")
        for n in range(self.options.workers):
            self._spawn(functools.partial(self._work, self.backends[n % len(self.backends)]), f"mlperf-offline-{n}")

    def stop(self) -> None:
        self._queue.put(_STOP)  # the splitter passes one stop per worker on
        self._join()

    def _split(self) -> None:
        size = self.options.batch_size
        while True:
            item = self._queue.get()
            if item is _STOP:
                for _ in range(self.options.workers):
                    self._batches.put(_STOP)
                return
            ids, indices = item
            for start in range(0, len(ids), size):
                self._batches.put((ids[start : start + size], indices[start : start + size]))

    def _work(self, backend: Backend) -> None:
        while True:
            item = self._batches.get()
            if item is _STOP:
                return
            self._infer_and_complete(item[0], item[1], backend)


def make_sut(
    scenario: str,
    backends: Backend | Sequence[Backend],
    dataset: Dataset,
    task: Task,
    complete: Complete,
    options: SutOptions,
) -> BaseSUT:
    """The strategy for *scenario*."""
    if scenario in ("SingleStream", "MultiStream"):
        return InlineSUT(backends, dataset, task, complete, options)
    if scenario == "Server":
        return ServerSUT(backends, dataset, task, complete, options)
    if scenario == "Offline":
        return OfflineSUT(backends, dataset, task, complete, options)
    raise ValueError(f"unknown scenario {scenario!r}")
