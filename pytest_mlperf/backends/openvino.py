"""OpenVINO backend: the ONNX model compiled for a device, batches spread over an AsyncInferQueue's requests.

Under the THROUGHPUT hint a batch is cut into as many parts as the device has streams and the parts run at once on
the queue's requests, so even one harness thread keeps every stream busy (Offline, Server). Work that is not split
(the LATENCY hint, single samples) runs synchronously on a request of the calling thread's own.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from pytest_mlperf.backends.base import BackendOptions, local_model
from pytest_mlperf.backends.batching import batch_length, join_outputs, run_in_fixed_batches, split_batch
from pytest_mlperf.backends.options import check_options
from pytest_mlperf.datasets.base import Inputs
from pytest_mlperf.errors import ModelError
from pytest_mlperf.provenance import usable_cpus

#: precision=VALUE -> OpenVINO's INFERENCE_PRECISION_HINT; "default" leaves the device's own (bf16 on CPUs with it).
PRECISIONS = {"f32": "f32", "bf16": "bf16", "f16": "f16", "default": None}
#: Device names that stand for a choice among devices rather than one device.
_VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")


class _Pending:
    """One run() call's parts in flight: filled by the queue's callback thread, awaited by the caller."""

    def __init__(self, parts: int) -> None:
        self.outputs: list[dict[str, np.ndarray]] = [{} for _ in range(parts)]
        self.error: BaseException | None = None
        self._left = parts
        self._lock = threading.Lock()
        self.done = threading.Event()

    def finish(self, index: int, outputs: dict[str, np.ndarray] | None, error: BaseException | None) -> None:
        if outputs is not None:
            self.outputs[index] = outputs
        with self._lock:
            if error is not None and self.error is None:
                self.error = error
            self._left -= 1
            if self._left == 0:
                self.done.set()


class _Compiled:
    """One compiled model and its AsyncInferQueue (as many requests as the device asks for under its hint)."""

    def __init__(self, core: ov.Core, model: ov.Model, device: str, config: dict[str, Any], path: Path) -> None:
        try:
            self.compiled = core.compile_model(model, device, config)
        except RuntimeError as exc:
            raise ModelError(
                f"OpenVINO could not compile {path} for device {device} with {config}: {_first_line(exc)}. Check "
                "--mlperf-backend-option device=/precision=/hint= against what the device supports"
            ) from exc
        self.hint = str(self.compiled.get_property("PERFORMANCE_HINT"))
        self.requests = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.queue = ov.AsyncInferQueue(self.compiled, self.requests)
        self.queue.set_callback(self._on_done)
        self.output_names = tuple(output.get_any_name() for output in self.compiled.outputs)
        # AsyncInferQueue.start_async picks its idle request before taking it off the idle list, outside its lock:
        # two threads submitting at once can get the same request. Submissions go through this lock.
        self._submit = threading.Lock()
        # A request per calling thread for work that is not split: requests are not safe to share between threads.
        self._local = threading.local()

    def _on_done(self, request: ov.InferRequest, userdata: tuple[_Pending, int]) -> None:
        pending, index = userdata
        try:
            # The request is reused as soon as this returns: copy its outputs out.
            outputs = {
                name: np.array(request.get_output_tensor(i).data, copy=True)
                for i, name in enumerate(self.output_names)
            }
        except BaseException as exc:  # an exception escaping here would poison the queue for every later call
            pending.finish(index, None, exc)
            return
        pending.finish(index, outputs, None)

    def run(self, inputs: Inputs) -> dict[str, np.ndarray]:
        if self.requests == 1 or batch_length(inputs) == 1:
            return self._run_here(inputs)
        parts = split_batch(inputs, self.requests)
        pending = _Pending(len(parts))
        with self._submit:
            for index, part in enumerate(parts):
                # The caller's arrays outlive the wait below, so the requests may read them in place.
                self.queue.start_async(part, (pending, index), share_inputs=True)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return join_outputs(pending.outputs)

    def _run_here(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """One part: a synchronous infer on this thread's own request, with no queue, callback or event between the
        caller and the engine (the GIL is released while it runs)."""
        request: ov.InferRequest | None = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        outputs = request.infer(inputs, share_inputs=True)
        return {name: outputs[i] for i, name in enumerate(self.output_names)}

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"requests": self.requests, "streams": _property(self.compiled, "NUM_STREAMS")}
        threads = _property(self.compiled, "INFERENCE_NUM_THREADS")
        if threads is not None:
            out["threads"] = threads
        return out


def _first_line(exc: BaseException) -> str:
    """OpenVINO's messages stack one 'Exception from <source file>' line per layer: keep the lines that say why."""
    lines = [line for line in str(exc).splitlines() if line.strip() and not line.startswith("Exception from ")]
    return " ".join(lines) or str(exc)


def _property(compiled: ov.CompiledModel, key: str) -> Any:
    try:
        value = compiled.get_property(key)
    except RuntimeError:  # not every device reports every property
        return None
    return int(value) if isinstance(value, int) else str(value)


