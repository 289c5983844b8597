"""Turn a manifest entry into a verified local path: cache, download, checksum, lock, mirror, offline, overrides.

Cache layout (under the cache root, which carries ``CACHEDIR.TAG``)::

    assets/<name>/<filename>              verified file (only ever placed by an atomic rename after checking)
    assets/<name>/<filename>.stamp.json   size, mtime_ns and digests of that file: a hit needs no re-hash
    assets/<name>/<filename>.part         partial download, resumed with HTTP Range (never trusted as is)
    assets/<name>/<filename>.d/           extracted archive (the archive itself is deleted after extraction)
    overrides/<key>.stamp.json            stamps of user-supplied files and package members, same purpose
    locks/<name>.lock                     one process provisions an asset; the others wait, then hit the cache

Local overrides (``--mlperf-asset NAME=PATH`` or ``PYTEST_MLPERF_ASSET_<NAME>=PATH``): a file is checked against the
entry's checksum (stamped, so not re-hashed on every run) and used in place; an archive file is then extracted into
the cache; a directory is used as it is, after checking the entry's ``required_files`` (a tree has no one checksum).
A file that differs from the manifest is refused: declare it in your own manifest with its sha256 instead.

``AssetUnavailable`` means "cannot be had here" (offline, no public download, package not installed, no source
reachable) and should become a skip; every other ``ProvisioningError`` is a real failure (404, 500, timeout,
checksum mismatch, full disk, unsafe archive, wrong local path).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TextIO

import filelock
import requests
import urllib3

from pytest_mlperf.errors import MLPerfWarning, ProvisioningError
from pytest_mlperf.provisioning.archive import DamagedArchiveError, ExtractLimits, extract_archive
from pytest_mlperf.provisioning.cache import (
    ENV_CACHE,
    cache_file,
    cache_subdir,
    default_cache_dir,
    ensure_cache_dir,
)
from pytest_mlperf.provisioning.inputs import (
    DEFAULT_DOWNLOAD_MIN_RATE,
    DEFAULT_DOWNLOAD_TIMEOUT_S,
    ENV_MIRROR,
    ENV_OFFLINE,
    asset_env_var,
    check_override_names,
    env_asset_overrides,
    env_flag,
    parse_asset_spec,
    parse_mirror,
)
from pytest_mlperf.provisioning.inputs import RATE_WINDOW_S as _RATE_WINDOW_S
from pytest_mlperf.provisioning.manifest import Asset, Catalog, load_catalog, user_entry_manifest
from pytest_mlperf.redact import redact, redact_url

__all__ = [
    "AssetUnavailable",
    "DownloadFailed",
    "Provisioned",
    "Provisioner",
    "SourceFailure",
    "file_digests",
    "tree_digests",
]

_CHUNK = 1 << 20
_STAMP_VERSION = 1
_USER_AGENT = "pytest-mlperf (+https://pypi.org/project/pytest-mlperf/)"
Origin = Literal["cache", "download", "override", "package"]
FailureKind = Literal["unreachable", "timeout", "http", "interrupted", "checksum", "size", "slow"]
#: Without a declared ``size:``, no download writes more than this (the largest packaged asset is about 1 GB).
MAX_UNDECLARED_BYTES = 16 << 30
#: Besides the download deadline: how long a waiter gives another process that provisions the same asset.
_LOCK_GRACE_S = 600.0
#: 4xx statuses that are not "this request is refused": not found (its own advice) and "come back later".
_NOT_REFUSALS = (404, 408, 410, 429)


class AssetUnavailable(ProvisioningError):
    """The asset cannot be had on this machine as configured; the case should be skipped, not failed.

    ``str(exc)`` is the reason followed by ``how_to_provide``, so it works as a skip reason as it is.
    """

    def __init__(self, asset: str, reason: str, how_to_provide: str) -> None:
        self.asset = asset
        self.reason = reason
        self.how_to_provide = how_to_provide
        super().__init__(f"{reason}\n{how_to_provide}")


@dataclass(frozen=True)
class SourceFailure:
    """Why one URL did not yield the asset."""

    url: str
    kind: FailureKind
    detail: str
    attempts: int
    status: int | None = None  # the HTTP status, for kind "http"
    explain: str = ""  # what the failure means, e.g. "the mirror has no x.onnx at that path"


class DownloadFailed(ProvisioningError):
    """Every source of an asset failed; ``failures`` says how each one did."""

    def __init__(self, asset: str, message: str, failures: tuple[SourceFailure, ...]) -> None:
        self.asset = asset
        self.failures = failures
        super().__init__(message)


@dataclass(frozen=True)
class Provisioned:
    """A provisioned asset: where it is and what it hashes to (digests of the archive for extracted assets)."""

    name: str
    path: Path
    sha256: str | None
    md5: str | None
    origin: Origin
    #: For extracted archives: sha256 of the tree's file listing (relative path, size, sha256 per file).
    tree_sha256: str | None = None
    #: Whether the digests were computed from the bytes in this call (a download, --mlperf-verify-cache, a changed
    #: file) rather than read from the stamp written when the file was verified.
    rehashed: bool = False


class _AttemptFailed(Exception):
    def __init__(
        self, kind: FailureKind, detail: str, retry: bool, status: int | None = None, explain: str = ""
    ) -> None:
        super().__init__(detail)
        self.kind: FailureKind = kind
        self.detail = detail
        self.retry = retry
        self.status = status
        self.explain = explain
        self.attempts = 1


def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) of a file in one pass."""
    sha = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            sha.update(view[:n])
            md5.update(view[:n])
    return sha.hexdigest(), md5.hexdigest()


def tree_digests(root: Path) -> dict[str, Any]:
    """Every file and symlink under *root*: ``{"files": {relpath: [size, sha256]}, "links": {relpath: target}}``.

    Written when an archive is extracted, so that ``--mlperf-verify-cache`` can tell a changed, added or removed
    file in the extracted tree from the tree the archive produced.
    """
    files: dict[str, list[Any]] = {}
    links: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(filenames) + [d for d in dirnames if (base / d).is_symlink()]:
            path = base / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                links[rel] = os.readlink(path)
            elif path.is_file():
                files[rel] = [path.stat().st_size, file_digests(path)[0]]
    return {"files": files, "links": links}


