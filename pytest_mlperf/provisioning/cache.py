"""The cache root: its default location, its atomic creation with ``CACHEDIR.TAG``, and safe paths under it.

Every writer into the cache (the provisioner, built models, preprocessed datasets, the ``mlperf_cache_dir``
fixture) gets its directory from :func:`cache_subdir` or :func:`ensure_cache_dir`, so the tag is written whichever
part of pytest-mlperf happens to create the cache first. Importing this module costs only the standard library.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pytest_mlperf.errors import ProvisioningError

__all__ = ["CACHEDIR_TAG", "ENV_CACHE", "cache_file", "cache_subdir", "default_cache_dir", "ensure_cache_dir"]

ENV_CACHE = "PYTEST_MLPERF_CACHE"

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by pytest-mlperf.\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n"
)


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$PYTEST_MLPERF_CACHE``, else the user cache dir plus ``pytest-mlperf``.

    The user cache dir is ``%LOCALAPPDATA%`` on Windows (``...\\pytest-mlperf\\Cache``), else ``$XDG_CACHE_HOME``
    when it is absolute, else ``~/.cache``.
    """
    env = os.environ if env is None else env
    if env.get(ENV_CACHE):
        return Path(env[ENV_CACHE]).expanduser()
    if sys.platform == "win32" and env.get("LOCALAPPDATA"):
        return Path(env["LOCALAPPDATA"]) / "pytest-mlperf" / "Cache"
    xdg = env.get("XDG_CACHE_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "pytest-mlperf"


def _cannot_create(path: Path, exc: OSError) -> ProvisioningError:
    return ProvisioningError(
        f"cannot create the pytest-mlperf cache directory {path}: {exc.strerror or exc}; "
        f"point {ENV_CACHE} or --mlperf-cache-dir at a writable directory"
    )


def ensure_cache_dir(path: Path) -> Path:
    """Create the cache root atomically with CACHEDIR.TAG, like pytest's cacheprovider; return it.

    An existing directory is used as it is: tagging a directory we did not create could hide a user's data
    from their backups.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-pytest-mlperf-", dir=path.parent))
    except OSError as exc:
        raise _cannot_create(path, exc) from exc
    try:
        (tmp / "CACHEDIR.TAG").write_text(CACHEDIR_TAG, encoding="ascii")
        # mkdtemp's 0700 would hide a shared cache from the other users of a runner.
        tmp.chmod(0o777 & ~_umask())
        os.rename(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        # Losing the race to another process that created it first is fine.
        if not path.is_dir():
            raise _cannot_create(path, exc) from exc
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_names(root: Path, parts: tuple[str, ...]) -> None:
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\\" in part or Path(part).is_absolute():
            raise ValueError(f"{part!r} is not a plain file or directory name inside the cache {root}")


def cache_subdir(root: Path, *parts: str) -> Path:
    """``root/parts...``, created (and the root first, tagged); a part that could leave the root is refused.

    Each part is one plain name: not empty, not ``.`` or ``..``, without a path separator.
    """
    _check_names(root, parts)
    root = ensure_cache_dir(root)
    path = root.joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProvisioningError(
            f"cannot create {path} in the pytest-mlperf cache: {exc.strerror or exc}; "
            f"point {ENV_CACHE} or --mlperf-cache-dir at a writable directory"
        ) from exc
    return path


def cache_file(root: Path, *parts: str) -> Path:
    """The path of a file ``root/parts...`` whose directory :func:`cache_subdir` has made; the file is not made."""
    if not parts:
        raise ValueError(f"cache_file needs a file name inside the cache {root}")
    _check_names(root, parts)
    return cache_subdir(root, *parts[:-1]) / parts[-1]
