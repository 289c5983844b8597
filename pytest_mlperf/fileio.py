"""Atomic writes, durable appends, streamed digests and checksum-verified artefacts, shared by every writer."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
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

    def make(path: Path) -> None:
        data = build()
        atomic_write(path, data)
        atomic_write(_sidecar(path), f"{hashlib.sha256(data).hexdigest()}  {path.name}\n".encode("ascii"))

    return _build_once(cache_dir, name, _intact, make, what)


def ensure_built_dir(cache_dir: Path, name: str, build: Callable[[Path], None], *, what: str) -> Path:
    """Return the directory ``cache_dir/name``, building it first when it is missing (a SavedModel, say).

    *build* fills a fresh temporary directory beside it, which is then renamed into place: a rename is atomic, so
    the name only ever holds a whole build, and a crash leaves a hidden temporary that the next build ignores. Put
    what decides the contents (a recipe hash) into *name*. The same file lock as :func:`ensure_built` makes
    parallel processes build it once.
    """

    def make(path: Path) -> None:
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        try:
            build(tmp)
            os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide shared caches from other users of a runner
            os.rename(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    return _build_once(cache_dir, name, Path.is_dir, make, what)


@contextlib.contextmanager
def bounded_lock(
    lock_path: Path,
    timeout_s: float,
    what: str,
    on_wait: Callable[[], None] | None = None,
    *,
    why: str | None = None,
    advice: str | None = None,
) -> Iterator[None]:
    """Hold the file lock *lock_path*, waiting at most *timeout_s* for the process that holds it.

    *what* names what the lock guards (``model 'm' (building x)``), for the message; *on_wait* is called once when
    the lock is taken, before waiting; *why* says where the bound comes from and *advice* what to do. The lock dies
    with its process, so only a live process (a hung one) can make the wait run out: by default the message says
    so, and which file to delete if none is running.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait()
        try:
            lock.acquire(timeout=timeout_s)
        except Timeout:
            bound = f" ({why})" if why else ""
            raise ProvisioningError(
                f"{what}: another process still holds {lock_path} after {timeout_s:.0f} s of waiting{bound}; "
                + (advice or "wait for it to finish or stop it (the lock is released when it ends); if no "
                   f"pytest-mlperf process is running, delete {lock_path}")
            ) from None
    try:
        yield
    finally:
        lock.release()


def _build_once(
    cache_dir: Path, name: str, ready: Callable[[Path], bool], make: Callable[[Path], None], what: str
) -> Path:
    parts = tuple(name.split("/"))
    path = Path(cache_dir).expanduser().joinpath(*parts)
    if ready(path):
        return path
    try:
        path = cache_file(Path(cache_dir), *parts)
    except ProvisioningError as exc:
        raise ProvisioningError(f"{what}: {exc}") from exc
    with bounded_lock(path.with_name(path.name + ".lock"), BUILD_LOCK_TIMEOUT_S, f"{what} (building {path})"):
        if ready(path):  # another process built it while this one waited
            return path
        try:
            make(path)
        except OSError as exc:
            raise ProvisioningError(
                f"{what}: cannot write {path} ({exc}); point --mlperf-cache-dir at a writable directory with "
                "free space"
            ) from exc
    return path
