"""A tampered cache: a file changed with its size and mtime restored, an extracted tree edited; --mlperf-verify-cache.

Also the waits of provisioning: a FIFO given as a local copy, and a lock another process never releases.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import filelock
import pytest
import yaml
from provisioning_support import make_provisioner
from pytest_httpserver import HTTPServer

from pytest_mlperf.errors import ProvisioningError
from pytest_mlperf.provisioning.provision import tree_digests

DATA = os.urandom(4096)


def make_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def manifest(tmp_path: Path, **entry: Any) -> Path:
    path = tmp_path / f"manifest-{entry['name']}.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 1, "assets": [{"kind": "model", **entry}]}), encoding="utf-8")
    return path


provisioner = make_provisioner


def tamper_keeping_size_and_mtime(path: Path) -> None:
    st = path.stat()
    path.write_bytes(bytes(st.st_size))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_verify_cache_rehashes_a_tampered_file_and_fetches_it_again(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/blob.bin").respond_with_data(DATA)
    path = manifest(tmp_path, name="blob", url=httpserver.url_for("/blob.bin"), sha256=hashlib.sha256(DATA).hexdigest())
    cached = provisioner(tmp_path, path).get("blob")
    tamper_keeping_size_and_mtime(cached)
    good = hashlib.sha256(DATA).hexdigest()

    # Without verify, the stamp is trusted: that is the cheap path, and why verify exists.
    assert provisioner(tmp_path, path).provision("blob").origin == "cache"

    out = io.StringIO()
    got = provisioner(tmp_path, path, verify=True, stream=out).provision("blob")

    assert got.origin == "download"
    assert got.path.read_bytes() == DATA
    assert got.sha256 == good and got.rehashed
    assert f"--mlperf-verify-cache: the cached file {cached} does not match: expected sha256 {good}" in out.getvalue()
    assert len(httpserver.log) == 2

    again = provisioner(tmp_path, path, verify=True).provision("blob")
    assert (again.origin, again.rehashed, again.sha256) == ("cache", True, good)
    assert len(httpserver.log) == 2


def test_verify_cache_reports_the_digest_it_computed(httpserver: HTTPServer, tmp_path: Path) -> None:
    data = b"no checksum published for this one"
    httpserver.expect_request("/u.bin").respond_with_data(data)
    path = manifest(tmp_path, name="u", url=httpserver.url_for("/u.bin"), unverified="nobody publishes one")
    with pytest.warns(Warning, match="has no checksum"):
        provisioner(tmp_path, path).get("u")

    got = provisioner(tmp_path, path, verify=True).provision("u")

    assert got.origin == "cache" and got.rehashed
    assert got.sha256 == hashlib.sha256(data).hexdigest()
    assert got.md5 == hashlib.md5(data).hexdigest()


def test_verify_cache_in_offline_mode_refuses_a_tampered_file(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/blob.bin").respond_with_data(DATA)
    path = manifest(tmp_path, name="blob", url=httpserver.url_for("/blob.bin"), sha256=hashlib.sha256(DATA).hexdigest())
    tamper_keeping_size_and_mtime(provisioner(tmp_path, path).get("blob"))

    with pytest.raises(ProvisioningError) as info:
        provisioner(tmp_path, path, verify=True, offline=True).get("blob")

    msg = str(info.value)
    assert "--mlperf-verify-cache: the cached file" in msg
    assert "offline mode" in msg and "forbids fetching it again" in msg
    assert len(httpserver.log) == 1


def test_verify_cache_finds_a_changed_extracted_tree_and_restores_it(httpserver: HTTPServer, tmp_path: Path) -> None:
    files = {"d/a.txt": b"alpha", "d/b.txt": b"beta"}
    archive = make_tar(files)
    httpserver.expect_request("/t.tar").respond_with_data(archive)
    path = manifest(
        tmp_path, name="t", url=httpserver.url_for("/t.tar"), sha256=hashlib.sha256(archive).hexdigest(), archive="tar"
    )
    first = provisioner(tmp_path, path).provision("t")
    listing = json.loads((first.path.parent / "t.tar.d.files.json").read_text())
    assert listing == tree_digests(first.path)
    assert sorted(listing["files"]) == ["d/a.txt", "d/b.txt"]
    assert first.tree_sha256 is not None

    (first.path / "d" / "a.txt").write_bytes(b"ALPHA")  # same size, other bytes
    (first.path / "d" / "extra.py").write_text("import os\n")
    assert provisioner(tmp_path, path).provision("t").origin == "cache"  # the cheap path trusts the stamp

    out = io.StringIO()
    got = provisioner(tmp_path, path, verify=True, stream=out).provision("t")

    text = out.getvalue()
    assert "the extracted tree" in text and "differs from what its archive produced" in text
    assert "file 'd/a.txt' changed" in text and "file 'd/extra.py' was added" in text
    assert got.origin == "download"
    assert (got.path / "d" / "a.txt").read_bytes() == b"alpha"
    assert not (got.path / "d" / "extra.py").exists()
    assert got.tree_sha256 == first.tree_sha256

    clean = provisioner(tmp_path, path, verify=True).provision("t")
    assert (clean.origin, clean.rehashed, clean.tree_sha256) == ("cache", True, first.tree_sha256)


def test_verify_cache_rehashes_a_local_override_despite_its_stamp(tmp_path: Path) -> None:
    local = tmp_path / "mine.bin"
    local.write_bytes(DATA)
    path = manifest(tmp_path, name="blob", url="http://127.0.0.1:9/blob.bin", sha256=hashlib.sha256(DATA).hexdigest())
    assert provisioner(tmp_path, path, overrides={"blob": local}).provision("blob").origin == "override"
    tamper_keeping_size_and_mtime(local)

    with pytest.raises(ProvisioningError, match="does not match the manifest"):
        provisioner(tmp_path, path, overrides={"blob": local}, verify=True).get("blob")


def test_a_fifo_as_a_local_copy_is_refused_instead_of_read_forever(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    path = manifest(tmp_path, name="blob", url="http://127.0.0.1:9/blob.bin", sha256=hashlib.sha256(DATA).hexdigest())

    with pytest.raises(ProvisioningError) as info:
        provisioner(tmp_path, path, overrides={"blob": fifo}).get("blob")

    assert f"the local path {fifo}" in str(info.value)
    assert "is not a regular file or a directory" in str(info.value)


def test_a_lock_never_released_is_waited_for_a_bounded_time(tmp_path: Path) -> None:
    path = manifest(tmp_path, name="blob", url="http://127.0.0.1:9/blob.bin", sha256=hashlib.sha256(DATA).hexdigest())
    lock_path = tmp_path / "cache" / "locks" / "blob.lock"
    lock_path.parent.mkdir(parents=True)
    holder = filelock.FileLock(str(lock_path), is_singleton=False)
    holder.acquire()
    try:
        with pytest.raises(ProvisioningError) as info:
            provisioner(tmp_path, path, lock_timeout_s=0.3).get("blob")
    finally:
        holder.release()

    msg = str(info.value)
    assert f"another process still holds {lock_path}" in msg
    assert "raise --mlperf-download-timeout" in msg
