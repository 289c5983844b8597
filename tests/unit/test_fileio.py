"""Atomic writes and checksum-verified built artefacts: nothing partial or corrupt is ever trusted."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pytest_mlperf.errors import ProvisioningError
from pytest_mlperf.fileio import atomic_write, ensure_built, file_sha256


def test_atomic_write_replaces_whole_file_and_cleans_up_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "file.bin"
    atomic_write(target, b"old")

    def broken(fh: object) -> None:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert os.listdir(target.parent) == ["file.bin"]
    atomic_write(target, lambda fh: fh.write(b"new"))
    assert target.read_bytes() == b"new"


def test_file_sha256_streams(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_ensure_built_builds_once_and_rebuilds_corruption(tmp_path: Path) -> None:
    calls: list[int] = []

    def build() -> bytes:
        calls.append(1)
        return b"artefact-bytes"

    path = tmp_path / "cache" / "thing.onnx"
    assert ensure_built(tmp_path / "cache", "thing.onnx", build, what="thing") == path
    assert ensure_built(tmp_path / "cache", "thing.onnx", build, what="thing") == path
    assert len(calls) == 1
    path.write_bytes(b"artefact-bytez")  # same size, one byte flipped
    ensure_built(tmp_path / "cache", "thing.onnx", build, what="thing")
    assert len(calls) == 2
    assert path.read_bytes() == b"artefact-bytes"
    path.with_name("thing.onnx.sha256").unlink()  # a crash before the sidecar was written
    ensure_built(tmp_path / "cache", "thing.onnx", build, what="thing")
    assert len(calls) == 3


def test_ensure_built_names_the_artefact_when_the_cache_is_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ProvisioningError, match=r"thing: cannot create the pytest-mlperf cache directory .*"
                                                r"--mlperf-cache-dir"):  # fmt: skip
        ensure_built(blocker / "sub", "thing.onnx", lambda: b"x", what="thing")
