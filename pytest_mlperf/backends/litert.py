"""LiteRT (TFLite) backend: one interpreter per inference thread, its thread count and delegate set explicitly."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ai_edge_litert
import numpy as np
from ai_edge_litert import interpreter as lite

from pytest_mlperf.backends.base import (
    BackendOptions,
    as_feeds,
    fit_batch,
    local_model,
    option_error,
    warm_up,
    whole_option,
)
from pytest_mlperf.backends.options import check_options
from pytest_mlperf.datasets.base import Inputs
from pytest_mlperf.errors import ModelError
from pytest_mlperf.provenance import usable_cpus


class LiteRtBackend:
    """Wraps one ``ai_edge_litert`` Interpreter.

    Interpreters are not thread-safe, so ``thread_safe`` is False and the harness makes one backend per inference
    thread. A dynamic batch axis (shape signature -1) is resized to each batch; a fixed one is cut and padded.
    """

    name = "litert"
    thread_safe = False
    model_identity: str | None = None  # a local file: the harness records its sha256

    def __init__(self, model: Path | str, options: BackendOptions) -> None:
        self.version: str = ai_edge_litert.__version__
        self.options = options
        check_options("litert", options)
        model = local_model(model)
        self.threads = whole_option(options, "threads", options.intra_op_threads) or len(usable_cpus())
        self.delegate = options.option("delegate") or "xnnpack"
        delegates: list[Any] = []
        resolver = lite.OpResolverType.AUTO  # the built-in kernels, with XNNPACK applied as the default delegate
        if self.delegate == "none":
            resolver = lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        elif self.delegate != "xnnpack":
            delegates = [self._load_delegate(self.delegate)]
        try:
            self._interpreter = lite.Interpreter(
                model_path=str(model),
                num_threads=self.threads,
                experimental_delegates=delegates or None,
                experimental_op_resolver_type=resolver,
            )
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(
                f"litert could not load {model}: {exc}. The file may be truncated or not a .tflite model; "
                "delete it and provision it again"
            ) from exc
        self._model = model
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        self.input_names = tuple(str(d["name"]) for d in inputs)
        self.output_names = tuple(str(d["name"]) for d in outputs)
        self._input_index = {str(d["name"]): int(d["index"]) for d in inputs}
        self._input_shape = {str(d["name"]): tuple(int(x) for x in d["shape"]) for d in inputs}
        self._input_dtype = {str(d["name"]): np.dtype(d["dtype"]) for d in inputs}
        signatures = {str(d["name"]): tuple(int(x) for x in d["shape_signature"]) for d in inputs}
        self._signature = signatures
        self._outputs = [(str(d["name"]), int(d["index"])) for d in outputs]
        # A batch axis the model does not mark resizable (-1) is fixed: run() cuts and pads batches to that size,
        # and the harness clamps its batch ceiling to it.
        first = signatures[self.input_names[0]] if self.input_names else ()
        self.max_batch: int | None = first[0] if first and first[0] > 0 else None
        self._set = self._interpreter.set_tensor
        self._invoke = self._interpreter.invoke
        self._get = self._interpreter.get_tensor

    @staticmethod
    def _load_delegate(library: str) -> Any:
        try:  # check_options made sure the file exists
            return lite.load_delegate(library)
        except (OSError, ValueError, RuntimeError) as exc:
            raise option_error(
                "litert",
                "delegate",
                library,
                f"LiteRT could not load it as a delegate ({exc}); give the path of a TfLiteDelegate shared library "
                "built for this LiteRT, or delegate=xnnpack",
            ) from exc

    def run(self, inputs: Inputs) -> Mapping[str, np.ndarray]:
        return fit_batch(self._run_batch, inputs, self.max_batch)

    def _run_batch(self, inputs: Inputs) -> Mapping[str, np.ndarray]:
        feeds = as_feeds(inputs, self.input_names, self._model)
        resized = False
        for name, array in feeds.items():
            if array.shape != self._input_shape.get(name, array.shape):
                self._resize(name, array.shape)
                resized = True
        if resized:
            self._interpreter.allocate_tensors()
        for name, array in feeds.items():
            index = self._input_index.get(name)
            if index is None:
                raise ModelError(
                    f"{self._model} has no input {name!r}; its inputs are {', '.join(self.input_names)}"
                )
            try:
                self._set(index, array)
            except ValueError as exc:
                raise ModelError(
                    f"{self._model}: input {name!r} takes {self._input_dtype[name]} of shape "
                    f"{list(self._signature[name])} (-1 = any size), the dataset gave {array.dtype} of shape "
                    f"{list(array.shape)} ({exc}); make the dataset's preprocessing produce what the model takes"
                ) from exc
        self._invoke()
        return {name: self._get(index) for name, index in self._outputs}

    def _resize(self, name: str, shape: tuple[int, ...]) -> None:
        try:
            # strict: only the axes the model marks resizable (-1) may change.
            self._interpreter.resize_tensor_input(self._input_index[name], list(shape), strict=True)
        except (ValueError, RuntimeError, KeyError) as exc:
            raise ModelError(
                f"{self._model}: input {name!r} has shape {list(self._signature.get(name, ()))} (-1 = any size) and "
                f"cannot take shape {list(shape)} ({exc}); make the dataset's preprocessing produce what the model "
                "takes"
            ) from exc
        self._input_shape[name] = tuple(shape)

    def warmup(self, sample: Inputs) -> None:
        warm_up(self.run, sample, self.options)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "threads": self.threads,
            "delegate": self.delegate,
            "batch_size": self.options.batch_size,
            "batch_axis": "dynamic" if self.max_batch is None else self.max_batch,
        }
        if self.options.extra:
            out["options"] = dict(self.options.extra)
        return out

    def close(self) -> None:
        # The interpreter owns its tensors and delegate; dropping it frees them (LiteRT has no explicit close).
        for attr in ("_interpreter", "_set", "_invoke", "_get"):
            self.__dict__.pop(attr, None)
