"""Inference backends: the Backend protocol and a factory that imports each backend lazily."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_mlperf.backends.base import Backend, BackendOptions

__all__ = ["BACKENDS", "Backend", "BackendOptions", "create_backend"]

#: Names accepted by ``--mlperf-backend``; each maps to a module imported only when chosen.
BACKENDS = ("onnxruntime", "noop")


def create_backend(name: str, model: Path | str, options: BackendOptions) -> Backend:
    """Build the backend called *name* for *model*, importing its heavy dependency only now."""
    if name == "onnxruntime":
        from pytest_mlperf.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(Path(model), options)
    if name == "noop":
        from pytest_mlperf.backends.noop import NoopBackend

        return NoopBackend(options)
    raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")


def describe(options: BackendOptions) -> dict[str, Any]:
    """The backend options as recorded in the results JSON."""
    return {
        "providers": list(options.providers),
        "threads": options.intra_op_threads,
        "inter_op_threads": options.inter_op_threads,
        "batch_size": options.batch_size,
        "graph_optimization": options.graph_optimization,
    }
