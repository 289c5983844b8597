"""Provisioning fixtures: a raw HTTP server on 127.0.0.1 that can drop or stall, and manifest/provisioner builders."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_mlperf.provisioning.manifest import load_catalog
from pytest_mlperf.provisioning.provision import Provisioner

Route = Callable[[BaseHTTPRequestHandler, int, "Hit"], None]


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    sent: int = 0


@dataclass
class RawServer:
    """A programmable HTTP server for behaviours pytest-httpserver cannot produce (dropped or stalled bodies)."""

    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hits_for(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]

    def serve(self, path: str, data: bytes, *, drop_first_after: int | None = None, honour_range: bool = True) -> None:
        """Serve ``data``; the first response stops after ``drop_first_after`` bytes and the socket is cut."""

        def route(h: BaseHTTPRequestHandler, n: int, hit: Hit) -> None:
            start = 0
            rng = h.headers.get("Range", "")
            if honour_range and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[len("bytes=") : -1])
            body = data[start:]
            h.send_response(206 if start else 200)
            if start:
                h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            h.send_header("Content-Length", str(len(body)))
            h.send_header("ETag", '"v1"')
            h.end_headers()
            if n == 0 and drop_first_after is not None:
                body = body[:drop_first_after]
            # Recorded before writing: the client may finish and the test read this before the write returns.
            hit.sent = len(body)
            h.wfile.write(body)
            if n == 0 and drop_first_after is not None:
                h.wfile.flush()
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)

        self.routes[path] = route

    def gated(self, path: str, data: bytes) -> tuple[threading.Event, threading.Event]:
        """Serve ``data`` only once the test sets the returned ``go`` event; ``started`` says a request arrived."""
        started, go = threading.Event(), threading.Event()
        plain = RawServer()
        plain.serve(path, data)

        def route(h: BaseHTTPRequestHandler, n: int, hit: Hit) -> None:
            started.set()
            go.wait(60)
            plain.routes[path](h, n, hit)

        self.routes[path] = route
        return started, go

    def stall(self, path: str) -> None:
        """Accept the request and answer nothing until the test ends (a read timeout for the client)."""
        self.routes[path] = lambda h, n, hit: (self.release.wait(60), None)[1]


@pytest.fixture
def raw_server() -> Iterator[RawServer]:
    server_state = RawServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            count = len(server_state.hits_for(path))
            hit = Hit(path, dict(self.headers.items()))
            server_state.hits.append(hit)
            route = server_state.routes.get(path)
            if route is None:
                self.send_error(404)
                return
            route(self, count, hit)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server_state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server_state.release.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def write_manifest(tmp_path: Path) -> Callable[..., Path]:
    """Write a manifest with the given entries (dicts) and return its path."""
    counter = iter(range(1000))

    def write(*entries: dict[str, Any]) -> Path:
        path = tmp_path / f"manifest-{next(counter)}.yaml"
        path.write_text(yaml.safe_dump({"schema_version": 1, "assets": list(entries)}), encoding="utf-8")
        return path

    return write


@dataclass
class ProvisionerFactory:
    cache_dir: Path
    output: io.StringIO

    def __call__(self, *manifests: Path, **kwargs: Any) -> Provisioner:
        kwargs.setdefault("env", {})  # isolate from the developer's PYTEST_MLPERF_* variables
        kwargs.setdefault("timeout", (2.0, 5.0))
        kwargs.setdefault("retries", 2)
        kwargs.setdefault("backoff_s", 0.01)
        kwargs.setdefault("stream", self.output)
        kwargs.setdefault("tty", False)
        catalog = load_catalog(list(manifests), packaged=False)
        return Provisioner(kwargs.pop("cache_dir", self.cache_dir), manifests=catalog, **kwargs)


@pytest.fixture
def make_provisioner(tmp_path: Path) -> ProvisionerFactory:
    """Provisioners on a per-test cache, quiet, with short timeouts and backoff, and no environment leaking in."""
    return ProvisionerFactory(tmp_path / "cache", io.StringIO())


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache dir per engine test module: the digits model (and anything the engine builds) is made once there."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def digits_images() -> Any:
    """The 359 held-out digit images (N, 1, 8, 8) float32 that the digits suite scores."""
    from pytest_mlperf.models.digits import load_digits, split_indices

    images, labels = load_digits()
    _, held_out = split_indices(labels)
    return images[held_out]


@pytest.fixture(scope="module")
def digits_weights(engine_cache: Path) -> Any:
    """The trained digits weights that every engine's file is written from, read back from the cached ONNX model."""
    from pytest_mlperf.models.digits import digits_weights_from_onnx, ensure_digits_model

    return digits_weights_from_onnx(ensure_digits_model(engine_cache))
