"""Starts and stops a real Open Inference Protocol server (KServe's ModelServer) on 127.0.0.1 for the remote tests.

The server runs from its own virtual environment, because kserve pins protobuf and pydantic releases that the test
environment (tensorflow, onnx) does not have. ``.ci/run`` makes it:

    python -m venv .ci/oip-venv && .ci/oip-venv/bin/pip install kserve onnxruntime

and the tests find its interpreter there, or at ``$PYTEST_MLPERF_OIP_PYTHON``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_SCRIPT = Path(__file__).with_name("oip_server.py")
ENV_VAR = "PYTEST_MLPERF_OIP_PYTHON"
DEFAULT_VENV_PYTHON = ROOT / ".ci" / "oip-venv" / "bin" / "python"
SETUP = "python -m venv .ci/oip-venv && .ci/oip-venv/bin/pip install kserve onnxruntime"
#: A cold start imports kserve, fastapi and onnxruntime: seconds on an idle machine, much more on a loaded one.
START_TIMEOUT_S = 120.0


def server_python() -> str:
    """The interpreter of the environment that has kserve, else a skip naming how to make one."""
    configured = os.environ.get(ENV_VAR)
    python = Path(configured) if configured else DEFAULT_VENV_PYTHON
    if not python.is_file():
        pytest.skip(f"no Open Inference Protocol server environment at {python}; make one with `{SETUP}` "
                    f"(from the repository root) or point ${ENV_VAR} at a python that has kserve and onnxruntime")
    return str(python)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OipServer:
    """One running server process: its URL, its log, and stop()."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, name: str, log: Path,
                 cert: Path | None = None, grpc_port: int | None = None) -> None:
        self.process = process
        self.grpc_port = grpc_port
        self.cert = cert
        self.port = port
        self.name = name
        self.log = log

    @property
    def base(self) -> str:
        return f"{'https' if self.cert else 'http'}://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kserve-v2+{self.base}/models/{self.name}"

    @property
    def grpc_url(self) -> str:
        assert self.grpc_port, "started without grpc=True"
        return f"kserve-v2+grpc://127.0.0.1:{self.grpc_port}/models/{self.name}"

    def metadata(self) -> dict[str, object]:
        with urllib.request.urlopen(f"{self.base}/v2/models/{self.name}", timeout=10) as response:
            document: dict[str, object] = json.loads(response.read())
            return document

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the OIP server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                context = ssl.create_default_context(cafile=str(self.cert)) if self.cert else None
                url = f"{self.base}/v2/models/{self.name}/ready"
                with urllib.request.urlopen(url, timeout=2, context=context) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"the OIP server was not ready within {START_TIMEOUT_S:g} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 (its own CA), made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the TLS tests make a self-signed certificate with the `openssl` command, which is not on PATH")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@contextmanager
def oip_server(log_dir: Path, *args: str, name: str = "digits", env: dict[str, str] | None = None,
               tls: tuple[Path, Path] | None = None, grpc: bool = False) -> Iterator[OipServer]:
    """A server on a free port of 127.0.0.1 serving *name*, with *args* for oip_server.py (over https with *tls*,
    a certificate and key, and with gRPC on a second port with *grpc*); stopped on exit."""
    python = server_python()
    if tls is not None:
        args = (*args, "--ssl-cert", str(tls[0]), "--ssl-key", str(tls[1]))
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    grpc_port = free_port() if grpc else None
    if grpc_port:
        args = (*args, "--grpc-port", str(grpc_port))
    log = log_dir / f"oip-server-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [python, str(SERVER_SCRIPT), "--port", str(port), "--name", name, *args],
            stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
    server = OipServer(process, port, name, log, cert=tls[0] if tls else None, grpc_port=grpc_port)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


if __name__ == "__main__":  # a server by hand: python tests/e2e/remote_server.py --onnx model.onnx
    with oip_server(Path("."), *sys.argv[1:]) as running:
        print(running.url, flush=True)
        running.process.wait()
