"""Remote backend: sends each batch to a model server over the Open Inference Protocol (KServe v2), REST or gRPC.

The model is a URL, ``kserve-v2+http://HOST:PORT/models/NAME[/versions/V]`` (``kserve-v2+https://`` for TLS), given
as the model of ``mlperf.run`` or as ``--mlperf-backend-option remote.url=...``. Before the first query the server's
readiness, the model's readiness and its metadata (input and output names, datatypes, shapes) are checked, and the
dataset's first sample is checked against that metadata. Every batch is one ``POST .../infer``: with Triton's binary
tensor extension where the server accepts it (raw little-endian bytes after a JSON header), else JSON; or one gRPC
``ModelInfer`` with raw tensors for a ``kserve-v2+grpc(s)://`` URL (backends/oip_grpc.py).

Many requests in flight: the backend is thread-safe and asks the harness for ``concurrency`` inference threads in
Server and Offline (each blocks on its own pooled keep-alive connection, with the GIL released); LoadGen's issue
callback still only enqueues. SingleStream and MultiStream keep one request in flight, as LoadGen waits for each.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import numpy as np

from pytest_mlperf.backends.base import (
    BackendOptions,
    as_feeds,
    fit_batch,
    warm_up,
)
from pytest_mlperf.backends.options import check_options
from pytest_mlperf.datasets.base import Inputs
from pytest_mlperf.errors import InferenceError, MLPerfWarning, ModelError
from pytest_mlperf.redact import redact_url

if TYPE_CHECKING:
    from pytest_mlperf.backends.oip_grpc import GrpcTransport

#: The scheme prefix that makes a model reference a server URL (``mlperf.run("kserve-v2+http://...", ...)``).
SCHEME_PREFIX = "kserve-v2+"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 2
#: In-flight requests in Server and Offline: enough to hide a loopback or LAN round trip behind the server's own
#: work at the batch sizes the harness sends; raise it for a server with many model instances or a long round trip.
DEFAULT_CONCURRENCY = 16
#: How much of an error body the failure message quotes.
_ERROR_BODY_CHARS = 300

#: Open Inference Protocol datatypes and the numpy dtypes they carry (BYTES, variable-length strings, is not
#: supported: no MLPerf input or output needs it).
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_DATATYPE_OF = {dtype: name for name, dtype in DATATYPES.items()}


def is_remote_model(model: object) -> bool:
    """Whether *model* is a server URL this backend serves (``kserve-v2+http(s)://...``)."""
    return isinstance(model, str) and model.startswith(SCHEME_PREFIX)


@dataclass(frozen=True)
class Endpoint:
    """A model on a server: the base URL (scheme, host, port, any path prefix), the model name and version."""

    base: str
    model: str
    version: str | None = None

    @property
    def model_path(self) -> str:
        path = f"/v2/models/{quote(self.model, safe='')}"
        return path + (f"/versions/{quote(self.version, safe='')}" if self.version else "")

    @property
    def tls(self) -> bool:
        return self.base.startswith(("https://", "grpcs://"))

    @property
    def grpc(self) -> bool:
        return self.base.startswith(("grpc://", "grpcs://"))

    @property
    def target(self) -> str:
        """HOST:PORT, as grpcio dials it."""
        return self.base.split("://", 1)[1]

    def __str__(self) -> str:
        suffix = f"/versions/{self.version}" if self.version else ""
        return f"{SCHEME_PREFIX}{self.base}/models/{self.model}{suffix}"


def parse_url(text: str, source: str) -> Endpoint:
    """*text* (``[kserve-v2+]http(s)://HOST[:PORT][/PREFIX]/models/NAME[/versions/V]``) as an Endpoint; *source*
    names where it came from in the error."""
    raw = text.strip()
    url = raw[len(SCHEME_PREFIX):] if raw.startswith(SCHEME_PREFIX) else raw
    form = f"{SCHEME_PREFIX}http(s)://HOST:PORT/models/NAME[/versions/V] (or grpc(s)://)"
    shown = redact_url(raw)  # a refused URL is echoed, but never a secret in its userinfo or query
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a port that is no number or out of range)
    except ValueError:
        raise ModelError(f"{source}: {shown!r} is not a valid URL; give {form}") from None
    if parts.scheme not in ("http", "https", "grpc", "grpcs") or not parts.hostname:
        raise ModelError(f"{source}: {shown!r} is not a model server URL; give {form}")
    if parts.username or parts.password:
        raise ModelError(
            f"{source}: the URL carries credentials; drop them from the URL and give a bearer token through an "
            "environment variable instead (--mlperf-backend-option remote.token_env=NAME)"
        )
    if parts.query or parts.fragment:
        raise ModelError(f"{source}: {shown!r} has a query or fragment; give {form}")
    segments = parts.path.rstrip("/").split("/")
    version: str | None = None
    if len(segments) >= 2 and segments[-2] == "versions":
        version = segments[-1]
        segments = segments[:-2]
    if len(segments) < 2 or segments[-2] != "models" or not segments[-1]:
        raise ModelError(f"{source}: {shown!r} names no model; give {form}")
    port = parts.port
    if parts.scheme.startswith("grpc") and (port is None or len(segments) > 3):
        raise ModelError(f"{source}: {shown!r}: a gRPC URL needs a port and no path prefix, as in "
                         f"{SCHEME_PREFIX}grpc://HOST:8081/models/NAME")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    base = f"{parts.scheme}://{host}{f':{port}' if port else ''}{'/'.join(segments[:-2])}"
    return Endpoint(base=base, model=segments[-1], version=version or None)


