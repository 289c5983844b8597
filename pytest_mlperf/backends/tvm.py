"""Apache TVM backend: the ONNX model through the Relax frontend, compiled once per target and cached, run on a VM."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm import relax

from pytest_mlperf.backends.base import BackendOptions, local_model, warm_up
from pytest_mlperf.backends.options import check_options
from pytest_mlperf.datasets.base import Inputs
from pytest_mlperf.errors import ModelError
from pytest_mlperf.fileio import ensure_built, file_sha256
from pytest_mlperf.provisioning.cache import default_cache_dir

#: Target kinds that run on the host CPU; any other kind names its own device (cuda, rocm, vulkan, ...).
_CPU_KINDS = ("llvm", "c")


def _tvm_error(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


class TvmBackend:
    """A compiled Relax module on one ``relax.VirtualMachine``; not thread-safe, so the harness makes one per thread
    (each loads the same cached library, compiled once)."""

    name = "tvm"
    thread_safe = False  # a VirtualMachine keeps per-call state (registers, frames): one per inference thread
    model_identity: str | None = None  # a local file: the harness records its sha256
    max_batch: int | None = None  # the Relax import keeps the ONNX batch axis symbolic

    def __init__(self, model: Path | str, options: BackendOptions) -> None:
        model = local_model(model)
        self.version = tvm.__version__
        self.options = options
        check_options("tvm", options)
        requested = options.option("target", "llvm") or "llvm"
        try:
            # TVM 0.2x takes a kind name or a JSON dict ({"kind": "llvm", "mcpu": "..."}), no longer "llvm -mcpu=".
            self._target = tvm.target.Target(json.loads(requested) if requested.startswith("{") else requested)
        except Exception as exc:  # TVM raises its own error types from the FFI; json its JSONDecodeError
            raise ModelError(
                f"--mlperf-backend-option target={requested}: TVM {self.version} does not know this target "
                f"({_tvm_error(exc)}); use llvm (the host CPU), a JSON dict such as "
                '{"kind": "llvm", "mcpu": "skylake"}, or cuda'
            ) from exc
        self.target = str(self._target)
        self.cache = (options.option("cache", "on") or "on").lower()
        kind = self._target.kind.name
        try:
            self._device = tvm.cpu(0) if kind in _CPU_KINDS else tvm.device(kind, 0)
            present = self._device.exist
        except Exception:  # a kind with no runtime device (hexagon without its SDK)
            present = False
        if not present:
            raise ModelError(
                f"--mlperf-backend-option target={requested}: no {kind} device is present to this TVM "
                f"({self.version}); use target=llvm to compile for the CPU"
            )
        self._model = model
        self.input_names, self.output_names = _interface(model)
        self.built = False  # whether this instance compiled the library (False: it loaded the cached one)
        self.library = self._library(model, options.cache_dir)
        try:
            self._vm = relax.VirtualMachine(tvm.runtime.load_module(str(self.library)), self._device)
        except Exception as exc:
            raise ModelError(
                f"TVM could not load the compiled library {self.library} ({_tvm_error(exc)}); delete it so that it "
                "is compiled again"
            ) from exc
        self._main = self._vm["main"]

    def _compile(self, model: Path) -> bytes:
        import onnx
        from tvm.relax.frontend.onnx import from_onnx

        self.built = True
        try:
            module = from_onnx(onnx.load(str(model)), keep_params_in_input=False)
            executable = tvm.compile(module, target=self._target)
        except Exception as exc:  # the frontend and the compiler raise many FFI error types
            raise ModelError(
                f"TVM {self.version} could not compile {model} for {self.target}: {_tvm_error(exc)}. The model may "
                "use an ONNX operator TVM's Relax frontend lacks; try another backend for it"
            ) from exc
        with tempfile.TemporaryDirectory(prefix="pytest-mlperf-tvm-") as tmp:
            library = Path(tmp) / "model.so"
            executable.export_library(str(library))
            return library.read_bytes()

    def _library(self, model: Path, cache_dir: Path | None) -> Path:
        """The compiled library: built once per model digest, target and TVM version under the cache directory."""
        key = json.dumps({"model": file_sha256(model), "target": self.target, "tvm": self.version}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", model.stem)[:60]
        if self.cache == "off":
            self._scratch = tempfile.TemporaryDirectory(prefix="pytest-mlperf-tvm-")
            library = Path(self._scratch.name) / f"{stem}.so"
            library.write_bytes(self._compile(model))
            return library
        version = re.sub(r"[^A-Za-z0-9_.-]", "_", self.version)
        return ensure_built(
            cache_dir or default_cache_dir(),
            f"tvm/{stem}-{digest}-tvm{version}.so",
            lambda: self._compile(model),
            what=f"the TVM library compiled from {model} for {self.target}",
        )

    def run(self, inputs: Inputs) -> Mapping[str, np.ndarray]:
        if isinstance(inputs, np.ndarray):
            if len(self.input_names) != 1:
                raise ModelError(
                    f"{self._model} has {len(self.input_names)} inputs ({', '.join(self.input_names)}) but the "
                    "dataset gives one array; give the dataset a mapping of input name -> array"
                )
            arrays = [inputs]
        else:
            missing = [name for name in self.input_names if name not in inputs]
            if missing:
                raise ModelError(
                    f"{self._model} needs inputs {', '.join(self.input_names)}; the dataset gave {', '.join(inputs)}"
                )
            arrays = [inputs[name] for name in self.input_names]
        out = self._main(*(tvm.runtime.tensor(np.ascontiguousarray(a), self._device) for a in arrays))
        results = list(out) if isinstance(out, (tuple, list, tvm.ir.Array)) else [out]
        return {name: result.numpy() for name, result in zip(self.output_names, results, strict=True)}

    def warmup(self, sample: Inputs) -> None:
        warm_up(self.run, sample, self.options)

    def describe(self) -> dict[str, Any]:
        base = self.options.describe()
        # onnxruntime's knobs, and threads: TVM sizes its own pool (TVM_NUM_THREADS), which this backend leaves be.
        for key in ("providers", "graph_optimization", "inter_op_threads", "threads"):
            base.pop(key, None)
        return base | {"version": self.version, "target": self.target, "library": self.library.name}

    def close(self) -> None:
        self.__dict__.pop("_main", None)
        self.__dict__.pop("_vm", None)


def _interface(model: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The ONNX graph's input names (initializers excluded) and output names, in order."""
    import onnx

    try:
        graph = onnx.load(str(model), load_external_data=False).graph
    except Exception as exc:  # DecodeError and friends
        raise ModelError(
            f"TVM's ONNX frontend could not read {model} ({exc}); the file may be truncated or not an ONNX model. "
            "Delete it and provision it again"
        ) from exc
    initializers = {init.name for init in graph.initializer}
    inputs = tuple(i.name for i in graph.input if i.name not in initializers)
    return inputs, tuple(o.name for o in graph.output)
