"""The Open Inference Protocol's gRPC transport: its messages, built in code from their field numbers, over grpcio.

Only the messages the remote backend sends and reads are declared (readiness, metadata, ModelInfer), in a private
descriptor pool, so they never collide with another copy of the ``inference`` package (KServe's, Triton's) loaded
in the same process. Fields left out (the ``parameters`` maps) are skipped on the wire, as protobuf does with any
unknown field. Tensors travel as ``raw_input_contents`` / ``raw_output_contents`` (little-endian bytes); typed
``contents`` are read too, for servers that answer with them.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from pytest_mlperf.errors import InferenceError, ModelError

SERVICE = "/inference.GRPCInferenceService/"
#: InferTensorContents field per datatype (BOOL -> bool_contents, FP32 -> fp32_contents, ...).
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
}
#: Status codes worth another try: the server is (re)starting or a request outlived its deadline.
RETRIED = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")

_STRING, _INT64, _BYTES, _MESSAGE, _BOOL = 9, 3, 12, 11, 8
_INT32, _UINT32, _UINT64, _FLOAT, _DOUBLE = 5, 13, 4, 2, 1
_ONE, _MANY = 1, 3

# message name -> fields (name, number, type, repeated, message type)
_MESSAGES: dict[str, tuple[tuple[str, int, int, bool, str], ...]] = {
    "ServerReadyRequest": (),
    "ServerReadyResponse": (("ready", 1, _BOOL, False, ""),),
    "ModelReadyRequest": (("name", 1, _STRING, False, ""), ("version", 2, _STRING, False, "")),
    "ModelReadyResponse": (("ready", 1, _BOOL, False, ""),),
    "ServerMetadataRequest": (),
    "ServerMetadataResponse": (
        ("name", 1, _STRING, False, ""), ("version", 2, _STRING, False, ""), ("extensions", 3, _STRING, True, ""),
    ),
    "ModelMetadataRequest": (("name", 1, _STRING, False, ""), ("version", 2, _STRING, False, "")),
    "TensorMetadata": (("name", 1, _STRING, False, ""), ("datatype", 2, _STRING, False, ""),
                       ("shape", 3, _INT64, True, "")),
    "ModelMetadataResponse": (
        ("name", 1, _STRING, False, ""), ("versions", 2, _STRING, True, ""), ("platform", 3, _STRING, False, ""),
        ("inputs", 4, _MESSAGE, True, "TensorMetadata"), ("outputs", 5, _MESSAGE, True, "TensorMetadata"),
    ),
    "InferTensorContents": (
        ("bool_contents", 1, _BOOL, True, ""), ("int_contents", 2, _INT32, True, ""),
        ("int64_contents", 3, _INT64, True, ""), ("uint_contents", 4, _UINT32, True, ""),
        ("uint64_contents", 5, _UINT64, True, ""), ("fp32_contents", 6, _FLOAT, True, ""),
        ("fp64_contents", 7, _DOUBLE, True, ""), ("bytes_contents", 8, _BYTES, True, ""),
    ),
    "Tensor": (  # InferInputTensor and InferOutputTensor share their field numbers
        ("name", 1, _STRING, False, ""), ("datatype", 2, _STRING, False, ""), ("shape", 3, _INT64, True, ""),
        ("contents", 5, _MESSAGE, False, "InferTensorContents"),
    ),
    "RequestedOutput": (("name", 1, _STRING, False, ""),),
    "ModelInferRequest": (
        ("model_name", 1, _STRING, False, ""), ("model_version", 2, _STRING, False, ""),
        ("id", 3, _STRING, False, ""), ("inputs", 5, _MESSAGE, True, "Tensor"),
        ("outputs", 6, _MESSAGE, True, "RequestedOutput"), ("raw_input_contents", 7, _BYTES, True, ""),
    ),
    "ModelInferResponse": (
        ("model_name", 1, _STRING, False, ""), ("model_version", 2, _STRING, False, ""),
        ("id", 3, _STRING, False, ""), ("outputs", 5, _MESSAGE, True, "Tensor"),
        ("raw_output_contents", 6, _BYTES, True, ""),
    ),
}


@functools.cache
def messages() -> dict[str, Any]:
    """The message classes by name, built once from :data:`_MESSAGES` in a pool of their own."""
    package = "pytest_mlperf.oip"
    proto = descriptor_pb2.FileDescriptorProto(name="pytest_mlperf_oip.proto", package=package, syntax="proto3")
    for name, fields in _MESSAGES.items():
        message = proto.message_type.add(name=name)
        for field_name, number, kind, repeated, type_name in fields:
            field = message.field.add(name=field_name, number=number, type=kind, label=_MANY if repeated else _ONE)
            if type_name:
                field.type_name = f".{package}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
            for name in _MESSAGES}


class GrpcTransport:
    """One grpcio channel to the server (HTTP/2 multiplexes every in-flight request over it)."""

    def __init__(self, target: str, shown: str, *, tls: bool, ca_bundle: str | None, token: str | None,
                 timeout_s: float, retries: int) -> None:
        self.shown = shown
        self.client = f"grpcio {grpc.__version__}"
        self.timeout_s = timeout_s
        self.retries = retries
        self._messages = messages()
        options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        if tls:
            root = None
            if ca_bundle:
                with open(ca_bundle, "rb") as handle:
                    root = handle.read()
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=root), options)
        else:
            self._channel = grpc.insecure_channel(target, options)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._calls: dict[str, Any] = {}

    def call(self, method: str, request: Any, error: type[Exception] = InferenceError) -> Any:
        """*method* of the inference service with bounded retries on a busy or restarting server."""
        stub = self._calls.get(method)
        if stub is None:
            response = self._messages[f"{method}Response"]
            stub = self._channel.unary_unary(SERVICE + method, request_serializer=lambda m: m.SerializeToString(),
                                             response_deserializer=response.FromString)
            self._calls[method] = stub
        for attempt in range(self.retries + 1):
            try:
                return stub(request, timeout=self.timeout_s, metadata=self._metadata)
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                name = getattr(code, "name", str(code))
                details = exc.details() if hasattr(exc, "details") else str(exc)
                if name in RETRIED and attempt < self.retries:
                    time.sleep(min(1.0, 0.05 * 2**attempt))
                    continue
                tries = f" after {attempt} retries" if attempt else ""
                raise error(f"{self.shown}: gRPC {method} failed{tries} (deadline {self.timeout_s:g} s each): "
                            f"{name}: {details}") from None
        raise AssertionError("unreachable")

    def ready(self, model: str, version: str | None) -> None:
        m = self._messages
        if not self.call("ServerReady", m["ServerReadyRequest"](), ModelError).ready:
            raise ModelError(f"{self.shown}: the server reports it is not ready (gRPC ServerReady)")
        if not self.call("ModelReady", m["ModelReadyRequest"](name=model, version=version or ""), ModelError).ready:
            raise ModelError(f"{self.shown}: model {model!r} is not ready (gRPC ModelReady)")

    def server_metadata(self) -> dict[str, Any]:
        reply = self.call("ServerMetadata", self._messages["ServerMetadataRequest"](), ModelError)
        return {"name": reply.name, "version": reply.version, "extensions": list(reply.extensions)}

    def model_metadata(self, model: str, version: str | None) -> dict[str, Any]:
        request = self._messages["ModelMetadataRequest"](name=model, version=version or "")
        reply = self.call("ModelMetadata", request, ModelError)

        def tensors(entries: Sequence[Any]) -> list[dict[str, Any]]:
            return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in entries]

        return {"name": reply.name, "versions": list(reply.versions), "platform": reply.platform,
                "inputs": tensors(reply.inputs), "outputs": tensors(reply.outputs)}

    def infer(self, model: str, version: str | None, feeds: Mapping[str, np.ndarray], datatypes: Mapping[str, str],
              outputs: Sequence[str], dtypes: Mapping[str, np.dtype[Any]]) -> dict[str, np.ndarray]:
        """One ModelInfer with raw tensors; raises ValueError on a malformed reply (the caller names it)."""
        m = self._messages
        request = m["ModelInferRequest"](model_name=model, model_version=version or "")
        for name, array in feeds.items():
            request.inputs.add(name=name, datatype=datatypes[name], shape=array.shape)
            request.raw_input_contents.append(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
                                              .tobytes())
        for name in outputs:
            request.outputs.add(name=name)
        reply = self.call("ModelInfer", request)
        raw = list(reply.raw_output_contents)
        if raw and len(raw) != len(reply.outputs):
            raise ValueError(f"{len(raw)} raw output buffers for {len(reply.outputs)} outputs")
        out: dict[str, np.ndarray] = {}
        for index, tensor in enumerate(reply.outputs):
            dtype = dtypes.get(tensor.datatype)
            if dtype is None:
                raise ValueError(f"output {tensor.name!r} has datatype {tensor.datatype!r}")
            shape = [int(d) for d in tensor.shape]
            count = math.prod(shape)
            if raw:
                if len(raw[index]) != count * dtype.itemsize:
                    raise ValueError(f"output {tensor.name!r}: {len(raw[index])} raw bytes for shape {shape} "
                                     f"{tensor.datatype}")
                values = np.frombuffer(raw[index], dtype=dtype.newbyteorder("<"), count=count)
            else:
                values = np.asarray(getattr(tensor.contents, CONTENTS_FIELD[tensor.datatype]), dtype=dtype)
                if values.size != count:
                    raise ValueError(f"output {tensor.name!r} has {values.size} values for shape {shape}")
            out[tensor.name] = values.reshape(shape)
        return out

    def close(self) -> None:
        self._channel.close()
