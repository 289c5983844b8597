"""Per-image tensors preprocessed once into the cache: what the image datasets (ImageNet, COCO) share."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pytest_mlperf.fileio import atomic_write

#: How long a process waits for another one preprocessing into the same cache folder.
PREPROCESS_LOCK_TIMEOUT_S = 3600.0
#: Missing or unreadable images listed by name in one error; the rest are counted.
LISTED = 50


def identity(path: Path) -> str:
    """A cache key of one image file: its resolved path, size and modification time."""
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:32]


def save_atomic(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.save(fh, array, allow_pickle=False))


def files_digest(prefix: str, root: Path, rows: Iterable[tuple[str, str]]) -> str:
    """sha256 of *prefix* (the preprocessing key and anything else that decides the data), then each row's
    relative file, its ground-truth text and the file's size: reading every image each session would cost more
    than the run, and provisioning already checked the archive's digest."""
    h = hashlib.sha256(f"{prefix}\0".encode())
    for rel, truth in rows:
        try:
            size = (root / rel).stat().st_size
        except OSError:
            size = -1  # prepare() reports it; the digest still differs from a complete copy's
        h.update(f"{rel}\0{truth}\0{size}\n".encode())
    return "sha256:" + h.hexdigest()


def tensor_paths(root: Path, files: Sequence[str], cache_root: Path) -> tuple[list[Path], list[str]]:
    """Each image's cached tensor path (``Path()`` where the image is missing), and the missing images."""
    missing: list[str] = []
    tensors: list[Path] = []
    for rel in files:
        path = root / rel
        try:
            ident = identity(path)
        except OSError as exc:
            missing.append(f"{path} ({exc.strerror or exc})")
            tensors.append(Path())
            continue
        tensors.append(cache_root / ident[:2] / f"{ident}.npy")
    return tensors, missing


def fill(
    todo: list[int],
    tensors: list[Path],
    sources: Sequence[Path],
    preprocess: Callable[[Path], np.ndarray],
    *,
    cache_root: Path,
    workers: int,
    what: str,
    before: Callable[[], None] = lambda: None,
) -> tuple[list[str], int]:
    """Preprocess the images *todo* into their tensors under a bounded lock on *cache_root* (*before* runs inside
    it); the unreadable images, and how many were preprocessed."""
    from pytest_mlperf.fileio import bounded_lock
    from pytest_mlperf.provisioning.cache import cache_subdir

    cache_subdir(cache_root.parents[1], *cache_root.parts[-2:])  # the root gets its CACHEDIR.TAG
    with bounded_lock(cache_root / ".lock", PREPROCESS_LOCK_TIMEOUT_S, what):
        todo = [i for i in todo if not tensors[i].is_file()]  # another worker may have done them meanwhile
        before()

        def one(index: int) -> str | None:
            path = sources[index]
            try:
                pixels = preprocess(path)
            except Exception as exc:  # Pillow raises OSError, ValueError, DecompressionBombError, ...
                return f"{path} ({type(exc).__name__}: {exc})"
            save_atomic(tensors[index], pixels)
            return None

        with ThreadPoolExecutor(max_workers=workers) as pool:
            problems = [p for p in pool.map(one, todo) if p is not None]
    return problems, len(todo) - len(problems)


def unusable(head: str, missing: list[str], unreadable: list[str]) -> str:
    """One message for every image that cannot be used: *head*, then the missing and the unreadable ones."""
    lines = [head]
    for title, items in (("missing", missing), ("unreadable", unreadable)):
        if items:
            lines.append(f"{len(items)} {title}:")
            lines.extend(f"  {item}" for item in items[:LISTED])
            if len(items) > LISTED:
                lines.append(f"  ... and {len(items) - LISTED} more")
    return "\n".join(lines)
