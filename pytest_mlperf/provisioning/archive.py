"""Extract tar and zip archives safely: every member must land inside the target directory."""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path

from pytest_mlperf.errors import ProvisioningError

__all__ = ["UnsafeArchiveError", "extract_archive"]

_REMEDY = (
    "the archive is corrupt or hostile; get it from a trusted source, or extract it yourself and point "
    "pytest-mlperf at the directory (--mlperf-asset NAME=DIR)"
)


class UnsafeArchiveError(ProvisioningError):
    """An archive member would be written outside the target, or is of a kind we never extract."""

    def __init__(self, archive: Path, member: str, reason: str) -> None:
        self.archive = archive
        self.member = member
        super().__init__(f"refusing to extract {archive}: member {member!r} {reason}; {_REMEDY}")


def _check_name(archive: Path, name: str, links: set[str], member: str | None = None) -> str:
    """Return the normalised member name, or raise if it is absolute, climbs with '..' or crosses a link."""
    shown = name if member is None else member
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(archive, name, "has an absolute path")
    if "\\" in name:
        raise UnsafeArchiveError(archive, name, "contains a backslash (a Windows path)")
    parts = name.split("/")
    if ".." in parts:
        raise UnsafeArchiveError(archive, name, "contains '..'")
    norm = posixpath.normpath(name)
    # A member below a symlink that the archive itself created would be written wherever that link points,
    # which a purely lexical check cannot see, so such members are refused outright.
    prefix = ""
    for part in norm.split("/")[:-1]:
        prefix = f"{prefix}/{part}" if prefix else part
        if prefix in links:
            raise UnsafeArchiveError(archive, shown, f"lies below the symlink {prefix!r} in the same archive")
    return norm


def _check_tar(archive: Path, tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members: list[tarfile.TarInfo] = []
    links: set[str] = set()
    for info in tar.getmembers():
        norm = _check_name(archive, info.name, links)
        if info.issym():
            target = info.linkname
            if target.startswith("/") or posixpath.isabs(target):
                raise UnsafeArchiveError(archive, info.name, f"is a symlink to the absolute path {target!r}")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(norm), target))
            if resolved == ".." or resolved.startswith("../"):
                raise UnsafeArchiveError(archive, info.name, f"is a symlink escaping the target ({target!r})")
            links.add(norm)
        elif info.islnk():
            target = info.linkname
            resolved = posixpath.normpath(target)
            if posixpath.isabs(target) or resolved == ".." or resolved.startswith("../"):
                raise UnsafeArchiveError(archive, info.name, f"is a hard link escaping the target ({target!r})")
            _check_name(archive, resolved, links, member=info.name)
        elif info.ischr() or info.isblk() or info.isfifo():
            raise UnsafeArchiveError(archive, info.name, "is a device or FIFO")
        elif not (info.isfile() or info.isdir()):
            raise UnsafeArchiveError(archive, info.name, f"has an unsupported tar type {info.type!r}")
        members.append(info)
    return members


def _check_zip(archive: Path, zf: zipfile.ZipFile) -> None:
    for info in zf.infolist():
        _check_name(archive, info.filename, set())
        # Only Unix-made zips carry a file type in the high bits, and writers may leave the type out entirely.
        mode = info.external_attr >> 16 if info.create_system == 3 else 0
        if stat.S_ISLNK(mode):
            # zipfile would write the link target as a small text file: silently wrong, so refuse instead.
            raise UnsafeArchiveError(archive, info.filename, "is a symlink (not supported in zip archives)")
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise UnsafeArchiveError(archive, info.filename, "is a device or special file")


def extract_archive(archive: Path, dest: Path, fmt: str) -> None:
    """Extract ``archive`` (tar, tar.gz or zip) to ``dest``, which must not exist yet.

    Members are checked before anything is written; extraction happens in a sibling temporary directory that
    is renamed into place only when complete, so ``dest`` is either absent or whole.
    """
    archive = Path(archive)
    dest = Path(dest)
    if dest.exists():
        raise ProvisioningError(f"cannot extract {archive}: target {dest} already exists; remove it and retry")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        if fmt in ("tar", "tar.gz"):
            try:
                with tarfile.open(archive, "r:gz" if fmt == "tar.gz" else "r:") as tar:
                    members = _check_tar(archive, tar)
                    if hasattr(tarfile, "data_filter"):
                        # Defence in depth: the stdlib filter also drops setuid bits and odd permissions.
                        tar.extractall(tmp, members=members, filter="data")
                    else:  # pragma: no cover - Python < 3.10.12 without extraction filters
                        tar.extractall(tmp, members=members)
            except tarfile.TarError as exc:
                raise ProvisioningError(
                    f"cannot extract {archive} as {fmt}: {exc}; the file is damaged or not a {fmt} archive, "
                    "delete it from the cache and provision again, or fix the manifest's 'archive' field"
                ) from exc
        elif fmt == "zip":
            try:
                with zipfile.ZipFile(archive) as zf:
                    _check_zip(archive, zf)
                    zf.extractall(tmp)
            except zipfile.BadZipFile as exc:
                raise ProvisioningError(
                    f"cannot extract {archive} as zip: {exc}; the file is damaged or not a zip archive, "
                    "delete it from the cache and provision again, or fix the manifest's 'archive' field"
                ) from exc
        else:
            raise ProvisioningError(
                f"cannot extract {archive}: unknown archive format {fmt!r}; use none, tar, tar.gz or zip"
            )
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
