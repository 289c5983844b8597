"""ONNX Runtime backend: one InferenceSession with explicit threads, providers and graph optimisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pytest_mlperf.backends.base import BackendOptions
from pytest_mlperf.errors import ModelError
from pytest_mlperf.provenance import usable_cpus

_OPT_LEVELS = ("disable", "basic", "extended", "all")


class OnnxRuntimeBackend:
    """Wraps ``onnxruntime.InferenceSession``; ``run`` releases the GIL inside ORT so threads overlap."""

    name = "onnxruntime"

    def __init__(self, model: Path, options: BackendOptions) -> None:
        import onnxruntime as ort

        self.version = ort.__version__
        self.options = options
        if not model.is_file():
            raise ModelError(
                f"ONNX model not found: {model}. Check the path, or provision it first "
                "(see --mlperf-asset NAME=PATH)."
            )
        available = ort.get_available_providers()
        missing = [p for p in options.providers if p not in available]
        if missing:
            raise ModelError(
                f"execution provider(s) {', '.join(missing)} not available in this onnxruntime "
                f"({self.version}); available: {', '.join(available)}. Install the matching package "
                "(onnxruntime-gpu, onnxruntime-openvino) or drop them from --mlperf-providers."
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
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(
                f"{model} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); the image "
                "backends feed exactly one tensor. Wrap the model or write a custom Backend."
            )
        self.input_name: str = inputs[0].name
        self.output_name: str = self._session.get_outputs()[0].name
        self.intra_op_threads = so.intra_op_num_threads
        self.providers = tuple(self._session.get_providers())

    def run(self, batch: np.ndarray) -> np.ndarray:
        out = self._session.run([self.output_name], {self.input_name: batch})[0]
        return np.asarray(out)

    def warmup(self, sample: np.ndarray) -> None:
        for _ in range(max(1, self.options.warmup_runs)):
            self.run(sample)
