"""ONNX Runtime backend: one InferenceSession with explicit threads, providers and graph optimisation."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pytest_mlperf.backends.base import (
    BackendOptions,
    as_feeds,
    fit_batch,
    local_model,
    warm_up,
)
from pytest_mlperf.backends.options import check_options
from pytest_mlperf.datasets.base import Inputs
from pytest_mlperf.errors import ModelError
from pytest_mlperf.provenance import usable_cpus

_OPT_LEVELS = ("disable", "basic", "extended", "all")


class OnnxRuntimeBackend:
    """Wraps ``onnxruntime.InferenceSession``; ``run`` releases the GIL inside ORT so threads overlap."""

    name = "onnxruntime"
    thread_safe = True  # InferenceSession.run may be called concurrently
    model_identity: str | None = None  # a local file: the harness records its sha256

    def __init__(self, model: Path | str, options: BackendOptions) -> None:
        import onnxruntime as ort

        self.version = ort.__version__
        self.options = options
        check_options("onnxruntime", options)
        model = local_model(model)
        available = ort.get_available_providers()
        missing = [p for p in options.providers if p not in available]
        if missing:
            raise ModelError(
                f"execution provider(s) {', '.join(missing)} not available in this onnxruntime "
                f"({self.version}, package build {ort.get_device()}); available: {', '.join(available)}. Install "
                "the matching package (onnxruntime-gpu, onnxruntime-openvino) or drop them from --mlperf-providers."
            )
        if options.graph_optimization not in _OPT_LEVELS:
            raise ModelError(
                f"unknown graph optimisation {options.graph_optimization!r}; use one of {_OPT_LEVELS}"
            )
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.intra_op_threads or len(usable_cpus())
        so.inter_op_num_threads = max(1, options.inter_op_threads)
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[options.graph_optimization]
        try:
            self._session = ort.InferenceSession(str(model), so, providers=list(options.providers))
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            raise ModelError(
                f"onnxruntime could not load {model}: {exc}. The file may be truncated or not an ONNX "
                "model; delete it and provision it again."
            ) from exc
        # ORT falls back to the CPU when a requested provider fails to initialise (a driver mismatch): a GPU run
        # measured on the CPU must fail, not pass with CPU numbers.
        self.providers = tuple(self._session.get_providers())
        dropped = [p for p in options.providers if p not in self.providers]
        if dropped:
            raise ModelError(
                f"onnxruntime did not enable {', '.join(dropped)} for {model} (session runs on "
                f"{', '.join(self.providers)}); check the GPU driver and CUDA/cuDNN libraries that onnxruntime "
                f"{self.version} needs, or drop the provider from --mlperf-providers to measure the CPU on purpose"
            )
        inputs = self._session.get_inputs()
        self.input_names = tuple(i.name for i in inputs)
        #: (name, shape, type) of each input as the model declares it: named when a dataset does not match.
        self.input_spec = tuple((i.name, tuple(i.shape), i.type) for i in inputs)
        # A fixed batch axis (an export with batch 1, or 8): run() then cuts and pads batches to exactly that size,
        # and the harness clamps its batch ceiling to it.
        first = inputs[0].shape[0] if inputs and inputs[0].shape else None
        self.max_batch: int | None = first if isinstance(first, int) and first > 0 else None
        all_outputs = [o.name for o in self._session.get_outputs()]
        wanted = options.option("outputs")
        if wanted:
            names = [n.strip() for n in wanted.split(",") if n.strip()]
            unknown_out = [n for n in names if n not in all_outputs]
            if unknown_out:
                raise ModelError(
                    f"{model} has no output {unknown_out[0]!r}; its outputs are {', '.join(all_outputs)} "
                    "(--mlperf-backend-option outputs=NAME[,NAME...])"
                )
            self.output_names = tuple(names)
        else:
            self.output_names = tuple(all_outputs)
        self.intra_op_threads = so.intra_op_num_threads
        self._model = model
        # The one-input, one-output model is the common case: its run() builds two one-entry dicts and nothing else.
        self._run = self._session.run
        self._output_list = list(self.output_names)
        self._only_input = self.input_names[0] if len(self.input_names) == 1 else None
        self._only_output = self.output_names[0] if len(self.output_names) == 1 else None
        if self.max_batch is None:  # a dynamic batch axis needs no size check on the hot path
            self.run = self._run_batch  # type: ignore[method-assign]

    def run(self, inputs: Inputs) -> Mapping[str, np.ndarray]:
        return fit_batch(self._run_batch, inputs, self.max_batch)

    def _run_batch(self, inputs: Inputs) -> Mapping[str, np.ndarray]:
        if self._only_input is not None and isinstance(inputs, np.ndarray):
            outs = self._run(self._output_list, {self._only_input: inputs})
        else:
            outs = self._run(self._output_list, as_feeds(inputs, self.input_names, self._model))
        if self._only_output is not None:
            return {self._only_output: outs[0]}
        return dict(zip(self.output_names, outs, strict=True))

    def warmup(self, sample: Inputs) -> None:
        warm_up(self.run, sample, self.options)

    def describe(self) -> dict[str, Any]:
        return self.options.describe() | {"version": self.version}

    def close(self) -> None:
        # Dropping the session frees its arenas (and device memory); ORT has no explicit close.
        self.__dict__.pop("_session", None)
        self.__dict__.pop("_run", None)
