"""Extract tar and zip archives safely: every member inside the target, the expansion bounded, damage named."""

from __future__ import annotations

import errno
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pytest_mlperf.errors import ProvisioningError

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MIN_BYTES",
    "DEFAULT_RATIO",
    "MARGIN",
    "DamagedArchiveError",
    "ExtractLimits",
    "UnsafeArchiveError",
    "extract_archive",
]

_REMEDY = (
    "the archive is corrupt or hostile; get it from a trusted source, or extract it yourself and point "
    "pytest-mlperf at the directory (--mlperf-asset NAME=DIR)"
)
#: Without a declared ``expanded_size``, an archive may expand to this many times its own size ...
DEFAULT_RATIO = 100
#: ... but always to at least this many bytes (a small archive of text legitimately expands 10-50 times).
DEFAULT_MIN_BYTES = 64 << 20
#: Without a declared ``entries``, an archive may hold this many members.
DEFAULT_MAX_ENTRIES = 100_000
#: Declared values are exact in a correct manifest; the margin absorbs a later re-pack of the same data.
MARGIN = 0.10

# What a damaged compressed stream or archive index raises from the standard library, besides TarError and
# BadZipFile: truncated streams (EOFError), bad deflate data (zlib.error), unsupported or encrypted zip members
# (NotImplementedError, RuntimeError), a hard link to a missing member (KeyError), odd headers (ValueError).
_DAMAGE = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,
    RuntimeError,
    KeyError,
    ValueError,
)