def _listing_sha256(tree: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()


def _tree_changes(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """What differs between two :func:`tree_digests` results, one phrase per path, sorted."""
    out: list[str] = []
    for key, what in (("files", "file"), ("links", "symlink")):
        old, new = recorded.get(key, {}), now.get(key, {})
        out += [f"{what} {p!r} is missing" for p in sorted(set(old) - set(new))]
        out += [f"{what} {p!r} was added" for p in sorted(set(new) - set(old))]
        out += [f"{what} {p!r} changed" for p in sorted(set(old) & set(new)) if list(old[p]) != list(new[p])]
    return out


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Atomic best-effort write: a failure only costs a re-hash next time, so it warns instead of raising."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        warnings.warn(
            MLPerfWarning(f"pytest-mlperf could not write {path} ({exc.strerror or exc}); the next run re-hashes"),
            stacklevel=3,
        )


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


class _Progress:
    """A one-line bar redrawn in place on a terminal; a single summary line per file anywhere else."""

    def __init__(self, out: TextIO, tty: bool, label: str, total: int | None, start: int) -> None:
        self.out, self.tty, self.label, self.total = out, tty, label, total
        self.start_bytes = self.done = start
        self.t0 = self.last = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty and now - self.last >= 0.1:
            self.last = now
            rate = (self.done - self.start_bytes) / max(now - self.t0, 1e-9)
            if self.total:
                frac = min(self.done / self.total, 1.0)
                bar = "#" * int(frac * 24)
                head = f"[{bar:<24}] {frac:4.0%} {_human(self.done)}/{_human(self.total)}"
            else:
                head = _human(self.done)
            self.out.write(f"\r{self.label}: {head} {_human(rate)}/s\x1b[K")
            self.out.flush()

    def finish(self, url: str) -> None:
        elapsed = time.monotonic() - self.t0
        resumed = f", resumed at {_human(self.start_bytes)}" if self.start_bytes else ""
        line = f"{self.label}: downloaded {_human(self.done)} from {url} in {elapsed:.1f} s{resumed}"
        self.out.write(("\r" + line + "\x1b[K\n") if self.tty else line + "\n")
        self.out.flush()


class Provisioner:
    """Resolves asset names to verified local paths; one per session, safe across processes sharing a cache.

    ``None`` for ``cache_dir``, ``mirror`` or ``offline`` means: take it from the environment
    (``PYTEST_MLPERF_CACHE``, ``PYTEST_MLPERF_MIRROR``, ``PYTEST_MLPERF_OFFLINE``), else the default. Explicit
    ``overrides`` win over ``PYTEST_MLPERF_ASSET_<NAME>`` variables.

    Every download is bounded: ``deadline_s`` for one URL, all its attempts together; a transfer slower than
    ``min_rate`` bytes/s over ``rate_window_s`` is abandoned; no more than an entry's declared ``size`` is written.
    ``verify`` (``--mlperf-verify-cache``) re-hashes cached files and extracted trees instead of trusting stamps,
    and fetches or extracts again what no longer matches.
    """

    def __init__(
        self,
        cache_dir: Path | None = None,
        mirror: str | None = None,
        offline: bool | None = None,
        overrides: Mapping[str, Path] = MappingProxyType({}),
        manifests: Mapping[str, Asset] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
        retries: int = 3,
        backoff_s: float = 0.5,
        stream: TextIO | None = None,
        tty: bool | None = None,
        deadline_s: float = DEFAULT_DOWNLOAD_TIMEOUT_S,
        min_rate: float = DEFAULT_DOWNLOAD_MIN_RATE,
        rate_window_s: float = _RATE_WINDOW_S,
        verify: bool = False,
        lock_timeout_s: float | None = None,
        max_undeclared_bytes: int = MAX_UNDECLARED_BYTES,
    ) -> None:
        env = os.environ if env is None else env
        self.catalog: Mapping[str, Asset] = load_catalog() if manifests is None else manifests
        # Absolute, so that paths handed out stay valid if a test changes the working directory.
        self.cache_dir = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(env)).absolute()
        raw, source = (mirror, "--mlperf-mirror") if mirror is not None else (env.get(ENV_MIRROR, ""), ENV_MIRROR)
        self.mirror = parse_mirror(raw, source) if raw.strip() else None
        self.offline = env_flag(env.get(ENV_OFFLINE)) if offline is None else offline
        self.timeout = timeout
        self.retries = max(1, retries)
        self.backoff_s = backoff_s
        self.deadline_s = deadline_s
        self.min_rate = min_rate
        self.rate_window_s = rate_window_s
        self.verify = verify
        self.max_undeclared_bytes = max_undeclared_bytes
        self.lock_timeout_s = lock_timeout_s if lock_timeout_s is not None else deadline_s + _LOCK_GRACE_S
        self._stream = stream
        self._tty = tty
        self._session: requests.Session | None = None
        self.overrides: dict[str, Path] = {}
        self._override_origin: dict[str, str] = {}
        for name, (path, origin) in env_asset_overrides(env, self.catalog).items():
            self.overrides[name] = path
            self._override_origin[name] = origin
        check_override_names(overrides, self.catalog, self._sources())
        for name, path in overrides.items():
            self.overrides[name] = Path(path).expanduser()
            self._override_origin[name] = f"--mlperf-asset {name}={path}"

    @classmethod
    def from_options(
        cls,
        *,
        cache_dir: str | Path | None = None,
        mirror: str | None = None,
        offline: bool | None = None,
        asset_specs: tuple[str, ...] | list[str] = (),
        manifest_paths: tuple[Path, ...] | list[Path] = (),
        env: Mapping[str, str] | None = None,
        stream: TextIO | None = None,
        tty: bool | None = None,
        **bounds: Any,
    ) -> Provisioner:
        """Build from raw option values: ``NAME=PATH`` specs and extra manifest files on top of the packaged ones.

        *bounds* are passed on: ``deadline_s``, ``min_rate``, ``verify``, ...
        """
        overrides = dict(parse_asset_spec(spec) for spec in asset_specs)
        return cls(
            cache_dir=Path(cache_dir) if cache_dir else None,
            mirror=mirror or None,
            offline=offline,
            overrides=overrides,
            manifests=load_catalog([Path(p) for p in manifest_paths]),
            env=env,
            stream=stream,
            tty=tty,
            **bounds,
        )

    # -- public API -------------------------------------------------------------------------------------------

    def get(self, name: str) -> Path:
        """The local path of an asset: a file, or a directory for archives and user-supplied directories."""
        return self.provision(name).path

    def provision(self, name: str) -> Provisioned:
        """Like :meth:`get`, also returning the digests (for results provenance) and where the asset came from."""
        asset = self.asset(name)
        if name in self.overrides:
            return self._from_override(asset, self.overrides[name])
        if asset.source == "python-package":
            return self._from_package(asset)
        if asset.source == "user":
            raise AssetUnavailable(
                name,
                f"{asset.kind} {name!r} has no public download: it must be supplied as a local copy.",
                self.how_to_provide(name),
            )
        # --mlperf-verify-cache checks under the lock: it may delete what it finds changed.
        if not self.verify:
            hit = self._cache_hit(asset)
            if hit is not None:
                return hit
            if self.offline:
                raise self._offline_miss(asset)
        ensure_cache_dir(self.cache_dir)
        with self._lock(asset):
            rejected: list[str] = []
            hit = self._cache_hit(asset, rehash=True, rejected=rejected)
            if hit is not None:
                return hit
            if self.offline:
                if rejected:
                    raise ProvisioningError(
                        f"{asset.kind} {name!r}: --mlperf-verify-cache: {rejected[0]}; offline mode "
                        f"({ENV_OFFLINE}=1 or --mlperf-offline) forbids fetching it again: run once online, or "
                        f"give a local copy with --mlperf-asset {name}=PATH"
                    )
                raise self._offline_miss(asset)
            # An archive that was downloaded but not extracted (interrupted run) is reused, not fetched again.
            kept = self._file_hit(asset, rehash=True, rejected=rejected) if asset.archive != "none" else None
            sha, md5 = (str(kept.sha256), str(kept.md5)) if kept is not None else self._download(asset)
            if asset.archive == "none":
                return Provisioned(name, self._file_path(asset), sha, md5, "download", rehashed=True)
            path, tree_sha = self._extract(asset, self._file_path(asset), sha, md5, delete_archive=True)
            return Provisioned(name, path, sha, md5, "download", tree_sha, rehashed=True)

    def _offline_miss(self, asset: Asset) -> AssetUnavailable:
        return AssetUnavailable(
            asset.name,
            f"{asset.kind} {asset.name!r} is not in the cache {self.cache_dir} and offline mode is on "
            f"({ENV_OFFLINE}=1 or --mlperf-offline), so it is not downloaded.",
            self.how_to_provide(asset.name),
        )

    def close(self) -> None:
        """Release the HTTP connection pool (call at session end)."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def asset(self, name: str) -> Asset:
        try:
            return self.catalog[name]
        except KeyError:
            raise ProvisioningError(
                f"no asset named {name!r} in the manifests ({self._sources()}); known assets: "
                f"{', '.join(sorted(self.catalog))}; add an entry with --mlperf-manifest PATH"
            ) from None

    def how_to_provide(self, name: str) -> str:
        """Every way to make an asset available here, with the layout expected; used as the skip reason."""
        asset = self.asset(name)
        lines = [f"To provide {asset.kind} {name!r}" + (f" ({asset.description})" if asset.description else "") + ":"]
        lines.append(f"  - a local copy: --mlperf-asset {name}=PATH, or {asset_env_var(name)}=PATH")
        lines.append(f"    expected: {self._expected(asset)}")
        if asset.source == "python-package" and asset.package is not None:
            lines.append(f"  - the Python package: pip install '{asset.package.name}=={asset.package.version}'")
        elif asset.source == "url":
            lines.append(f"  - a mirror: --mlperf-mirror URL or {ENV_MIRROR}=URL, serving URL/{asset.filename}")
        if asset.url:
            lines.append(
                f"  - the network: it downloads from {redact_url(asset.url)} unless offline mode ({ENV_OFFLINE}) is on"
            )
        return "\n".join(lines)

    # -- local sources -------------------------------------------------------------------------------------

    def _expected(self, asset: Asset) -> str:
        if asset.expected_layout:
            return asset.expected_layout
        checks = ", ".join(f"{k} {v}" for k, v in (("sha256", asset.sha256), ("md5", asset.md5)) if v)
        what = f"the file {asset.filename}" + (f" ({checks})" if checks else "")
        if asset.archive != "none":
            what += " or a directory extracted from it"
            if asset.required_files:
                what += f" containing {', '.join(asset.required_files)}"
        return what

    def _from_override(self, asset: Asset, path: Path) -> Provisioned:
        origin = self._override_origin.get(asset.name, f"the override for {asset.name!r}")
        if not path.exists():
            raise ProvisioningError(
                f"{asset.kind} {asset.name!r}: the local path {path} (from {origin}) does not exist; "
                f"fix the path or remove the override. Expected: {self._expected(asset)}"
            )
        if path.is_dir():
            root = path
            self._check_required(asset, root, f"the directory {path} (from {origin})")
            return Provisioned(asset.name, root, None, None, "override")
        if not stat.S_ISREG(path.stat().st_mode):
            # A FIFO or /dev/zero would be read (hashed) forever.
            raise ProvisioningError(
                f"{asset.kind} {asset.name!r}: the local path {path} (from {origin}) is not a regular file or a "
                f"directory (a FIFO, socket or device), which cannot be checked or used; point it at the file. "
                f"Expected: {self._expected(asset)}"
            )
        sha, md5 = self._verified_local(asset, path, f"the local file {path} (from {origin})")
        if asset.archive == "none":
            return Provisioned(asset.name, path, sha, md5, "override", rehashed=self.verify)
        ensure_cache_dir(self.cache_dir)
        with self._lock(asset):
            extracted = self._extracted_hit(asset, sha, md5)
            if extracted is None:
                fix = f"replace the local file {path} (from {origin}) with an intact copy"
                extracted = self._extract(asset, path, sha, md5, delete_archive=False, fix=fix)
        return Provisioned(asset.name, extracted[0], sha, md5, "override", extracted[1], rehashed=self.verify)

    def _from_package(self, asset: Asset) -> Provisioned:
        pkg = asset.package
        assert pkg is not None  # guaranteed by the manifest parser for source python-package
        try:
            dist = metadata.distribution(pkg.name)
        except metadata.PackageNotFoundError:
            raise AssetUnavailable(
                asset.name,
                f"{asset.kind} {asset.name!r} comes from the Python package {pkg.name}, which is not installed.",
                self.how_to_provide(asset.name),
            ) from None
        member = Path(str(dist.locate_file(pkg.member)))
        if not member.is_file():
            raise ProvisioningError(
                f"{asset.kind} {asset.name!r}: the installed package {pkg.name} {dist.version} has no file "
                f"{pkg.member} (looked at {member}); install the version the manifest names: "
                f"pip install '{pkg.name}=={pkg.version}'"
            )
        what = f"the file {member} from the installed package {pkg.name} {dist.version}"
        if dist.version != pkg.version:
            what += f" (the manifest {asset.manifest} names version {pkg.version})"
        sha, md5 = self._verified_local(asset, member, what)
        return Provisioned(asset.name, member, sha, md5, "package")

    def _verified_local(self, asset: Asset, path: Path, what: str) -> tuple[str, str]:
        """Digests of a file outside the cache, checked against the manifest; stamped so reruns do not re-hash."""
        key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
        stamp_path = self.cache_dir / "overrides" / f"{key}.stamp.json"
        st = path.stat()
        stamp = _read_json(stamp_path)
        if (
            not self.verify
            and stamp is not None
            and stamp.get("path") == str(path.resolve())
            and stamp.get("size") == st.st_size
            and stamp.get("mtime_ns") == st.st_mtime_ns
        ):
            sha, md5 = str(stamp.get("sha256")), str(stamp.get("md5"))
        else:
            sha, md5 = file_digests(path)
            if self._can_write_cache():
                cache_subdir(self.cache_dir, "overrides")
                _write_json(
                    stamp_path,
                    {
                        "v": _STAMP_VERSION,
                        "path": str(path.resolve()),
                        "size": st.st_size,
                        "mtime_ns": st.st_mtime_ns,
                        "sha256": sha,
                        "md5": md5,
                    },
                )
        mismatch = self._mismatch(asset, sha, md5)
        if mismatch:
            manifest = "\n".join("    " + line for line in user_entry_manifest(asset, sha).splitlines())
            raise ProvisioningError(
                f"{asset.kind} {asset.name!r}: {what} does not match the manifest {asset.manifest}: {mismatch}. "
                "If this file is the one you want (your own model, say), save these lines as a manifest, e.g. "
                f"my-assets.yaml, and add --mlperf-manifest my-assets.yaml; its entry replaces the packaged one by "
                f"name:\n{manifest}\nOtherwise point the override at the right file."
            )
        return sha, md5

    def _can_write_cache(self) -> bool:
        try:
            ensure_cache_dir(self.cache_dir)
        except ProvisioningError as exc:
            warnings.warn(MLPerfWarning(f"{exc}; local files are re-hashed on every run"), stacklevel=4)
            return False
        return True

    def _check_required(self, asset: Asset, root: Path, what: str) -> None:
        missing = [r for r in asset.required_files if not (root / r).exists()]
        if missing:
            raise ProvisioningError(
                f"{asset.kind} {asset.name!r}: {what} lacks {', '.join(missing)}; "
                f"expected: {self._expected(asset)} (as declared in {asset.manifest})"
            )

    # -- the cache -----------------------------------------------------------------------------------------

    def _asset_dir(self, asset: Asset) -> Path:
        return self.cache_dir / "assets" / asset.name

    def _file_path(self, asset: Asset) -> Path:
        return self._asset_dir(asset) / asset.filename

    def _extract_dir(self, asset: Asset) -> Path:
        return self._asset_dir(asset) / f"{asset.filename}.d"

    def _extract_stamp(self, asset: Asset) -> Path:
        return self._asset_dir(asset) / f"{asset.filename}.d.stamp.json"

    @staticmethod
    def _mismatch(asset: Asset, sha: str, md5: str) -> str:
        if asset.sha256 and sha != asset.sha256:
            return f"expected sha256 {asset.sha256}, got {sha}"
        if asset.md5 and md5 != asset.md5:
            return f"expected md5 {asset.md5}, got {md5}"
        return ""

    def _identity(self, asset: Asset) -> str:
        # For unverified entries the URL stands in for the checksum: a changed URL must not reuse the old file.
        return "verified" if asset.has_checksum else f"unverified:{asset.url or asset.filename}"

    def _stamp_matches(self, asset: Asset, stamp: Mapping[str, Any] | None) -> bool:
        if stamp is None or stamp.get("v") != _STAMP_VERSION:
            return False
        sha, md5 = stamp.get("sha256"), stamp.get("md5")
        if not isinstance(sha, str) or not isinstance(md5, str):
            return False
        return not self._mismatch(asset, sha, md5) and stamp.get("identity") == self._identity(asset)

    def _cache_hit(
        self, asset: Asset, *, rehash: bool = False, rejected: list[str] | None = None
    ) -> Provisioned | None:
        """The asset in its final form (file or extracted tree), if the cache holds it verified.

        With ``verify`` the bytes are hashed again, and what no longer matches is reported, appended to
        *rejected* and dropped (so the caller fetches or extracts it again).
        """
        if asset.archive == "none":
            return self._file_hit(asset, rehash=rehash, rejected=rejected)
        stamp = _read_json(self._extract_stamp(asset))
        root = self._extract_dir(asset)
        if self._stamp_matches(asset, stamp) and root.is_dir():
            assert stamp is not None
            path = root / asset.extract_root if asset.extract_root else root
            if all((path / r).exists() for r in asset.required_files):
                if not self.verify:
                    tree = stamp.get("tree_sha256")
                    tree = tree if isinstance(tree, str) else None
                    return Provisioned(asset.name, path, stamp["sha256"], stamp["md5"], "cache", tree)
                tree_sha, problem = self._check_tree(asset)
                if problem is None:
                    return Provisioned(asset.name, path, stamp["sha256"], stamp["md5"], "cache", tree_sha, True)
                self._reject(asset, problem, rejected)
                with contextlib.suppress(OSError):
                    self._extract_stamp(asset).unlink()
        return None

    def _reject(self, asset: Asset, problem: str, rejected: list[str] | None) -> None:
        self._say(f"pytest-mlperf: {asset.name}: --mlperf-verify-cache: {problem}; it is provisioned again")
        if rejected is not None:
            rejected.append(problem)

    def _check_tree(self, asset: Asset) -> tuple[str, str | None]:
        """(sha256 of the tree as it is now, what differs from the listing written at extraction or None)."""
        root = self._extract_dir(asset)
        now = tree_digests(root)
        tree_sha = _listing_sha256(now)
        recorded = _read_json(self._tree_listing(asset))
        if recorded is None:
            return tree_sha, f"the extracted tree {root} has no listing of its files ({self._tree_listing(asset).name})"
        changes = _tree_changes(recorded, now)
        if not changes:
            return tree_sha, None
        more = f" and {len(changes) - 5} more" if len(changes) > 5 else ""
        listed = "; ".join(changes[:5]) + more
        return tree_sha, f"the extracted tree {root} differs from what its archive produced: {listed}"

    def _file_hit(
        self, asset: Asset, *, rehash: bool = False, rejected: list[str] | None = None
    ) -> Provisioned | None:
        """A verified cached file, from the stamp alone when size and mtime agree (no re-hash) unless ``verify``."""
        path = self._file_path(asset)
        stamp_path = path.with_name(path.name + ".stamp.json")
        stamp = _read_json(stamp_path)
        try:
            st = path.stat()
        except OSError:
            return None
        stamped = self._stamp_matches(asset, stamp)
        if stamped and not self.verify:
            assert stamp is not None
            if stamp.get("size") == st.st_size and stamp.get("mtime_ns") == st.st_mtime_ns:
                return Provisioned(asset.name, path, stamp["sha256"], stamp["md5"], "cache")
        if not rehash:
            return None
        # The stamp is missing or stale (touched, copied in), or verify mode: trust the file only after hashing.
        sha, md5 = file_digests(path)
        problem = self._mismatch(asset, sha, md5)
        if not problem and not asset.has_checksum:
            # Without a checksum only the digest recorded at download time can vouch for the file.
            recorded = stamp.get("sha256") if stamped and stamp is not None else None
            if recorded != sha:
                problem = f"expected the sha256 recorded at download, {recorded}, got {sha}"
        if problem:
            if self.verify:
                self._reject(asset, f"the cached file {path} does not match: {problem}", rejected)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        self._write_stamp(asset, stamp_path, path, sha, md5)
        return Provisioned(asset.name, path, sha, md5, "cache", rehashed=True)

    def _write_stamp(self, asset: Asset, stamp_path: Path, path: Path, sha: str, md5: str) -> None:
        st = path.stat()
        _write_json(
            stamp_path,
            {
                "v": _STAMP_VERSION,
                "identity": self._identity(asset),
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "sha256": sha,
                "md5": md5,
            },
        )

    def _extracted_hit(self, asset: Asset, sha: str, md5: str) -> tuple[Path, str | None] | None:
        stamp = _read_json(self._extract_stamp(asset))
        if stamp is not None and stamp.get("sha256") == sha and stamp.get("md5") == md5:
            root = self._extract_dir(asset)
            path = root / asset.extract_root if asset.extract_root else root
            if path.is_dir() and all((path / r).exists() for r in asset.required_files):
                if not self.verify:
                    tree = stamp.get("tree_sha256")
                    return path, tree if isinstance(tree, str) else None
                tree_sha, problem = self._check_tree(asset)
                if problem is None:
                    return path, tree_sha
                self._reject(asset, problem, None)
        return None

    def _tree_listing(self, asset: Asset) -> Path:
        return self._asset_dir(asset) / f"{asset.filename}.d.files.json"

    def _extract(
        self, asset: Asset, archive: Path, sha: str, md5: str, *, delete_archive: bool, fix: str | None = None
    ) -> tuple[Path, str]:
        """Extract into the cache; return the asset's path and the sha256 of the tree's file listing."""
        dest = self._extract_dir(asset)
        stamp_path = self._extract_stamp(asset)
        with contextlib.suppress(OSError):
            stamp_path.unlink()
        if dest.exists():
            # A stale extraction (other checksum, or damaged): move it aside first so dest is never half-old.
            trash = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, trash)
            shutil.rmtree(trash, ignore_errors=True)
        limits = ExtractLimits.for_archive(
            archive.stat().st_size, asset.expanded_size, asset.entries, str(asset.manifest)
        )
        if fix is None:
            fix = (
                f"the damaged download {archive} was deleted, so the next run downloads it again; if the damage "
                f"comes back, the file at the source is damaged (or 'archive' in {asset.manifest} names the wrong "
                f"format): use another mirror ({ENV_MIRROR}) or a local copy (--mlperf-asset {asset.name}=PATH)"
            )
        try:
            extract_archive(archive, dest, asset.archive, limits, fix=fix)
        except DamagedArchiveError:
            if delete_archive:
                with contextlib.suppress(OSError):
                    archive.unlink()
                    archive.with_name(archive.name + ".stamp.json").unlink()
            raise
        except OSError as exc:
            raise self._disk_error(asset, dest, exc) from exc
        path = dest / asset.extract_root if asset.extract_root else dest
        if not path.is_dir():
            raise ProvisioningError(
                f"{asset.kind} {asset.name!r}: the archive {archive} has no directory {asset.extract_root!r}; "
                f"fix 'extract_root' in {asset.manifest}"
            )
        self._check_required(asset, path, f"the archive {archive}")
        tree = tree_digests(dest)
        tree_sha = _listing_sha256(tree)
        _write_json(self._tree_listing(asset), tree)
        _write_json(
            stamp_path,
            {
                "v": _STAMP_VERSION,
                "identity": self._identity(asset),
                "sha256": sha,
                "md5": md5,
                "tree_sha256": tree_sha,
            },
        )
        if delete_archive:
            # The extracted tree is what later runs use; keeping multi-GB archives too would double the cache.
            with contextlib.suppress(OSError):
                archive.unlink()
                archive.with_name(archive.name + ".stamp.json").unlink()
        return path, tree_sha

    @contextlib.contextmanager
    def _lock(self, asset: Asset) -> Iterator[None]:
        lock_path = cache_file(self.cache_dir, "locks", f"{asset.name}.lock")
        lock = filelock.FileLock(str(lock_path))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            self._say(
                f"pytest-mlperf: waiting for another process to provision {asset.name!r} (lock {lock_path}; "
                f"at most {self.lock_timeout_s:.0f} s)"
            )
            try:
                lock.acquire(timeout=self.lock_timeout_s)
            except filelock.Timeout:
                raise ProvisioningError(
                    f"{asset.kind} {asset.name!r}: another process still holds {lock_path} after "
                    f"{self.lock_timeout_s:.0f} s of waiting (its download deadline plus {_LOCK_GRACE_S:.0f} s); "
                    "it is stuck or the download is very slow: stop it, or raise --mlperf-download-timeout"
                ) from None
        try:
            yield
        finally:
            lock.release()

    # -- downloading ---------------------------------------------------------------------------------------

    def _out(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def _say(self, line: str) -> None:
        out = self._out()
        out.write(line + "\n")
        out.flush()

    def _is_tty(self) -> bool:
        if self._tty is not None:
            return self._tty
        try:
            return self._out().isatty()
        except (AttributeError, ValueError):
            return False

    def _sources(self) -> str:
        if isinstance(self.catalog, Catalog):
            return self.catalog.describe_sources()
        return ", ".join(sorted({str(a.manifest) for a in self.catalog.values()})) or "(none)"

    def _candidate_urls(self, asset: Asset) -> list[str]:
        urls = [f"{self.mirror}/{asset.filename}"] if self.mirror else []
        return urls + [u for u in asset.urls if u not in urls]

    def _is_mirror(self, url: str) -> bool:
        return self.mirror is not None and url.startswith(self.mirror + "/")

    def _download(self, asset: Asset) -> tuple[str, str]:
        """Fetch from the mirror, then the URL, then the manifest's mirrors; place the verified file in the cache."""
        cache_subdir(self.cache_dir, "assets", asset.name)
        failures: list[SourceFailure] = []
        for url in self._candidate_urls(asset):
            try:
                return self._fetch(asset, url)
            except _AttemptFailed as exc:
                failures.append(
                    SourceFailure(url, exc.kind, redact(exc.detail), exc.attempts, exc.status, exc.explain)
                )
        if all(f.kind == "unreachable" for f in failures):
            raise AssetUnavailable(
                asset.name,
                f"{asset.kind} {asset.name!r} could not be downloaded: no source was reachable "
                f"({'; '.join(f'{redact_url(f.url)}: {f.detail}' for f in failures)}).",
                self.how_to_provide(asset.name),
            )
        lines = [f"pytest-mlperf could not download {asset.kind} {asset.name!r} (declared in {asset.manifest}):"]
        for f in failures:
            tries = f" ({f.attempts} attempts)" if f.attempts > 1 else ""
            role = " (the mirror)" if self._is_mirror(f.url) else ""
            explain = f": {f.explain}" if f.explain else ""
            lines.append(f"  - {redact_url(f.url)}{role}: {f.detail}{tries}{explain}")
        lines.append("How to fix: " + self._remedy(asset, failures))
        raise DownloadFailed(asset.name, "\n".join(lines), tuple(failures))

    def _remedy(self, asset: Asset, failures: list[SourceFailure]) -> str:
        """One piece of advice per kind of failure that happened, most specific first, then the local copy."""
        local = f"--mlperf-asset {asset.name}=PATH (or {asset_env_var(asset.name)}=PATH)"
        kinds = {f.kind for f in failures}
        advice: list[str] = []
        if "checksum" in kinds:
            actual = next(f.detail for f in failures if f.kind == "checksum")
            sha = re.search(r"sha256 of the download is ([0-9a-f]{64})", actual)
            record = f"'sha256: {sha.group(1)}'" if sha else "its sha256"
            advice.append(
                "the server sent other bytes than the manifest declares. If you trust the new file, record "
                f"{record} in your own manifest (--mlperf-manifest PATH, entry name {asset.name!r}); otherwise use "
                f"another mirror ({ENV_MIRROR})"
            )
        if "size" in kinds:
            advice.append(
                f"the server and the manifest disagree on the size: check 'size' and 'url' in {asset.manifest}"
            )
        missing = [f for f in failures if f.status in (404, 410)]
        if any(self._is_mirror(f.url) for f in missing):
            advice.append(
                f"the mirror has no {asset.filename}: put it at {redact_url(str(self.mirror))}/{asset.filename}, or "
                f"fix the mirror's base URL (--mlperf-mirror or {ENV_MIRROR})"
            )
        if any(not self._is_mirror(f.url) for f in missing):
            advice.append(
                f"the file is not at that URL: fix 'url' in {asset.manifest} (or its 'mirrors'), or put "
                f"{asset.filename} on a mirror"
            )
        if any(f.status is not None and 400 <= f.status < 500 and f.status not in _NOT_REFUSALS for f in failures):
            advice.append("the server refuses the request: check the URL and its access rights (credentials, tokens)")
        if "slow" in kinds:
            advice.append(
                "the transfer was too slow: use a closer mirror, or raise --mlperf-download-timeout / lower "
                "--mlperf-download-min-rate if this link is known to be slow"
            )
        if kinds & {"timeout", "interrupted", "unreachable"} or any(
            f.status is not None and (f.status >= 500 or f.status in (408, 429)) for f in failures
        ):
            advice.append(
                "the server or the network failed (HTTP 5xx, timeouts or dropped connections); retry later or "
                f"use a mirror (--mlperf-mirror URL or {ENV_MIRROR})"
            )
        advice.append(f"or give a local copy: {local}")
        return "; ".join(advice)

    def _fetch(self, asset: Asset, url: str) -> tuple[str, str]:
        """Download one URL to the .part file with retries and resume, verify it and move it into place."""
        part = self._file_path(asset).with_name(asset.filename + ".part")
        deadline = time.monotonic() + self.deadline_s
        resumed = False
        fresh_retry_done = False
        attempt = 0
        while True:
            attempt += 1
            try:
                resumed |= self._transfer(asset, url, part, deadline)
            except _AttemptFailed as exc:
                delay = self.backoff_s * (2 ** (attempt - 1))
                if exc.retry and attempt < self.retries and time.monotonic() + delay < deadline:
                    again = f"retrying {redact_url(url)} in {delay:.1f} s"
                    self._say(f"pytest-mlperf: {asset.name}: {redact(exc.detail)}; {again}")
                    time.sleep(delay)
                    continue
                exc.attempts = attempt
                raise
            sha, md5 = file_digests(part)
            mismatch = self._mismatch(asset, sha, md5)
            if mismatch:
                size = part.stat().st_size if part.exists() else None
                self._reset_part(part)
                if resumed and not fresh_retry_done:
                    # A resumed file can mix two versions of a changed upstream file; one clean download decides.
                    fresh_retry_done, resumed = True, False
                    self._say(f"pytest-mlperf: {asset.name}: checksum mismatch after resume; downloading afresh")
                    continue
                raise _AttemptFailed(
                    "checksum",
                    f"checksum mismatch: {mismatch} (sha256 of the download is {sha}"
                    + (f", {size} bytes" if size else "")
                    + "); the corrupt download was deleted",
                    retry=False,
                )
            break
        final = self._file_path(asset)
        os.replace(part, final)
        with contextlib.suppress(OSError):
            part.with_name(part.name + ".json").unlink()
        self._write_stamp(asset, final.with_name(final.name + ".stamp.json"), final, sha, md5)
        if not asset.has_checksum:
            warnings.warn(
                MLPerfWarning(
                    f"{asset.kind} {asset.name!r} has no checksum in {asset.manifest} ({asset.unverified}); "
                    f"the download from {redact_url(url)} has sha256 {sha} and md5 {md5}: record them in the manifest"
                ),
                stacklevel=4,
            )
        return sha, md5

    @staticmethod
    def _reset_part(part: Path) -> None:
        for p in (part, part.with_name(part.name + ".json")):
            with contextlib.suppress(OSError):
                p.unlink()

    def _session_(self) -> requests.Session:
        if self._session is None:
            self._session = requests.Session()
            self._session.headers.update({"User-Agent": _USER_AGENT})
        return self._session

    def _transfer(self, asset: Asset, url: str, part: Path, deadline: float) -> bool:
        """One HTTP request; appends to ``part``. Returns whether it resumed. Raises _AttemptFailed."""
        assert not self.offline, "offline mode must never reach the network"
        meta_path = part.with_name(part.name + ".json")
        meta = _read_json(meta_path) or {}
        have = part.stat().st_size if part.exists() else 0
        # Bytes from another source are only worth keeping when a checksum will catch a mix-up.
        if have and meta.get("url") != url and not asset.has_checksum:
            self._reset_part(part)
            have = 0
        if asset.size is not None and have > asset.size:
            self._reset_part(part)
            have = 0
        if asset.size is not None and have == asset.size:
            return True
        self._check_space(asset, part, (asset.size or 0) - have)
        headers = {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
            if meta.get("validator") and meta.get("url") == url:
                headers["If-Range"] = str(meta["validator"])
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._too_late(have, asset.size)
        # No single wait may outlast the deadline: a server that stops sending ends the attempt in time.
        read_timeout = min(self.timeout[1], left)
        try:
            resp = self._session_().get(
                url, headers=headers, stream=True, timeout=(min(self.timeout[0], left), read_timeout)
            )
        except requests.exceptions.ConnectTimeout as exc:
            raise _AttemptFailed("unreachable", f"connecting timed out after {self.timeout[0]:g} s", True) from exc
        except requests.exceptions.ReadTimeout as exc:
            raise _AttemptFailed(
                "timeout", f"timed out after {read_timeout:g} s waiting for the server to answer", True
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            kind, detail, retry = _classify_connection_error(exc)
            raise _AttemptFailed(kind, detail, retry) from exc
        except requests.RequestException as exc:
            raise _AttemptFailed("http", f"request failed: {exc}", False) from exc
        with resp:
            status = resp.status_code
            if status == 206 and have:
                start = _content_range_start(resp.headers.get("Content-Range", ""))
                if start != have:
                    self._reset_part(part)
                    raise _AttemptFailed("interrupted", f"server resumed at byte {start}, not {have}", True)
                mode = "ab"
            elif status == 200:
                if have:
                    self._say(f"pytest-mlperf: {asset.name}: {redact_url(url)} ignored the Range request; restarting")
                have, mode = 0, "wb"
            elif status == 416 and have:
                self._reset_part(part)
                raise _AttemptFailed("interrupted", "server refused to resume (HTTP 416); restarting", True)
            else:
                raise _http_failure(status, resp.reason or "", self._is_mirror(url), asset.filename)
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else None
            if total is not None and asset.size is not None and total != asset.size:
                raise _AttemptFailed(
                    "size", f"the server announces {total} bytes but the manifest says size {asset.size}", False
                )
            if total is not None:
                self._check_space(asset, part, total - have)
            if status == 200:
                validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
                _write_json(meta_path, {"url": url, "validator": validator})
            progress = _Progress(self._out(), self._is_tty(), f"pytest-mlperf: {asset.name}", total, have)
            self._stream_body(asset, resp, part, mode, progress, total, deadline, read_timeout)
            size = part.stat().st_size
            if total is not None and size != total:
                raise _AttemptFailed("interrupted", f"connection closed after {size} of {total} bytes", True)
            if asset.size is not None and size < asset.size:
                # No Content-Length: the end of the connection was the end of the body, short of the declared size.
                raise _AttemptFailed("interrupted", f"connection closed after {size} of {asset.size} bytes", True)
            progress.finish(redact_url(url))
        return have > 0

    def _too_late(self, done: int, expected: int | None) -> _AttemptFailed:
        of = f" of {expected}" if expected is not None else ""
        return _AttemptFailed(
            "slow",
            f"abandoned at the download deadline of {self.deadline_s:g} s (--mlperf-download-timeout) with "
            f"{done}{of} bytes received",
            False,
        )

    def _stream_body(
        self,
        asset: Asset,
        resp: requests.Response,
        part: Path,
        mode: str,
        progress: _Progress,
        total: int | None,
        deadline: float,
        read_timeout: float,
    ) -> None:
        """Copy the body to ``part`` as it arrives, within the declared size, the deadline and the minimum rate."""
        expected = asset.size if asset.size is not None else total
        of = expected if expected is not None else "?"
        # read1 returns what has arrived: a trickling server cannot hold a 1 MiB read (and the deadline) hostage,
        # and the bytes received before a stall are written, counted and kept for the resume.
        read1 = getattr(resp.raw, "read1", None)
        stopped = "bytes received when the transfer was stopped; the download was deleted"
        if asset.size is not None:
            limit, too_long = asset.size, f"the body is longer than the manifest's 'size: {asset.size}'"
        else:
            limit = self.max_undeclared_bytes
            too_long = (
                f"the body is longer than {limit} bytes, the most a download without 'size:' in {asset.manifest} "
                "may write (declare the file's size there if it really is this large)"
            )

        def read() -> bytes:
            if read1 is not None:
                return bytes(read1(_CHUNK, decode_content=False))
            return bytes(resp.raw.read(1 << 14, decode_content=False))  # pragma: no cover - urllib3 < 2

        try:
            fh = open(part, mode)  # noqa: SIM115 - closed in the finally below, errors are classified
        except OSError as exc:
            raise self._disk_error(asset, part, exc) from exc
        window_start, window_bytes = time.monotonic(), progress.done
        try:
            while True:
                try:
                    chunk = read()
                except (urllib3.exceptions.ReadTimeoutError, TimeoutError) as exc:
                    raise _AttemptFailed(
                        "timeout",
                        f"the server sent nothing for {read_timeout:g} s after {progress.done} of {of} bytes",
                        True,
                    ) from exc
                except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                    raise _AttemptFailed(
                        "interrupted",
                        f"connection lost after {progress.done} of {of} bytes ({type(exc).__name__})",
                        True,
                    ) from exc
                if not chunk:
                    return
                if progress.done + len(chunk) > limit:
                    fh.close()
                    self._reset_part(part)
                    raise _AttemptFailed("size", f"{too_long}: {progress.done + len(chunk)} {stopped}", False)
                try:
                    fh.write(chunk)
                except OSError as exc:
                    raise self._disk_error(asset, part, exc) from exc
                progress.update(len(chunk))
                now = time.monotonic()
                if now > deadline:
                    raise self._too_late(progress.done, expected)
                if now - window_start >= self.rate_window_s:
                    rate = (progress.done - window_bytes) / (now - window_start)
                    if rate < self.min_rate:
                        raise _AttemptFailed(
                            "slow",
                            f"too slow: {progress.done - window_bytes} bytes in the last {now - window_start:.0f} s "
                            f"({rate:.0f} B/s, below the minimum of {self.min_rate:g} B/s set by "
                            f"--mlperf-download-min-rate); abandoned after {progress.done} of {of} bytes",
                            False,
                        )
                    window_start, window_bytes = now, progress.done
        finally:
            try:
                fh.close()
            except OSError as exc:  # pragma: no cover - a full disk can surface on close
                raise self._disk_error(asset, part, exc) from exc

    def _check_space(self, asset: Asset, part: Path, needed: int) -> None:
        if needed <= 0:
            return
        free = shutil.disk_usage(part.parent).free
        if needed > free:
            raise ProvisioningError(
                f"not enough disk space for {asset.kind} {asset.name!r}: it needs {_human(needed)} more in "
                f"{part.parent} but {_human(free)} is free; free some space, or point {ENV_CACHE} or "
                f"--mlperf-cache-dir at a larger disk"
            )

    def _disk_error(self, asset: Asset, path: Path, exc: OSError) -> ProvisioningError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return ProvisioningError(
                f"the disk is full while writing {path} for {asset.kind} {asset.name!r} ({exc.strerror}); "
                f"free some space, or point {ENV_CACHE} or --mlperf-cache-dir at a larger disk "
                "(the partial download is kept and resumed next time)"
            )
        return ProvisioningError(
            f"cannot write {path} for {asset.kind} {asset.name!r}: {exc.strerror or exc}; check the permissions "
            f"of the cache directory {self.cache_dir} or set {ENV_CACHE} / --mlperf-cache-dir"
        )


def _content_range_start(value: str) -> int | None:
    match = re.match(r"^\s*bytes\s+(\d+)-", value)
    return int(match.group(1)) if match else None


def _http_failure(status: int, reason: str, mirror: bool, filename: str) -> _AttemptFailed:
    """Say what an HTTP error status means here: 4xx is this URL's fault (no retry), 5xx the server's (retried)."""
    head = f"HTTP {status} {reason}".strip()
    if status in (404, 410):
        where = f"the mirror has no {filename} at that path" if mirror else "the file is not at that URL"
        return _AttemptFailed("http", head, False, status, where)
    if status in (408, 429):
        return _AttemptFailed("http", head, True, status, "the server asks to come back later")
    if 400 <= status < 500:
        return _AttemptFailed("http", head, False, status, "the server refuses this request (a client error)")
    if status >= 500:
        return _AttemptFailed("http", head, True, status, "the server failed (a server-side error)")
    return _AttemptFailed("http", head, False, status, "not a file download")


def _classify_connection_error(
    exc: requests.exceptions.ConnectionError,
) -> tuple[Literal["unreachable", "interrupted"], str, bool]:
    """Tell 'this host cannot be reached from here' (skip-worthy) from 'the server hung up on us' (an error)."""
    reason: object = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", reason)
    # NameResolutionError appeared in urllib3 2.0; with 1.26 a DNS failure is a plain NewConnectionError.
    name_resolution = getattr(urllib3.exceptions, "NameResolutionError", None)
    if name_resolution is not None and isinstance(reason, name_resolution):
        return "unreachable", "the host name does not resolve (no network or DNS?)", False
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return "unreachable", "the connection was refused or the network is unreachable", True
    return "interrupted", f"the connection failed: {reason}", True
