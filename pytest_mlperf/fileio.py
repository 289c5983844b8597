"""Atomic writes, durable appends, streamed digests and checksum-verified artefacts, shared by every writer."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from pytest_mlperf.errors import ProvisioningError
from pytest_mlperf.provisioning.cache import cache_file

#: How long a second process waits for another one building the same artefact.
BUILD_LOCK_TIMEOUT_S = 600.0


def atomic_write(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write *data* (bytes, or a function writing to a binary file) so readers see the old or the whole new file.

    A temporary file in the same directory makes ``os.replace`` a rename on one file system; it is removed if
    anything fails, so a crash never leaves a partial file under the real name.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                data(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide shared caches from other users of a runner
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_durably(path: Path, data: bytes) -> None:
    """Append *data* with one write, then flush and fsync: once this returns, a crash cannot lose it.

    A kill during the write can leave *data* cut short at the end of the file, never mixed into earlier bytes,
    so a reader of appended lines only has to skip a torn last line.
    """
    with path.open("ab") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks so a multi-GB model never sits in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _intact(path: Path) -> bool:
    try:
        recorded = _sidecar(path).read_text(encoding="ascii").split()
        return bool(recorded) and path.is_file() and recorded[0] == file_sha256(path)
    except (OSError, UnicodeDecodeError):
        return False


def ensure_built(cache_dir: Path, name: str, build: Callable[[], bytes], *, what: str) -> Path:
    """Return ``cache_dir/name`` (*name* may be ``sub/file``), building it first when it is missing or does not
    match its ``.sha256`` sidecar.

    The cache root is made through :func:`~pytest_mlperf.provisioning.cache.cache_subdir`, so it carries
    ``CACHEDIR.TAG`` even when a built model is the first thing ever cached. Parallel processes (xdist workers)
    build it once: the others wait on a file lock, then reuse it. The sidecar is written last, so a crash between
    the two writes leaves a mismatch that the next call rebuilds.
    """
    from filelock import FileLock, Timeout

    parts = tuple(name.split("/"))
    path = Path(cache_dir).expanduser().joinpath(*parts)
    if _intact(path):
        return path
    try:
        path = cache_file(Path(cache_dir), *parts)
    except ProvisioningError as exc:
        raise ProvisioningError(f"{what}: {exc}") from exc
    lock = path.with_name(path.name + ".lock")
    try:
        with FileLock(str(lock), timeout=BUILD_LOCK_TIMEOUT_S):
            if _intact(path):  # another process built it while this one waited
                return path
            data = build()
            try:
                atomic_write(path, data)
                atomic_write(_sidecar(path), f"{hashlib.sha256(data).hexdigest()}  {path.name}\n".encode("ascii"))
            except OSError as exc:
                raise ProvisioningError(
                    f"{what}: cannot write {path} ({exc}); point --mlperf-cache-dir at a writable directory with "
                    "free space"
                ) from exc
    except Timeout as exc:
        raise ProvisioningError(
            f"{what}: {lock} is still locked after {BUILD_LOCK_TIMEOUT_S:.0f} s by another process building it; "
            "wait for it to finish, or delete the lock file if no pytest-mlperf process is running"
        ) from exc
    return path