def _number(options: BackendOptions, key: str, default: float) -> float:
    raw = options.option(key)  # checked by options.check_options
    return default if raw is None else float(raw)


def _flag(options: BackendOptions, key: str, default: str) -> str:
    raw = options.option(key)
    return default if raw is None else raw.strip().lower()


def _is_loopback(base: str) -> bool:
    host = urlsplit(base).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RemoteBackend:
    """A model behind an Open Inference Protocol server, reached over pooled urllib3 connections (or gRPC)."""

    name = "remote"
    thread_safe = True  # urllib3's pool hands each thread its own connection
    #: The local file a suite passes alongside remote.url= is not what runs: the harness must not fingerprint it.
    model_is_remote = True

    def __init__(self, model: Path | str, options: BackendOptions) -> None:
        import urllib3

        check_options("remote", options)
        self.options = options
        url_option = options.option("url")
        if is_remote_model(model):
            self.endpoint = parse_url(str(model), "the model URL")
        elif url_option:
            self.endpoint = parse_url(url_option, "--mlperf-backend-option remote.url")
        else:
            raise ModelError(
                f"the remote backend needs a model server URL, not {model}: pass mlperf.run("
                f"'{SCHEME_PREFIX}http://HOST:PORT/models/NAME', ...) or --mlperf-backend-option remote.url=URL"
            )
        self.timeout_s = _number(options, "timeout_s", DEFAULT_TIMEOUT_S)
        self.retries = int(_number(options, "retries", DEFAULT_RETRIES))
        self.concurrency = int(_number(options, "concurrency", DEFAULT_CONCURRENCY))
        binary = _flag(options, "binary", "auto")
        self._binary: bool | None = None if binary == "auto" else binary == "true"
        self._binary_lock = threading.Lock()
        self.digest = options.option("digest")
        self.tls_verify = _flag(options, "insecure", "false") == "false"
        headers = {"Accept": "application/json"}
        token_env = options.option("token_env")
        if token_env:
            token = os.environ.get(token_env, "")
            if not token:
                raise ModelError(
                    f"--mlperf-backend-option remote.token_env={token_env}: the environment variable {token_env} is "
                    "not set or empty; export the bearer token in it"
                )
            if not self.endpoint.tls and not _is_loopback(self.endpoint.base):
                warnings.warn(
                    MLPerfWarning(
                        f"{self.endpoint}: the bearer token from ${token_env} is sent over plain http to a host "
                        "that is not this machine; anyone on the path can read it. Use https."
                    ),
                    stacklevel=2,
                )
            headers["Authorization"] = f"Bearer {token}"
        tls: dict[str, Any] = {}
        ca_bundle = options.option("ca_bundle")
        if self.endpoint.tls:
            if ca_bundle and not Path(ca_bundle).is_file():
                raise ModelError(f"--mlperf-backend-option remote.ca_bundle={ca_bundle}: no such file")
            if not self.tls_verify and self.endpoint.grpc:
                raise ModelError(
                    f"{self.endpoint}: remote.insecure=true is not available over gRPC (grpcio always verifies); "
                    "give the server's CA with remote.ca_bundle=PATH instead"
                )
            if self.tls_verify:
                tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": ca_bundle or None}
            else:
                tls = {"cert_reqs": "CERT_NONE", "assert_hostname": False}
                warnings.warn(
                    MLPerfWarning(
                        f"{self.endpoint}: TLS certificate verification is OFF (remote.insecure=true): the numbers "
                        "may come from any server that answers on that address"
                    ),
                    stacklevel=2,
                )
        retry = urllib3.Retry(
            total=self.retries,
            connect=self.retries,
            read=self.retries,
            status=self.retries,
            # Inference is idempotent: a POST that timed out or met a busy server may be sent again.
            allowed_methods=None,
            status_forcelist=(502, 503, 504),
            backoff_factor=0.05,
            backoff_max=1.0,
            raise_on_status=False,
            raise_on_redirect=False,
            redirect=0,
        )
        self._http = urllib3.PoolManager(
            num_pools=1,
            maxsize=self.concurrency,
            block=True,  # never more connections than threads; a thread waits for a free one
            headers=headers,
            retries=retry,
            timeout=urllib3.Timeout(connect=min(self.timeout_s, 10.0), read=self.timeout_s),
            **tls,
        )
        self._headers = headers
        self._urllib3_version = str(getattr(urllib3, "__version__", ""))
        self._grpc: GrpcTransport | None = None
        if self.endpoint.grpc:
            try:
                from pytest_mlperf.backends.oip_grpc import GrpcTransport  # imports grpcio and protobuf
            except ImportError as exc:
                raise ModelError(
                    f"{self.endpoint}: a gRPC URL needs grpcio and protobuf ({exc}); install them with "
                    "pip install \"pytest-mlperf[remote]\", or use the server's REST port (kserve-v2+http://...)"
                ) from None

            self._grpc = GrpcTransport(
                self.endpoint.target, str(self.endpoint), tls=self.endpoint.tls, ca_bundle=ca_bundle,
                token=headers.get("Authorization", "").removeprefix("Bearer ") or None,
                timeout_s=self.timeout_s, retries=self.retries,
            )
            self._binary = True  # gRPC always carries raw tensors
        self._check_ready()

    # -- protocol plumbing ------------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.endpoint.base + path

    def _call(self, method: str, path: str, body: bytes | None = None,
              headers: Mapping[str, str] | None = None, error: type[Exception] = InferenceError) -> Any:
        import urllib3

        try:
            # urllib3 replaces (does not extend) the pool's headers with a request's own: merge them here.
            merged = {**self._headers, **headers} if headers else self._headers
            return self._http.request(method, self._url(path), body=body, headers=merged)
        except urllib3.exceptions.MaxRetryError as exc:
            raise error(
                f"{self.endpoint}: {method} {path} failed after {self.retries} retries "
                f"(timeout {self.timeout_s:g} s each): {_reason(exc.reason)}"
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            raise error(f"{self.endpoint}: {method} {path} failed: {_reason(exc)}") from None

    def _get_json(self, path: str, what: str) -> Any:
        response = self._call("GET", path, error=ModelError)
        if response.status != 200:
            raise ModelError(f"{self.endpoint}: {what} (GET {path}) answered HTTP {response.status}"
                             f"{_error_text(response.data)}")
        try:
            return json.loads(response.data)
        except ValueError:
            raise ModelError(f"{self.endpoint}: {what} (GET {path}) did not answer JSON") from None

    def _check_ready(self) -> None:
        if self._grpc is not None:
            self._grpc.ready(self.endpoint.model, self.endpoint.version)
            server = self._grpc.server_metadata()
            metadata = self._grpc.model_metadata(self.endpoint.model, self.endpoint.version)
        else:
            server, metadata = self._check_ready_rest()
        self._read_metadata(server, metadata)

    def _check_ready_rest(self) -> tuple[Any, Any]:
        for path, what in (("/v2/health/ready", "the server's readiness"),
                           (self.endpoint.model_path + "/ready", f"model {self.endpoint.model!r}'s readiness")):
            response = self._call("GET", path, error=ModelError)
            if response.status != 200:
                raise ModelError(
                    f"{self.endpoint}: {what} (GET {path}) answered HTTP {response.status}{_error_text(response.data)}"
                    "; start the server and load the model, or check the URL's host, port and model name"
                )
        return self._get_json("/v2", "the server metadata"), self._get_json(self.endpoint.model_path,
                                                                             "the model metadata")

    def _read_metadata(self, server: Any, metadata: Any) -> None:
        self.server = {"name": str(server.get("name", "")), "version": str(server.get("version", ""))}
        self.version = " ".join(v for v in self.server.values() if v) or "unknown"
        try:
            self.inputs = _tensors(metadata["inputs"])
            self.outputs = _tensors(metadata["outputs"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"{self.endpoint}: the model metadata is malformed ({exc}): {str(metadata)[:200]}"
            ) from None
        self.input_names = tuple(self.inputs)
        self.output_names = tuple(self.outputs)
        versions = metadata.get("versions") or []
        self.model_info = {
            "name": str(metadata.get("name", self.endpoint.model)),
            "version": self.endpoint.version or (str(versions[0]) if len(versions) == 1 else None),
            "versions": [str(v) for v in versions],
            "platform": str(metadata.get("platform", "")),
        }
        first = [shape[0] for shape in (t[1] for t in self.inputs.values()) if shape]
        self.max_batch: int | None = first[0] if first and first[0] > 0 else None

    @property
    def model_identity(self) -> str:
        """What the server reports the model to be, and the digest the user gave (remote.digest)."""
        info = self.model_info
        text = f"{info['name']} version {info['version'] or 'default'} on {info['platform'] or 'unknown platform'}"
        return text + (f" digest {self.digest}" if self.digest else "")

    # -- inference ---------------------------------------------------------------------------------------------

    def run(self, inputs: Inputs) -> Mapping[str, np.ndarray]:
        return fit_batch(self._run_batch, inputs, self.max_batch)

    def _run_batch(self, inputs: Inputs) -> Mapping[str, np.ndarray]:
        feeds = as_feeds(inputs, self.input_names, self.endpoint)
        binary = self._binary
        if binary is None:
            with self._binary_lock:  # the first request finds out whether the server speaks binary tensors
                if self._binary is None:
                    try:
                        outputs = self._infer(feeds, binary=True)
                    except _Unsupported:
                        self._binary = False
                    else:
                        self._binary = True
                        return outputs
            binary = self._binary
        return self._infer(feeds, binary=binary)

    def _infer(self, feeds: Mapping[str, np.ndarray], *, binary: bool) -> dict[str, np.ndarray]:
        n = len(next(iter(feeds.values())))
        datatypes: dict[str, str] = {}
        for name, array in feeds.items():
            datatype = _DATATYPE_OF.get(array.dtype.newbyteorder("=")) if array.dtype.byteorder != "|" else None
            datatype = datatype or _DATATYPE_OF.get(array.dtype)
            if datatype is None:
                raise InferenceError(f"{self.endpoint}: input {name!r} has dtype {array.dtype}, which the Open "
                                     f"Inference Protocol cannot carry; supported: {', '.join(DATATYPES)}")
            datatypes[name] = datatype
        if self._grpc is not None:
            where = "gRPC ModelInfer"
            try:
                outputs = self._grpc.infer(self.endpoint.model, self.endpoint.version, feeds, datatypes,
                                           self.output_names, DATATYPES)
            except (KeyError, TypeError, ValueError) as exc:
                raise InferenceError(f"{self.endpoint}: {where} gave a malformed inference response: {exc}") from None
        else:
            where = f"POST {self.endpoint.model_path}/infer"
            outputs = self._infer_rest(feeds, datatypes, binary=binary)
        return self._checked(outputs, n, where)

    def _infer_rest(self, feeds: Mapping[str, np.ndarray], datatypes: Mapping[str, str], *, binary: bool
                    ) -> dict[str, np.ndarray]:
        tensors = []
        chunks: list[bytes] = []
        for name, array in feeds.items():
            tensor: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatypes[name]}
            if binary:
                raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
                tensor["parameters"] = {"binary_data_size": len(raw)}
                chunks.append(raw)
            else:
                tensor["data"] = array.reshape(-1).tolist()
            tensors.append(tensor)
        request: dict[str, Any] = {"inputs": tensors}
        if binary:
            request["outputs"] = [{"name": o, "parameters": {"binary_data": True}} for o in self.output_names]
            header = json.dumps(request, separators=(",", ":")).encode()
            body = b"".join([header, *chunks])
            headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
        else:
            body = json.dumps(request, separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json"}
        path = self.endpoint.model_path + "/infer"
        response = self._call("POST", path, body, headers)
        if response.status != 200:
            if binary and self._binary is None and response.status in _REFUSED_BINARY:
                raise _Unsupported
            raise InferenceError(
                f"{self.endpoint}: POST {path} answered HTTP {response.status}{_error_text(response.data)}"
            )
        try:
            outputs = self._decode(response)
        except (KeyError, TypeError, ValueError) as exc:
            if binary and self._binary is None:
                raise _Unsupported from None
            raise InferenceError(f"{self.endpoint}: POST {path} gave a malformed inference response: {exc}") from None
        return outputs

    def _checked(self, outputs: dict[str, np.ndarray], n: int, where: str) -> dict[str, np.ndarray]:
        """*outputs* when every wanted output is there with one row per sample, else an error naming the server."""
        for name, out in outputs.items():
            if out.ndim == 0 or len(out) != n:
                raise InferenceError(
                    f"{self.endpoint}: {where} gave a malformed inference response: output {name!r} has shape "
                    f"{list(out.shape)} for a batch of {n}"
                )
        missing = [o for o in self.output_names if o not in outputs]
        if missing:
            raise InferenceError(
                f"{self.endpoint}: {where} gave a malformed inference response: output {missing[0]!r} is missing "
                f"(got {', '.join(outputs) or 'none'})"
            )
        return outputs

    def _decode(self, response: Any) -> dict[str, np.ndarray]:
        data: bytes = response.data
        length = response.headers.get("Inference-Header-Content-Length")
        header_end = int(length) if length is not None else len(data)
        if not 0 < header_end <= len(data):
            raise ValueError(f"Inference-Header-Content-Length {length} for a body of {len(data)} bytes")
        document = json.loads(data[:header_end])
        offset = header_end
        outputs: dict[str, np.ndarray] = {}
        for tensor in document["outputs"]:
            name, datatype = str(tensor["name"]), str(tensor["datatype"])
            shape = [int(d) for d in tensor["shape"]]
            dtype = DATATYPES.get(datatype)
            if dtype is None:
                raise ValueError(f"output {name!r} has datatype {datatype!r}; supported: {', '.join(DATATYPES)}")
            count = math.prod(shape)
            size = (tensor.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                size = int(size)
                if size != count * dtype.itemsize or offset + size > len(data):
                    raise ValueError(f"output {name!r}: {size} binary bytes for shape {shape} {datatype}")
                values = np.frombuffer(data, dtype=dtype.newbyteorder("<"), count=count, offset=offset)
                offset += size
            else:
                values = np.asarray(tensor["data"], dtype=dtype).reshape(-1)
                if values.size != count:
                    raise ValueError(f"output {name!r} has {values.size} values for shape {shape}")
            outputs[name] = values.reshape(shape)
        return outputs

    def check_sample(self, sample: Inputs) -> None:
        """Raise ModelError naming both sides when *sample* (one sample, batch axis 1) does not fit the metadata."""
        feeds = as_feeds(sample, self.input_names, self.endpoint)
        given = {name: (_DATATYPE_OF.get(a.dtype, str(a.dtype)), list(a.shape[1:])) for name, a in feeds.items()}
        # The metadata's shapes lead with the batch axis (-1 when free), as the protocol's batching servers give them.
        wanted = {name: (dt, shape[1:]) for name, (dt, shape) in self.inputs.items()}

        def show(tensors: Mapping[str, tuple[str, list[int]]]) -> str:
            return ", ".join(f"{name!r} {dt} [{','.join(map(str, shape))}]" for name, (dt, shape) in tensors.items())

        fits = set(given) == set(wanted) and all(
            given[name][0] == wanted[name][0]
            and len(given[name][1]) == len(wanted[name][1])
            and all(w in (-1, g) for g, w in zip(given[name][1], wanted[name][1], strict=True))
            for name in given
        )
        if not fits:
            raise ModelError(
                f"the dataset does not fit the served model: the dataset gives {show(given)} per sample; "
                f"{self.endpoint} expects {show(wanted)} (after the batch axis); serve the model the dataset was "
                "made for, or preprocess the dataset to the model's inputs"
            )

    def warmup(self, sample: Inputs) -> None:
        self.check_sample(sample)
        warm_up(self.run, sample, self.options)

    def describe(self) -> dict[str, Any]:
        return self.options.describe() | {
            "version": self.version,
            "url": str(self.endpoint),
            "server": dict(self.server),
            "model": dict(self.model_info),
            "protocol": "grpc" if self._grpc is not None
            else "rest" + {None: "", True: "+binary", False: "+json"}[self._binary],
            "tls_verify": self.tls_verify if self.endpoint.tls else None,
            "concurrency": self.concurrency,
            "client": self._grpc.client if self._grpc is not None else f"urllib3 {self._urllib3_version}",
        }

    def close(self) -> None:
        self._http.clear()
        if self._grpc is not None:
            self._grpc.close()


#: What a server that does not parse binary tensors answers them with (a bad request, an unsupported media type);
#: an auth or routing error (401, 403, 404) says nothing about binary tensors and is reported as it is.
_REFUSED_BINARY = (400, 415, 422, 501)


class _Unsupported(Exception):
    """The server refused a binary-tensor request: the backend falls back to JSON."""


def _tensors(entries: Any) -> dict[str, tuple[str, list[int]]]:
    out: dict[str, tuple[str, list[int]]] = {}
    for entry in entries:
        datatype = str(entry["datatype"])
        if datatype not in DATATYPES:
            raise ValueError(f"tensor {entry['name']!r} has datatype {datatype}; supported: {', '.join(DATATYPES)}")
        out[str(entry["name"])] = (datatype, [int(d) for d in entry["shape"]])
    if not out:
        raise ValueError("no tensors listed")
    return out


def _reason(exc: object) -> str:
    text = str(exc)
    # urllib3 wraps the socket error in the pool's repr: keep the part that says what happened.
    if "Caused by" in text or "Failed to establish" in text:
        text = text.split(": ", 1)[-1]
    return f"{type(exc).__name__}: {text}"


def _error_text(data: bytes) -> str:
    text = data[:_ERROR_BODY_CHARS].decode("utf-8", "replace").strip()
    return f": {text}" if text else ""
