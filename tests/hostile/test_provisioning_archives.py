"""Damaged, hostile and oversized archives given to the provisioner: a named error for each, never a traceback.

The archives are real tar and zip files built here; bombs are kept small by declaring small caps in the manifest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from provisioning_support import make_provisioner
from pytest_httpserver import HTTPServer

from pytest_mlperf.errors import ProvisioningError
from pytest_mlperf.provisioning.archive import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MIN_BYTES,
    DEFAULT_RATIO,
    DamagedArchiveError,
    ExtractLimits,
    UnsafeArchiveError,
)


def write_tar(path: Path, files: dict[str, bytes], gz: bool = False, links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def provide(tmp_path: Path, archive: Path, fmt: str, **entry: Any) -> Path:
    """Provision *archive* as a local override of an entry declaring its sha256; return the extracted path."""
    fields = {
        "name": "data",
        "kind": "dataset",
        "url": "http://127.0.0.1:9/data",
        "filename": archive.name,
        "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
        "archive": fmt,
        **entry,
    }
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump({"schema_version": 1, "assets": [fields]}), encoding="utf-8")
    return make_provisioner(tmp_path, manifest, overrides={"data": archive}).get("data")


def no_extraction_left(tmp_path: Path) -> bool:
    folder = tmp_path / "cache" / "assets" / "data"
    return not folder.exists() or not [p for p in folder.iterdir() if p.name.endswith((".d", ".tmp"))]


# -- damaged archives: every one a DamagedArchiveError naming the file, the entry and the fix -------------------


def test_a_truncated_tar_gz_names_the_archive_and_the_fix(tmp_path: Path) -> None:
    whole = write_tar(tmp_path / "whole.tar.gz", {"a.txt": os.urandom(20_000), "b.txt": os.urandom(20_000)}, gz=True)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])

    with pytest.raises(DamagedArchiveError) as info:
        provide(tmp_path, cut, "tar.gz")

    msg = str(info.value)
    assert f"cannot extract {cut}: the archive is damaged" in msg
    assert "entry 'a.txt'" in msg or "entry 'b.txt'" in msg
    assert f"replace the local file {cut}" in msg
    assert no_extraction_left(tmp_path)


def test_a_zip_with_a_corrupt_member_names_that_member(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "bad.zip", {"good.txt": b"fine " * 100, "bad.txt": b"payload " * 2000})
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("bad.txt")
    # Flip bytes inside bad.txt's compressed data (after its 30-byte local header and its name).
    start = info.header_offset + 30 + len("bad.txt") + 10
    for i in range(start, start + 20):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))

    with pytest.raises(DamagedArchiveError) as info_:
        provide(tmp_path, path, "zip")

    msg = str(info_.value)
    assert "at entry 'bad.txt'" in msg
    assert "damaged" in msg and str(path) in msg


def test_a_zip_member_with_an_unknown_compression_method_is_a_damaged_archive(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "odd.zip", {"x.bin": b"x" * 1000})
    raw = bytearray(path.read_bytes())
    # The method field sits at offset 8 of the local header and 10 of the central directory entry.
    local = raw.find(b"PK\x03\x04")
    central = raw.find(b"PK\x01\x02")
    raw[local + 8 : local + 10] = (99).to_bytes(2, "little")
    raw[central + 10 : central + 12] = (99).to_bytes(2, "little")
    path.write_bytes(bytes(raw))

    with pytest.raises(DamagedArchiveError) as info:
        provide(tmp_path, path, "zip")

    assert "at entry 'x.bin'" in str(info.value)
    assert "NotImplementedError" in str(info.value)


def test_a_tar_hard_link_to_a_missing_member_is_a_damaged_archive(tmp_path: Path) -> None:
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("copy.txt")
        info.type = tarfile.LNKTYPE
        info.linkname = "missing.txt"
        tar.addfile(info)

    with pytest.raises(DamagedArchiveError) as info_:
        provide(tmp_path, path, "tar")

    assert "at entry 'copy.txt'" in str(info_.value)


def test_a_gzip_that_is_not_gzip_is_a_damaged_archive(tmp_path: Path) -> None:
    path = tmp_path / "plain.tar.gz"
    path.write_bytes(b"this is not gzip at all" * 10)

    with pytest.raises(ProvisioningError) as info:
        provide(tmp_path, path, "tar.gz")

    assert str(path) in str(info.value)
    assert "damaged" in str(info.value) or "not a tar.gz" in str(info.value)


def test_a_gzip_with_corrupt_deflate_data_is_a_damaged_archive(tmp_path: Path) -> None:
    text = b"".join(b"line %d of a compressible member\n" % i for i in range(5000))
    whole = write_tar(tmp_path / "w.tar", {"a.txt": text})
    data = bytearray(gzip.compress(whole.read_bytes(), mtime=0))
    for i in range(200, 260):
        data[i] ^= 0x5A
    path = tmp_path / "corrupt.tar.gz"
    path.write_bytes(bytes(data))

    with pytest.raises(DamagedArchiveError) as info:
        provide(tmp_path, path, "tar.gz")

    assert str(path) in str(info.value)


# -- hostile archives ------------------------------------------------------------------------------------------


def test_a_symlink_chain_is_refused_as_unsafe_and_says_why(tmp_path: Path) -> None:
    # l1 -> "." and l2 -> "l1/l1/l1/.." : lexically inside, really the parent of the target.
    path = write_tar(tmp_path / "chain.tar", {"ok.txt": b"x"}, links={"l1": ".", "l2": "l1/l1/l1/.."})

    with pytest.raises(UnsafeArchiveError) as info:
        provide(tmp_path, path, "tar")

    msg = str(info.value)
    assert "member 'l2'" in msg
    assert "passes through the symlink 'l1'" in msg
    assert "refused as unsafe" in msg
    assert "damaged" not in msg
    assert no_extraction_left(tmp_path)


# -- bombs: the expansion is bounded by the declared sizes, with a margin -------------------------------------------


def test_a_tar_bomb_beyond_the_declared_expanded_size_is_refused_before_writing(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "bomb.tar.gz", {"zeros.bin": bytes(2_000_000)}, gz=True)
    assert path.stat().st_size < 20_000

    with pytest.raises(ProvisioningError) as info:
        provide(tmp_path, path, "tar.gz", expanded_size=100_000)

    msg = str(info.value)
    assert "expands to more than 110000 bytes" in msg
    assert "'expanded_size: 100000'" in msg and "plus 10%" in msg
    assert "zeros.bin" in msg
    assert no_extraction_left(tmp_path)


def test_a_zip_bomb_beyond_the_declared_expanded_size_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "bomb.zip", {"a.bin": bytes(1_000_000), "b.bin": bytes(1_000_000)})

    with pytest.raises(ProvisioningError) as info:
        provide(tmp_path, path, "zip", expanded_size=1_500_000)

    assert "expands to more than 1650000 bytes" in str(info.value)
    assert no_extraction_left(tmp_path)


def test_more_members_than_declared_are_refused(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "many.tar", {f"f{i}.txt": b"" for i in range(50)})

    with pytest.raises(ProvisioningError) as info:
        provide(tmp_path, path, "tar", entries=10)

    msg = str(info.value)
    assert "holds more than 12 members" in msg
    assert "'entries: 10'" in msg
    assert no_extraction_left(tmp_path)


def test_a_zip_with_more_members_than_declared_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "many.zip", {f"f{i}.txt": b"" for i in range(30)})

    with pytest.raises(ProvisioningError) as info:
        provide(tmp_path, path, "zip", entries=5)

    assert "holds more than 6 members" in str(info.value)


def test_within_the_declared_values_and_margin_extraction_succeeds(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "fine.tar", {"a.bin": bytes(1050), "b.bin": b"b"})

    root = provide(tmp_path, path, "tar", expanded_size=1000, entries=2)

    assert (root / "a.bin").stat().st_size == 1050
    assert (root / "b.bin").read_bytes() == b"b"


def test_an_undeclared_gz_bomb_meets_the_default_cap(tmp_path: Path) -> None:
    big = DEFAULT_MIN_BYTES + (1 << 20)
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = big

        class Zeros(io.RawIOBase):
            left = big

            def readable(self) -> bool:
                return True

            def readinto(self, b: Any) -> int:
                n = min(len(b), self.left)
                b[:n] = bytes(n)
                self.left -= n
                return n

        tar.addfile(info, io.BufferedReader(Zeros()))
    assert DEFAULT_RATIO * path.stat().st_size < DEFAULT_MIN_BYTES

    with pytest.raises(ProvisioningError) as info_:
        provide(tmp_path, path, "tar.gz")

    msg = str(info_.value)
    assert f"expands to more than {DEFAULT_MIN_BYTES} bytes" in msg
    assert "the default without 'expanded_size'" in msg
    assert no_extraction_left(tmp_path)


def test_the_default_caps_are_what_the_manifest_docs_say() -> None:
    small = ExtractLimits.for_archive(1000, None, None, "m.yaml")
    assert (small.max_bytes, small.max_entries) == (DEFAULT_MIN_BYTES, DEFAULT_MAX_ENTRIES) == (64 << 20, 100_000)
    large = ExtractLimits.for_archive(10 << 30, None, None, "m.yaml")
    assert large.max_bytes == 100 * (10 << 30)
    declared = ExtractLimits.for_archive(1000, 5000, 7, "m.yaml")
    assert (declared.max_bytes, declared.max_entries) == (5500, 8)
    docs = (Path(__file__).resolve().parents[2] / "fixtures" / "models.yaml").read_text()
    assert "100 times the archive's size (at least 64 MiB) and 100,000 members" in docs


def test_an_encrypted_zip_member_is_a_damaged_archive_not_a_runtime_error(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "locked.zip", {"secret.txt": b"s" * 100})
    raw = bytearray(path.read_bytes())
    # Bit 0 of the general purpose flags (offset 6 local, 8 central) marks the member as encrypted.
    local, central = raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")
    raw[local + 6] |= 1
    raw[central + 8] |= 1
    path.write_bytes(bytes(raw))

    with pytest.raises(DamagedArchiveError) as info:
        provide(tmp_path, path, "zip")

    assert "at entry 'secret.txt'" in str(info.value)
    assert "RuntimeError" in str(info.value)


def test_a_damaged_download_is_deleted_so_the_next_run_fetches_it_again(httpserver: HTTPServer, tmp_path: Path) -> None:
    whole = write_tar(tmp_path / "w.tar.gz", {"a.txt": os.urandom(30_000)}, gz=True).read_bytes()
    httpserver.expect_request("/d.tar.gz").respond_with_data(whole[: len(whole) // 2])
    fields = {
        "name": "data",
        "kind": "dataset",
        "url": httpserver.url_for("/d.tar.gz"),
        "unverified": "a test server",
        "archive": "tar.gz",
    }
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump({"schema_version": 1, "assets": [fields]}), encoding="utf-8")

    with pytest.warns(Warning, match="has no checksum"), pytest.raises(DamagedArchiveError) as info:
        make_provisioner(tmp_path, manifest).get("data")

    cached = tmp_path / "cache" / "assets" / "data" / "d.tar.gz"
    assert f"cannot extract {cached}: the archive is damaged" in str(info.value)
    assert "was deleted, so the next run downloads it again" in str(info.value)
    assert not cached.exists()
    assert no_extraction_left(tmp_path)
