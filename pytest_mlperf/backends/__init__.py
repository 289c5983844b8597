"""Inference backends: the Backend protocol, and the built-in engines as the default ``pytest_mlperf_make_backend``.

Each engine's module is imported only when that engine is made, so the plugin never pays for engines it does not
use. Third-party engines implement the same hook in their own plugin (or a conftest.py); theirs run first.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_mlperf.backends.base import Backend, BackendOptions
from pytest_mlperf.errors import ModelError

__all__ = ["BACKENDS", "ENGINES", "Backend", "BackendOptions", "Engine", "create_backend", "installed_engines"]


@dataclass(frozen=True)
class Engine:
    """A built-in engine: the module and class that wrap it, the package it needs, and the extra that installs it."""

    name: str
    module: str  # our wrapper, imported only when the engine is made
    cls: str
    requires: str | None  # the engine's import name; None: nothing beyond pytest-mlperf itself
    extra: str | None  # pip install "pytest-mlperf[<extra>]"


#: The built-in engines, in the order ``--mlperf-backends installed`` lists them.
ENGINES: dict[str, Engine] = {
    engine.name: engine
    for engine in (
        Engine("onnxruntime", "pytest_mlperf.backends.onnxruntime", "OnnxRuntimeBackend", "onnxruntime", None),
        Engine("openvino", "pytest_mlperf.backends.openvino", "OpenVinoBackend", "openvino", "openvino"),
        Engine("litert", "pytest_mlperf.backends.litert", "LiteRtBackend", "ai_edge_litert", "litert"),
        Engine("torch", "pytest_mlperf.backends.torch", "TorchBackend", "torch", "torch"),
        Engine("tensorflow", "pytest_mlperf.backends.tensorflow", "TensorFlowBackend", "tensorflow", "tensorflow"),
        Engine("tvm", "pytest_mlperf.backends.tvm", "TvmBackend", "tvm", "tvm"),
        Engine("tensorrt", "pytest_mlperf.backends.tensorrt", "TensorRtBackend", "tensorrt", "tensorrt"),
        Engine("noop", "pytest_mlperf.backends.noop", "NoopBackend", None, None),
        # A model server over the Open Inference Protocol; urllib3 ships with pytest (through requests) anyway.
        Engine("remote", "pytest_mlperf.backends.remote", "RemoteBackend", "urllib3", "remote"),
    )
}
#: Names accepted by --mlperf-backend and --mlperf-backends (plugins add theirs through the hook).
BACKENDS = tuple(ENGINES)


def is_installed(name: str) -> bool:
    """Whether the engine's package can be imported here (without importing it)."""
    engine = ENGINES[name]
    if engine.requires is None:
        return True
    try:
        return importlib.util.find_spec(engine.requires) is not None
    except (ImportError, ValueError):
        return False


#: Engines chosen by the model reference itself (a server URL), not only by --mlperf-backend(s); their names are
#: always option prefixes (``remote.url=...``).
URL_ENGINES = ("remote",)


def installed_engines() -> list[str]:
    """The built-in engines whose packages are importable, in ENGINES order (noop, which measures nothing, and
    remote, which needs a server, left out)."""
    return [name for name in ENGINES if name not in ("noop", *URL_ENGINES) and is_installed(name)]


def engine_for(model: object, engine: str) -> str:
    """The engine that runs *model*: ``remote`` for a server URL (``kserve-v2+http(s)://...``), else *engine*."""
    return "remote" if isinstance(model, str) and model.startswith("kserve-v2+") else engine


def missing_engine_message(name: str) -> str:
    engine = ENGINES[name]
    return (
        f"the {name} backend needs the {engine.requires!r} package, which is not installed here; install it with "
        f"pip install \"pytest-mlperf[{engine.extra}]\""
    )


def create_backend(name: str, model: Path | str, options: BackendOptions) -> Backend:
    """Build the built-in backend called *name* for *model*, importing its engine only now."""
    engine = ENGINES.get(name)
    if engine is None:
        raise ValueError(f"unknown backend {name!r}; the built-in backends are: {', '.join(BACKENDS)}")
    if not is_installed(name):
        raise ModelError(missing_engine_message(name))
    cls: Any = getattr(importlib.import_module(engine.module), engine.cls)
    made: Backend = cls(model, options) if name != "noop" else cls(options)
    return made


@pytest.hookimpl(trylast=True)
def pytest_mlperf_make_backend(config: pytest.Config, name: str, model: Any, options: BackendOptions) -> Any:
    return create_backend(name, model, options) if name in ENGINES else None


@pytest.hookimpl(trylast=True)
def pytest_mlperf_backend_names(config: pytest.Config) -> list[str]:
    return list(BACKENDS)
