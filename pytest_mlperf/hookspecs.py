"""Hook specifications: the extension points other plugins implement (a conftest.py counts as a plugin).

Like pytest-xdist's ``pytest_xdist_make_scheduler``, the built-in behaviour is itself an implementation of these
hooks (``pytest_mlperf.backends`` makes the built-in engines), registered last so that a third-party plugin wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import pytest

    from pytest_mlperf.backends.base import Backend, BackendOptions

hookspec = pluggy.HookspecMarker("pytest")


@hookspec(firstresult=True)
def pytest_mlperf_make_backend(
    config: pytest.Config, name: str, model: Any, options: BackendOptions
) -> Backend | None:
    """Make the inference backend *name* for *model* (a local path, or any reference the engine understands, such
    as a server URL), or return None to let the next implementation try.

    ``options`` holds the engine-independent knobs and the ``--mlperf-backend-option KEY=VALUE`` pairs in
    ``options.extra``. The first non-None result is used. A name no implementation accepts is a usage error that
    lists the names every implementation declared through :func:`pytest_mlperf_backend_names`.
    """


def pytest_mlperf_backend_names(config: pytest.Config) -> list[str]:
    """Return the backend names this plugin can make, so that ``--mlperf-backend`` can list and check them."""
    raise NotImplementedError  # a specification: pluggy never calls its body


def pytest_mlperf_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Add to or change the ``machine`` section of the results JSON (an accelerator driver, a container image).

    Fields added here enter the baseline fingerprint only if the gate is told to use them; they are always
    recorded.
    """


def pytest_mlperf_update_results_json(config: pytest.Config, document: dict[str, Any]) -> None:
    """Change the results document just before it is written at the end of the session."""
