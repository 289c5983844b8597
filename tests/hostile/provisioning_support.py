"""The provisioner the hostile provisioning tests use: a per-test cache, quiet, one attempt, no environment."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pytest_mlperf.provisioning.manifest import load_catalog
from pytest_mlperf.provisioning.provision import Provisioner


def make_provisioner(tmp_path: Path, manifest: Path, **kwargs: Any) -> Provisioner:
    """A Provisioner on ``tmp_path/cache`` reading only *manifest*; *kwargs* override the quiet, short defaults."""
    kwargs.setdefault("timeout", (5.0, 10.0))
    kwargs.setdefault("retries", 1)
    kwargs.setdefault("backoff_s", 0.01)
    return Provisioner(
        tmp_path / "cache",
        manifests=load_catalog([manifest], packaged=False),
        env={},
        stream=kwargs.pop("stream", io.StringIO()),
        tty=False,
        **kwargs,
    )