class OpenVinoBackend:
    """Wraps an OpenVINO ``CompiledModel``; ``run`` may be called from several threads at once."""

    name = "openvino"
    thread_safe = True  # each call submits to the shared AsyncInferQueue under a lock and waits for its own parts
    model_identity: str | None = None  # a local file: the harness records its sha256

    def __init__(self, model: Path | str, options: BackendOptions) -> None:
        model = local_model(model)
        self.version = ov.__version__
        self.options = options
        check_options("openvino", options)
        core = ov.Core()
        self.device = options.option("device", "CPU") or "CPU"
        available = list(core.available_devices)
        base = self.device.split(":")[0].split(".")[0]
        if base not in _VIRTUAL_DEVICES and self.device not in available and base not in available:
            raise ModelError(
                f"--mlperf-backend-option device={self.device}: OpenVINO {self.version} has no such device here; "
                f"available: {', '.join(available)} (or AUTO, MULTI:..., HETERO:...)"
            )
        precision = options.option("precision", "f32") or "f32"
        hint = options.option("hint", "auto") or "auto"
        self.hint = "auto" if hint.lower() == "auto" else hint.upper()
        try:
            network = core.read_model(str(model))
        except RuntimeError as exc:
            raise ModelError(
                f"OpenVINO could not read {model}: {_first_line(exc)}. The file may be truncated or in a format "
                "OpenVINO does not read (it reads ONNX and OpenVINO IR); delete it and provision it again"
            ) from exc
        supported = core.get_property(self.device, "SUPPORTED_PROPERTIES") if base not in _VIRTUAL_DEVICES else {}
        config: dict[str, Any] = {}
        if PRECISIONS[precision] is not None:
            config["INFERENCE_PRECISION_HINT"] = PRECISIONS[precision]
        if "INFERENCE_NUM_THREADS" in supported:
            # Respect the CPUs this process may use (pinning), as the onnxruntime backend does.
            config["INFERENCE_NUM_THREADS"] = options.intra_op_threads or len(usable_cpus())
        hints = ("LATENCY", "THROUGHPUT") if self.hint == "auto" else (self.hint,)
        self._compiled = {hint: _Compiled(core, network, self.device, config | {"PERFORMANCE_HINT": hint}, model)
                          for hint in hints}
        first = next(iter(self._compiled.values())).compiled
        # What the device actually runs, read back: a precision the device ignored must not pass as f32.
        self.precision = _precision(first)
        if PRECISIONS[precision] is not None and self.precision not in (None, PRECISIONS[precision]):
            raise ModelError(
                f"OpenVINO compiled {model} on {self.device} at precision {self.precision}, not the {precision} "
                "asked for; choose a precision the device supports, or precision=default to measure its own"
            )
        self.input_names = tuple(i.get_any_name() for i in first.inputs)
        self.output_names = tuple(o.get_any_name() for o in first.outputs)
        self._inputs = {i.get_any_name(): i for i in first.inputs}
        shape = first.inputs[0].get_partial_shape() if first.inputs else None
        # A fixed batch axis: run() cuts and pads batches to exactly that size, and the harness clamps to it.
        self.max_batch: int | None = (
            shape[0].get_length() if shape is not None and shape.rank.is_static and shape[0].is_static else None
        )
        self._model = model
        self._batched = self._compiled.get("THROUGHPUT") or self._compiled["LATENCY"]
        self._single = self._compiled.get("LATENCY") or self._batched

    def run(self, inputs: Inputs) -> Mapping[str, np.ndarray]:
        self._check(inputs)
        n = batch_length(inputs)
        if self.max_batch is not None and n != self.max_batch:
            return run_in_fixed_batches(self._batched.run, inputs, self.max_batch)
        return (self._single if n == 1 else self._batched).run(inputs)

    def _check(self, inputs: Inputs) -> None:
        """Refuse inputs the model cannot take before they reach the queue: a request that fails while being set up
        is never handed back to it."""
        if isinstance(inputs, np.ndarray):
            if len(self.input_names) != 1:
                raise ModelError(
                    f"{self._model} has {len(self.input_names)} inputs ({', '.join(self.input_names)}) but the "
                    "dataset gives one array; give the dataset a mapping of input name -> array"
                )
            named: Mapping[str, np.ndarray] = {self.input_names[0]: inputs}
        else:
            named = inputs
            missing = [name for name in self.input_names if name not in named]
            if missing:
                raise ModelError(
                    f"{self._model} needs inputs {', '.join(self.input_names)}; the dataset gave "
                    f"{', '.join(named)}"
                )
        for name, array in named.items():
            port = self._inputs.get(name)
            if port is None:
                raise ModelError(f"{self._model} has no input {name!r}; its inputs are {', '.join(self.input_names)}")
            want = port.get_element_type().to_dtype()
            if array.dtype != want or not port.get_partial_shape().compatible(ov.PartialShape(list(array.shape))):
                raise ModelError(
                    f"{self._model} input {name!r} takes {want} {port.get_partial_shape()}, the dataset gave "
                    f"{array.dtype} {list(array.shape)}; fix the dataset's preprocessing"
                )

    def warmup(self, sample: Inputs) -> None:
        batch: Inputs = (
            np.repeat(sample, self._batched.requests, axis=0)
            if isinstance(sample, np.ndarray)
            else {name: np.repeat(array, self._batched.requests, axis=0) for name, array in sample.items()}
        )
        for _ in range(max(1, self.options.warmup_runs)):
            self.run(sample)
            if self._batched is not self._single:
                self.run(batch)

    def describe(self) -> dict[str, Any]:
        base = self.options.describe()
        for key in ("providers", "graph_optimization", "inter_op_threads"):  # onnxruntime's, not read here
            base.pop(key, None)
        return base | {
            "version": self.version,
            "device": self.device,
            "precision": self.precision,
            "hint": self.hint,
            "compiled": {hint: compiled.describe() for hint, compiled in self._compiled.items()},
        }

    def close(self) -> None:
        for compiled in self._compiled.values():
            compiled.queue.wait_all()
        self._compiled = {}


def _precision(compiled: ov.CompiledModel) -> str | None:
    try:
        value = compiled.get_property("INFERENCE_PRECISION_HINT")
    except RuntimeError:
        return None
    name = value.get_type_name() if isinstance(value, ov.Type) else str(value)
    return None if name in ("undefined", "dynamic", "") else name
