"""Inference backends: the Backend protocol, and the built-in engines as the default ``pytest_mlperf_make_backend``.

Each engine's module is imported only when that engine is made, so the plugin never pays for engines it does not
use. Third-party engines implement the same hook in their own plugin (or a conftest.py); theirs run first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_mlperf.backends.base import Backend, BackendOptions

__all__ = ["BACKENDS", "Backend", "BackendOptions", "create_backend"]

#: The built-in engines; each maps to a module imported only when chosen.
BACKENDS = ("onnxruntime", "noop")


def create_backend(name: str, model: Path | str, options: BackendOptions) -> Backend:
    """Build the built-in backend called *name* for *model*, importing its engine only now."""
    if name == "onnxruntime":
        from pytest_mlperf.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(Path(model), options)
    if name == "noop":
        from pytest_mlperf.backends.noop import NoopBackend

        return NoopBackend(options)
    raise ValueError(f"unknown backend {name!r}; the built-in backends are: {', '.join(BACKENDS)}")


@pytest.hookimpl(trylast=True)
def pytest_mlperf_make_backend(config: pytest.Config, name: str, model: Any, options: BackendOptions) -> Any:
    return create_backend(name, model, options) if name in BACKENDS else None


@pytest.hookimpl(trylast=True)
def pytest_mlperf_backend_names(config: pytest.Config) -> list[str]:
    return list(BACKENDS)
