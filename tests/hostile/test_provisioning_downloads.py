"""Hostile HTTP servers on 127.0.0.1 against the provisioner: endless, trickling, stalling, lying and failing ones.

Every bound is configured small here (deadline, minimum rate, read timeout); the tests assert on the outcome and the
message (which URL, how many bytes), never on elapsed time.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from provisioning_support import make_provisioner

from pytest_mlperf.provisioning.provision import DownloadFailed, Provisioner

Handler = Callable[[BaseHTTPRequestHandler], None]
DATA = bytes(range(256)) * 20  # 5120 bytes


class Server:
    """Routes by path; ``stop`` ends every endless or stalled response when the test is over."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.stop = threading.Event()
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def endless(self, path: str, *, length: int | None = None) -> None:
        """A 200 whose body never ends (no Content-Length unless *length* lies about it)."""

        def handle(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            if length is not None:
                h.send_header("Content-Length", str(length))
            h.send_header("Connection", "close")
            h.end_headers()
            while not self.stop.is_set():
                h.wfile.write(b"\0" * 1024)
                time.sleep(0.001)

        self.routes[path] = handle

    def body(self, path: str, data: bytes, *, length: bool = True) -> None:
        def handle(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            if length:
                h.send_header("Content-Length", str(len(data)))
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(data)

        self.routes[path] = handle

    def trickle(self, path: str, data: bytes, every_s: float) -> None:
        """The whole body announced, then one byte at a time."""

        def handle(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            for i in range(len(data)):
                if self.stop.wait(every_s):
                    return
                h.wfile.write(data[i : i + 1])
                h.wfile.flush()

        self.routes[path] = handle

    def stall_after(self, path: str, data: bytes, n: int) -> None:
        """Announce the whole body, send *n* bytes, then nothing until the test ends."""

        def handle(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data[:n])
            h.wfile.flush()
            self.stop.wait(60)

        self.routes[path] = handle

    def status(self, path: str, code: int) -> None:
        def handle(h: BaseHTTPRequestHandler) -> None:
            h.send_error(code)

        self.routes[path] = handle


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()

    class Handle(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = state.routes.get(self.path.split("?", 1)[0])
            if route is None:
                self.send_error(404)
                return
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
                route(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        httpd.shutdown()
        httpd.server_close()


def manifest(tmp_path: Path, **entry: Any) -> Path:
    fields = {"name": "blob", "kind": "model", "sha256": hashlib.sha256(DATA).hexdigest(), **entry}
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 1, "assets": [fields]}), encoding="utf-8")
    return path


def provisioner(tmp_path: Path, path: Path, **kwargs: Any) -> Provisioner:
    kwargs.setdefault("deadline_s", 60.0)
    kwargs.setdefault("min_rate", 0.0)
    return make_provisioner(tmp_path, path, **kwargs)


def cache_bytes(tmp_path: Path) -> int:
    return sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*") if p.is_file())


def test_an_endless_body_stops_at_the_declared_size(server: Server, tmp_path: Path) -> None:
    server.endless("/blob.bin")
    url = server.url("/blob.bin")
    path = manifest(tmp_path, url=url, size=len(DATA))

    with pytest.raises(DownloadFailed) as info:
        provisioner(tmp_path, path).get("blob")

    msg = str(info.value)
    assert url in msg
    assert f"longer than the manifest's 'size: {len(DATA)}'" in msg
    assert "bytes received when the transfer was stopped" in msg
    assert "check 'size' and 'url'" in msg
    # Nothing beyond the declared size (plus one read) was kept, and the wrong bytes are gone.
    assert cache_bytes(tmp_path) < 2 * len(DATA) + (1 << 20)
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_a_finite_body_longer_than_declared_is_refused_with_both_sizes(server: Server, tmp_path: Path) -> None:
    server.body("/blob.bin", DATA + b"extra bytes", length=False)
    path = manifest(tmp_path, url=server.url("/blob.bin"), size=len(DATA))

    with pytest.raises(DownloadFailed) as info:
        provisioner(tmp_path, path).get("blob")

    msg = str(info.value)
    assert f"'size: {len(DATA)}'" in msg
    assert f"{len(DATA) + len(b'extra bytes')} bytes received" in msg


def test_an_endless_body_without_a_declared_size_stops_at_the_undeclared_cap(server: Server, tmp_path: Path) -> None:
    server.endless("/blob.bin")
    path = manifest(tmp_path, url=server.url("/blob.bin"))

    with pytest.raises(DownloadFailed) as info:
        provisioner(tmp_path, path, max_undeclared_bytes=50_000).get("blob")

    msg = str(info.value)
    assert "the body is longer than 50000 bytes, the most a download without 'size:'" in msg
    assert "declare the file's size there" in msg
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_an_endless_body_without_a_declared_size_meets_the_deadline(server: Server, tmp_path: Path) -> None:
    server.endless("/blob.bin")
    url = server.url("/blob.bin")
    path = manifest(tmp_path, url=url)

    with pytest.raises(DownloadFailed) as info:
        provisioner(tmp_path, path, deadline_s=1.0).get("blob")

    msg = str(info.value)
    assert url in msg
    assert "abandoned at the download deadline of 1 s (--mlperf-download-timeout)" in msg
    received = int(msg.split("with ", 1)[1].split(" bytes received", 1)[0])
    assert received > 0
    assert "raise --mlperf-download-timeout" in msg


def test_a_trickle_is_abandoned_below_the_minimum_rate_with_the_byte_count(server: Server, tmp_path: Path) -> None:
    server.trickle("/blob.bin", DATA, every_s=0.05)
    url = server.url("/blob.bin")
    path = manifest(tmp_path, url=url, size=len(DATA))

    with pytest.raises(DownloadFailed) as info:
        provisioner(tmp_path, path, min_rate=10_000.0, rate_window_s=0.5).get("blob")

    msg = str(info.value)
    assert url in msg
    assert "too slow:" in msg
    assert "below the minimum of 10000 B/s set by --mlperf-download-min-rate" in msg
    done = int(msg.split("abandoned after ", 1)[1].split(" of ", 1)[0])
    assert 0 < done < len(DATA)
    assert f"abandoned after {done} of {len(DATA)} bytes" in msg


def test_a_trickle_that_keeps_the_rate_check_off_still_meets_the_deadline(server: Server, tmp_path: Path) -> None:
    server.trickle("/blob.bin", DATA, every_s=0.05)
    path = manifest(tmp_path, url=server.url("/blob.bin"), size=len(DATA))

    with pytest.raises(DownloadFailed) as info:
        provisioner(tmp_path, path, deadline_s=1.0, min_rate=0.0).get("blob")

    msg = str(info.value)
    assert "abandoned at the download deadline of 1 s" in msg
    assert f" of {len(DATA)} bytes received" in msg


def test_a_stall_reports_the_bytes_really_received_and_keeps_them(server: Server, tmp_path: Path) -> None:
    server.stall_after("/blob.bin", DATA, 1000)
    url = server.url("/blob.bin")
    path = manifest(tmp_path, url=url, size=len(DATA))

    with pytest.raises(DownloadFailed) as info:
        provisioner(tmp_path, path, timeout=(5.0, 0.5)).get("blob")

    msg = str(info.value)
    assert f"the server sent nothing for 0.5 s after 1000 of {len(DATA)} bytes" in msg
    assert "after 0 bytes" not in msg
    # The 1000 bytes are kept for the next attempt to resume from.
    part = tmp_path / "cache" / "assets" / "blob" / "blob.bin.part"
    assert part.read_bytes() == DATA[:1000]


def test_a_404_on_the_mirror_says_the_mirror_lacks_the_file(server: Server, tmp_path: Path) -> None:
    server.status("/upstream/blob.bin", 503)
    path = manifest(tmp_path, url=server.url("/upstream/blob.bin"))
    mirror = server.url("/mirror")

    with pytest.raises(DownloadFailed) as info:
        provisioner(tmp_path, path, mirror=mirror).get("blob")

    msg = str(info.value)
    assert f"{mirror}/blob.bin (the mirror): HTTP 404" in msg
    assert "the mirror has no blob.bin at that path" in msg
    assert f"put it at {mirror}/blob.bin, or fix the mirror's base URL" in msg
    # The upstream's 503 is told apart: a server-side failure, worth retrying later.
    assert "HTTP 503" in msg
    assert "the server failed (a server-side error)" in msg
    assert "retry later" in msg
    kinds = {(f.status, f.kind) for f in info.value.failures}
    assert kinds == {(404, "http"), (503, "http")}


def test_a_404_alone_gives_no_retry_later_advice(server: Server, tmp_path: Path) -> None:
    path = manifest(tmp_path, url=server.url("/nowhere/blob.bin"))

    with pytest.raises(DownloadFailed) as info:
        provisioner(tmp_path, path, retries=3).get("blob")

    msg = str(info.value)
    assert "the file is not at that URL" in msg
    assert "retry later" not in msg
    assert info.value.failures[0].attempts == 1  # a 404 is not retried


def test_a_403_is_a_refusal_not_a_missing_file(server: Server, tmp_path: Path) -> None:
    server.status("/blob.bin", 403)
    path = manifest(tmp_path, url=server.url("/blob.bin"))

    with pytest.raises(DownloadFailed) as info:
        provisioner(tmp_path, path, retries=3).get("blob")

    msg = str(info.value)
    assert "HTTP 403" in msg
    assert "the server refuses this request (a client error)" in msg
    assert "check the URL and its access rights" in msg
    assert "retry later" not in msg
    assert info.value.failures[0].attempts == 1


def test_mirror_credentials_never_reach_messages_or_progress_lines(server: Server, tmp_path: Path) -> None:
    server.body("/mirror/blob.bin", DATA)
    path = manifest(tmp_path, url=server.url("/upstream/blob.bin"))
    secret_mirror = f"http://alice:s3cr3t-pw@127.0.0.1:{server.port}/mirror"
    out = io.StringIO()

    got = provisioner(tmp_path, path, mirror=secret_mirror, stream=out).get("blob")
    assert got.read_bytes() == DATA
    assert "s3cr3t-pw" not in out.getvalue()
    assert f"http://***@127.0.0.1:{server.port}/mirror/blob.bin" in out.getvalue()

    missing = manifest(tmp_path, name="other", url=server.url("/upstream/other.bin"), filename="other.bin")
    with pytest.raises(DownloadFailed) as info:
        provisioner(tmp_path, missing, mirror=secret_mirror, stream=out).get("other")
    msg = str(info.value)
    assert "s3cr3t-pw" not in msg and "alice" not in msg
    assert f"http://***@127.0.0.1:{server.port}/mirror/other.bin (the mirror): HTTP 404" in msg


def test_the_download_options_reach_the_provisioner_in_a_real_run(
    server: Server, tmp_path: Path, pytester: pytest.Pytester
) -> None:
    server.endless("/blob.bin")
    path = manifest(tmp_path, url=server.url("/blob.bin"))
    pytester.makepyfile("def test_asset(mlperf_assets):\n    mlperf_assets.get('blob')\n")
    root = Path(__file__).resolve().parents[2]
    pytester._monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    pytester._monkeypatch.delenv("PYTEST_MLPERF_OFFLINE", raising=False)
    pytester._monkeypatch.delenv("PYTEST_MLPERF_MIRROR", raising=False)

    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--mlperf-manifest={path}", f"--mlperf-cache-dir={tmp_path / 'cache'}",
        "--mlperf-download-timeout=1", "--mlperf-verify-cache",
    )  # fmt: skip

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*abandoned at the download deadline of 1 s (--mlperf-download-timeout)*"])