_FILTER_ERRORS: tuple[type[Exception], ...] = (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()


class UnsafeArchiveError(ProvisioningError):
    """An archive member would be written outside the target, or is of a kind we never extract."""

    def __init__(self, archive: Path, member: str, reason: str) -> None:
        self.archive = archive
        self.member = member
        super().__init__(f"refusing to extract {archive}: member {member!r} {reason}; {_REMEDY}")


class DamagedArchiveError(ProvisioningError):
    """The archive cannot be read: truncated, corrupt, or not the format the manifest says."""

    def __init__(self, archive: Path, where: str | None, detail: str, fix: str) -> None:
        self.archive = archive
        self.where = where or "before its first entry"
        super().__init__(f"cannot extract {archive}: the archive is damaged {self.where} ({detail}); {fix}")


@dataclass(frozen=True)
class ExtractLimits:
    """The most bytes and members one extraction may produce, and where those numbers come from."""

    max_bytes: int
    max_entries: int
    bytes_from: str
    entries_from: str

    @classmethod
    def for_archive(
        cls, archive_size: int, expanded_size: int | None, entries: int | None, manifest: str
    ) -> ExtractLimits:
        """From the manifest's declared ``expanded_size``/``entries`` plus MARGIN, else the defaults."""
        if expanded_size is not None:
            max_bytes = int(expanded_size * (1 + MARGIN))
            bytes_from = f"'expanded_size: {expanded_size}' in {manifest} plus {MARGIN:.0%}"
        else:
            max_bytes = max(DEFAULT_RATIO * archive_size, DEFAULT_MIN_BYTES)
            bytes_from = (
                f"the default without 'expanded_size' in {manifest}: {DEFAULT_RATIO} times the archive's "
                f"{archive_size} bytes, at least {DEFAULT_MIN_BYTES >> 20} MiB"
            )
        if entries is not None:
            max_entries = int(entries * (1 + MARGIN)) + 1
            entries_from = f"'entries: {entries}' in {manifest} plus {MARGIN:.0%}"
        else:
            max_entries = DEFAULT_MAX_ENTRIES
            entries_from = f"the default without 'entries' in {manifest}"
        return cls(max_bytes, max_entries, bytes_from, entries_from)


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


def _check_symlink(archive: Path, info: tarfile.TarInfo, norm: str, links: set[str]) -> None:
    target = info.linkname
    if target.startswith("/") or posixpath.isabs(target):
        raise UnsafeArchiveError(archive, info.name, f"is a symlink to the absolute path {target!r}")
    # Walk the target as the file system would, one component at a time: a component that is itself a symlink
    # of this archive makes the lexical result meaningless (l1 -> ".", l2 -> "l1/l1/.." climbs out of the
    # target although "l1/.." normalises to "."), so a chain of links is refused rather than guessed at.
    current = posixpath.dirname(norm)
    for part in target.split("/"):
        if part in ("", "."):
            continue
        current = posixpath.normpath(posixpath.join(current, part)) if current else part
        if current == ".." or current.startswith("../"):
            raise UnsafeArchiveError(archive, info.name, f"is a symlink escaping the target ({target!r})")
        if current in links:
            raise UnsafeArchiveError(
                archive,
                info.name,
                f"is a symlink to {target!r}, which passes through the symlink {current!r} of the same archive: "
                "a chain of links can point outside the target, so it is refused as unsafe",
            )


def _too_many(archive: Path, limits: ExtractLimits, count: int) -> ProvisioningError:
    return ProvisioningError(
        f"refusing to extract {archive}: it holds more than {limits.max_entries} members (counted {count} so far; "
        f"the limit is {limits.entries_from}); if the archive is right, declare its member count as 'entries:' in "
        "the manifest, otherwise it is hostile or the wrong file: delete it from the cache"
    )


def _too_big(archive: Path, limits: ExtractLimits, total: int, member: str) -> ProvisioningError:
    return ProvisioningError(
        f"refusing to extract {archive}: it expands to more than {limits.max_bytes} bytes ({total} bytes by member "
        f"{member!r}; the limit is {limits.bytes_from}); if the archive is right, declare its extracted size as "
        "'expanded_size:' in the manifest, otherwise it is an archive bomb or the wrong file: delete it from the cache"
    )


def _check_tar(
    archive: Path, tar: tarfile.TarFile, limits: ExtractLimits, current: list[str | None]
) -> tuple[list[tarfile.TarInfo], int]:
    members: list[tarfile.TarInfo] = []
    links: set[str] = set()
    total = 0
    while (info := tar.next()) is not None:
        current[0] = f"after entry {info.name!r}"
        if len(members) >= limits.max_entries:
            raise _too_many(archive, limits, len(members) + 1)
        norm = _check_name(archive, info.name, links)
        if info.issym():
            _check_symlink(archive, info, norm, links)
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
        if info.isfile():
            total += info.size
            if total > limits.max_bytes:
                raise _too_big(archive, limits, total, info.name)
        members.append(info)
    return members, total


def _check_zip(archive: Path, zf: zipfile.ZipFile, limits: ExtractLimits) -> int:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise _too_many(archive, limits, len(infos))
    total = 0
    for info in infos:
        _check_name(archive, info.filename, set())
        # Only Unix-made zips carry a file type in the high bits, and writers may leave the type out entirely.
        mode = info.external_attr >> 16 if info.create_system == 3 else 0
        if stat.S_ISLNK(mode):
            # zipfile would write the link target as a small text file: silently wrong, so refuse instead.
            raise UnsafeArchiveError(archive, info.filename, "is a symlink (not supported in zip archives)")
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise UnsafeArchiveError(archive, info.filename, "is a device or special file")
        # zipfile never returns more than a member's declared file_size, so the declared sum bounds the output.
        total += info.file_size
        if total > limits.max_bytes:
            raise _too_big(archive, limits, total, info.filename)
    return total


def _check_space(archive: Path, where: Path, needed: int) -> None:
    free = shutil.disk_usage(where).free
    if needed > free:
        raise ProvisioningError(
            f"not enough disk space to extract {archive}: it expands to {needed} bytes but {where} has {free} bytes "
            "free; free some space, or point PYTEST_MLPERF_CACHE or --mlperf-cache-dir at a larger disk"
        )


def extract_archive(
    archive: Path,
    dest: Path,
    fmt: str,
    limits: ExtractLimits | None = None,
    *,
    fix: str = "delete it and provision again to download an intact copy",
) -> None:
    """Extract ``archive`` (tar, tar.gz or zip) to ``dest``, which must not exist yet.

    Members are checked before anything is written (names, links, kinds, and the totals against *limits*);
    extraction happens in a sibling temporary directory that is renamed into place only when complete, so
    ``dest`` is either absent or whole. A damaged archive raises :class:`DamagedArchiveError` naming the entry
    and *fix*; a hostile one :class:`UnsafeArchiveError`.
    """
    archive = Path(archive)
    dest = Path(dest)
    if limits is None:
        limits = ExtractLimits.for_archive(archive.stat().st_size, None, None, "the manifest")
    if dest.exists():
        raise ProvisioningError(f"cannot extract {archive}: target {dest} already exists; remove it and retry")
    if fmt not in ("tar", "tar.gz", "zip"):
        raise ProvisioningError(
            f"cannot extract {archive}: unknown archive format {fmt!r}; use none, tar, tar.gz or zip"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    current: list[str | None] = [None]
    try:
        try:
            if fmt == "zip":
                _extract_zip(archive, tmp, limits, current)
            else:
                _extract_tar(archive, tmp, fmt, limits, current)
        except UnsafeArchiveError:
            raise
        except _FILTER_ERRORS as exc:  # the stdlib's own check, behind ours: still a hostile member
            member = getattr(getattr(exc, "tarinfo", None), "name", None) or "?"
            raise UnsafeArchiveError(archive, member, f"was refused by Python's extraction filter ({exc})") from exc
        except _DAMAGE as exc:
            raise DamagedArchiveError(archive, current[0], _describe(exc, fmt), fix) from exc
        except OSError as exc:
            # A disk error carries an errno; a corrupt gzip or bz2 stream is an OSError without one.
            if exc.errno is not None and exc.errno not in (errno.EINVAL,):
                raise
            raise DamagedArchiveError(archive, current[0], _describe(exc, fmt), fix) from exc
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _describe(exc: BaseException, fmt: str) -> str:
    text = str(exc).strip() or "no detail"
    return f"{type(exc).__name__}: {text}; it is truncated, corrupt or not a {fmt} archive"


def _extract_tar(archive: Path, tmp: Path, fmt: str, limits: ExtractLimits, current: list[str | None]) -> None:
    with tarfile.open(archive, "r:gz" if fmt == "tar.gz" else "r:") as tar:
        members, total = _check_tar(archive, tar, limits, current)
        _check_space(archive, tmp, total)

        def recorded() -> Iterator[tarfile.TarInfo]:
            # extractall takes the next member only when it is about to write it: this names the damaged one.
            for info in members:
                current[0] = f"at entry {info.name!r}"
                yield info

        if hasattr(tarfile, "data_filter"):
            # Defence in depth: the stdlib filter also drops setuid bits and odd permissions.
            tar.extractall(tmp, members=recorded(), filter="data")
        else:  # pragma: no cover - Python < 3.10.12 without extraction filters
            tar.extractall(tmp, members=recorded())


def _extract_zip(archive: Path, tmp: Path, limits: ExtractLimits, current: list[str | None]) -> None:
    with zipfile.ZipFile(archive) as zf:
        total = _check_zip(archive, zf, limits)
        _check_space(archive, tmp, total)
        for info in zf.infolist():
            current[0] = f"at entry {info.filename!r}"
            zf.extract(info, tmp)
