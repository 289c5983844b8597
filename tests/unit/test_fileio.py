"""Atomic writes and checksum-verified built artefacts: nothing partial or corrupt is ever trusted."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pytest_mlperf.errors import ProvisioningError
from pytest_mlperf.fileio import atomic_write, ensure_built, ensure_built_dir, file_sha256


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


def test_ensure_built_dir_builds_once_into_place_and_leaves_nothing_from_a_failed_build(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    calls: list[Path] = []

    def build(target: Path) -> None:
        calls.append(target)
        assert target.is_dir() and target.parent == cache / "tf" and target.name.startswith(".")  # a hidden temporary
        (target / "variables").mkdir()
        (target / "saved_model.pb").write_bytes(b"graph")

    def fail(target: Path) -> None:
        (target / "half.pb").write_bytes(b"half")
        raise RuntimeError("the build broke halfway")

    with pytest.raises(RuntimeError, match="halfway"):
        ensure_built_dir(cache, "tf/model-abc.savedmodel", fail, what="model")
    assert sorted(p.name for p in (cache / "tf").iterdir()) == ["model-abc.savedmodel.lock"]  # no half directory
    path = ensure_built_dir(cache, "tf/model-abc.savedmodel", build, what="model")
    assert path == cache / "tf" / "model-abc.savedmodel"
    assert (path / "saved_model.pb").read_bytes() == b"graph" and (path / "variables").is_dir()
    assert ensure_built_dir(cache, "tf/model-abc.savedmodel", build, what="model") == path
    assert len(calls) == 1
    assert (cache / "CACHEDIR.TAG").is_file()
    assert oct(path.stat().st_mode & 0o777) == oct(0o755)
