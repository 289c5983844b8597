"""A KServe ModelServer on 127.0.0.1 serving one ONNX model through onnxruntime (or a no-op), with fault switches.

Runs in the server's own virtual environment (kserve pins protobuf and pydantic releases the test environment does
not have), started by tests/e2e/remote_server.py:

    python oip_server.py --port P --name digits --onnx digits.onnx [--fail-after N] [--exit-after N] [--sleep-s S]
                         [--malformed-after N] [--token T] [--ssl-cert PEM --ssl-key PEM]
                         [--grpc-port G]

Fault switches count inference requests: after N of them the server answers HTTP 500 (--fail-after), returns
tensors of the wrong shape (--malformed-after) or exits at once (--exit-after); --sleep-s delays each request
after the first --sleep-after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import kserve
import numpy as np
from fastapi import HTTPException
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

_DATATYPE = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64", np.dtype(np.int64): "INT64",
             np.dtype(np.int32): "INT32", np.dtype(np.uint8): "UINT8"}
_ORT_TYPE = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(int64)": "INT64", "tensor(int32)": "INT32",
             "tensor(uint8)": "UINT8"}


class OnnxModel(kserve.Model):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args.name)
        self.args = args
        self.requests = 0
        if args.onnx:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self.session: Any = ort.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])
            self.inputs = [{"name": i.name, "datatype": _ORT_TYPE[i.type], "shape": [-1, *i.shape[1:]]}
                           for i in self.session.get_inputs()]
            self.outputs = [{"name": o.name, "datatype": _ORT_TYPE[o.type], "shape": [-1, *o.shape[1:]]}
                            for o in self.session.get_outputs()]
        else:  # no-op: measures the protocol and the server, not a model
            self.session = None
            self.inputs = [{"name": "input", "datatype": "FP32", "shape": [-1, *args.noop_shape]}]
            self.outputs = [{"name": "output", "datatype": "FP32", "shape": [-1, 1]}]
        self.ready = True

    def get_input_types(self) -> list[dict[str, Any]]:
        return self.inputs

    def get_output_types(self) -> list[dict[str, Any]]:
        return self.outputs

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> InferResponse:
        self.requests += 1
        args = self.args
        if args.token and (headers or {}).get("authorization") != f"Bearer {args.token}":
            raise HTTPException(status_code=401, detail="bad or missing bearer token")
        if args.exit_after is not None and self.requests > args.exit_after:
            os._exit(3)
        if args.fail_after is not None and self.requests > args.fail_after:
            raise kserve.errors.InferenceError(f"injected failure after {args.fail_after} requests")
        if args.sleep_s and self.requests > args.sleep_after:
            await asyncio.sleep(args.sleep_s)
        feeds = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
        n = len(next(iter(feeds.values())))
        if self.session is not None:
            # onnxruntime releases the GIL: run it off the event loop so requests overlap.
            outs = await asyncio.get_running_loop().run_in_executor(None, self.session.run, None, feeds)
            named = dict(zip([o["name"] for o in self.outputs], outs, strict=True))
        else:
            named = {"output": np.zeros((n, 1), dtype=np.float32)}
        if args.malformed_after is not None and self.requests > args.malformed_after:
            named = {name: value[:-1] if len(value) > 1 else value.reshape(-1)[:0] for name, value in named.items()}
        binary = bool(payload.parameters and payload.parameters.get("binary_data_output"))
        wanted = {o.name: o for o in payload.request_outputs or []}
        outputs = []
        for name, value in named.items():
            out = InferOutput(name=name, shape=list(value.shape), datatype=_DATATYPE[value.dtype])
            request = wanted.get(name)
            out.set_data_from_numpy(value, binary_data=binary or bool(request and request.binary_data))
            outputs.append(out)
        return InferResponse(model_name=self.name, infer_outputs=outputs, response_id=payload.id or str(self.requests))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--onnx")
    parser.add_argument("--noop-shape", type=lambda s: [int(d) for d in s.split(",")], default=[1, 8, 8])
    parser.add_argument("--fail-after", type=int)
    parser.add_argument("--exit-after", type=int)
    parser.add_argument("--malformed-after", type=int)
    parser.add_argument("--sleep-s", type=float, default=0.0)
    parser.add_argument("--sleep-after", type=int, default=0)
    parser.add_argument("--token", default=os.environ.get("OIP_SERVER_TOKEN"))
    parser.add_argument("--grpc-port", type=int)
    parser.add_argument("--ssl-cert")
    parser.add_argument("--ssl-key")
    args = parser.parse_args(argv)
    model = OnnxModel(args)
    grpc = {"enable_grpc": True, "grpc_port": args.grpc_port} if args.grpc_port else {"enable_grpc": False}
    kserve.ModelServer(http_port=args.port, workers=1, ssl_certfile=args.ssl_cert, ssl_keyfile=args.ssl_key,
                       **grpc).start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
