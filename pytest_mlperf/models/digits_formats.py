"""The digits CNN in each engine's native format: which builder makes the file an engine loads.

The weights are trained once in numpy (:mod:`pytest_mlperf.models.digits`); each engine gets the same weights in its
own format, so the suite's accuracy must agree across engines. Engines that read ONNX directly share the ONNX file.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

#: Engine -> "module:function" whose ``function(cache_dir) -> Path`` returns the cached model file for that engine.
BUILDERS: dict[str, str] = {
    "onnxruntime": "pytest_mlperf.models.digits:ensure_digits_model",
    "openvino": "pytest_mlperf.models.digits:ensure_digits_model",
    "tvm": "pytest_mlperf.models.digits:ensure_digits_model",
    "tensorrt": "pytest_mlperf.models.digits:ensure_digits_model",
    "noop": "pytest_mlperf.models.digits:ensure_digits_model",
    "litert": "pytest_mlperf.models.digits_tflite:ensure_digits_tflite",
    "torch": "pytest_mlperf.models.digits_torch:ensure_digits_torch",
    "tensorflow": "pytest_mlperf.models.digits_tensorflow:ensure_digits_savedmodel",
}


def digits_model_for(engine: str, cache_dir: Path) -> Path:
    """The digits model file (or directory, for a SavedModel) that *engine* loads, built and cached on first use.

    An engine a plugin adds gets the ONNX file; it converts it itself if it needs another format.
    """
    target = BUILDERS.get(engine, BUILDERS["onnxruntime"])
    module, _, function = target.partition(":")
    build: Any = getattr(importlib.import_module(module), function)
    path: Path = build(cache_dir)
    return path
