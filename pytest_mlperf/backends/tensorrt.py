"""TensorRT backend: an engine built from the ONNX model by TensorRT's builder, cached, run with one context per thread.

The engine is built once per model digest, options, TensorRT version and GPU, and kept under the cache dir
(``tensorrt/<model>-<key>.engine``); a later run deserialises it in about a second instead of building for minutes.
Device memory and copies go through cuda-python (``cuda.bindings.runtime``), which the ``tensorrt`` extra installs.
tensorrt and cuda-python are imported inside the functions that use them, so this module imports (and type-checks)
on machines without either, e.g. CI.

The alternative without this module: ONNX Runtime's TensorRT and CUDA execution providers
(``--mlperf-providers TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider`` with onnxruntime-gpu).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pytest_mlperf.backends.base import (
    BackendOptions,
    option_error,
    require_model_file,
    run_in_chunks,
    warm_up,
    whole_option,
)
from pytest_mlperf.backends.options import check_options
from pytest_mlperf.datasets.base import Inputs
from pytest_mlperf.errors import ModelError


@dataclass(frozen=True)
class BuildOptions:
    """Everything that changes the engine TensorRT builds from one ONNX file."""

    precision: str = "fp32"
    workspace_mib: int | None = None
    max_batch: int = 32  # the optimisation profile's max (and opt) batch on a dynamic batch axis
    device: int = 0

    @classmethod
    def parse(cls, options: BackendOptions) -> BuildOptions:
        """The build options from ``--mlperf-backend-option tensorrt.KEY=VALUE``, refused with the fix when bad."""
        check_options("tensorrt", options)
        workspace = options.option("workspace_mib")
        return cls(
            precision=options.option("precision", "fp32") or "fp32",
            workspace_mib=int(workspace) if workspace is not None else None,
            max_batch=max(1, options.batch_size),
            device=whole_option(options, "device", 0),
        )


def engine_cache_key(model_sha256: str, build: BuildOptions, trt_version: str, gpu: str) -> str:
    """The cache key of a built engine: model bytes, build options, TensorRT version and GPU (an engine is only valid
    on the GPU model and TensorRT release that built it)."""
    identity = {
        "model_sha256": model_sha256,
        "precision": build.precision,
        "workspace_mib": build.workspace_mib,
        "max_batch": build.max_batch,
        "tensorrt": trt_version,
        "gpu": gpu,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python before 12.6
        except ImportError as exc:
            raise ModelError(
                "the tensorrt backend needs cuda-python for device memory; install it with "
                'pip install "pytest-mlperf[tensorrt]"'
            ) from exc
    return cudart


def _check(result: Any, what: str) -> Any:
    """Unwrap a cuda-python ``(error, value...)`` tuple, raising ModelError naming *what* failed."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise ModelError(f"CUDA {what} failed: {err}; check the GPU driver and that the device is not exhausted")
    return values[0] if len(values) == 1 else tuple(values)


def cuda_device_count() -> int:
    """How many CUDA devices cuda-python sees here; 0 when it or the driver is missing (tests skip on 0)."""
    try:
        cudart = _cudart()
        count: int = _check(cudart.cudaGetDeviceCount(), "device count")
    except (ModelError, ImportError, RuntimeError):
        return 0
    return count


def _gpu_name(cudart: Any, device: int) -> str:
    props = _check(cudart.cudaGetDeviceProperties(device), "device query")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return f"{name.rstrip(chr(0))} sm_{props.major}{props.minor}"


@dataclass
class _ThreadState:
    """One inference thread's execution context, CUDA stream and device buffers (contexts are not thread-safe)."""

    context: Any
    stream: Any
    buffers: dict[str, int] = field(default_factory=dict)


class TensorRtBackend:
    """Wraps a deserialised ``ICudaEngine``; each calling thread gets its own execution context and buffers.

    thread_safe is True because the engine is shared (``ICudaEngine`` may create contexts concurrently) while
    everything a call mutates (context, stream, buffers) belongs to the calling thread.
    """

    name = "tensorrt"
    thread_safe = True
    model_identity: str | None = None

    def __init__(self, model: Path | str, options: BackendOptions) -> None:
        model = Path(model)
        self.options = options
        self.build = BuildOptions.parse(options)  # option errors come before any import, also where TensorRT is absent
        require_model_file(model)
        if model.suffix.lower() != ".onnx":
            raise ModelError(f"the tensorrt backend builds its engine from an ONNX file; {model} is not one (.onnx)")
        import tensorrt as trt

        self._trt = trt
        self.version: str = trt.__version__
        self._cudart = cudart = _cudart()
        devices = cuda_device_count()
        if devices <= self.build.device:
            raise option_error("tensorrt",
                "device",
                str(self.build.device),
                f"this machine has {devices} CUDA device(s); TensorRT needs an NVIDIA GPU and driver "
                "(without one, measure the CPU with another backend)",
            )
        _check(cudart.cudaSetDevice(self.build.device), "cudaSetDevice")
        self.gpu = _gpu_name(cudart, self.build.device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._model = model
        self.engine_path = self._cached_engine(model, options.cache_dir)
        runtime = trt.Runtime(self._logger)
        self._engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:
            raise ModelError(
                f"TensorRT {self.version} could not load its cached engine {self.engine_path}; delete it so that it "
                "is rebuilt"
            )
        self._runtime = runtime
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = tuple(n for n in names if is_input[n])
        self.output_names = tuple(n for n in names if not is_input[n])
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        first = self._engine.get_tensor_shape(self.input_names[0])[0]
        # A fixed batch axis runs padded chunks of exactly that size; a dynamic one chunks at the profile's max.
        self._fixed = first > 0
        self.max_batch: int | None = int(first) if self._fixed else self.build.max_batch
        self._local = threading.local()
        self._states: list[_ThreadState] = []
        self._states_lock = threading.Lock()

    def _cached_engine(self, model: Path, cache_dir: Path | None) -> Path:
        from pytest_mlperf.fileio import ensure_built
        from pytest_mlperf.provisioning.cache import default_cache_dir

        digest = hashlib.sha256(model.read_bytes()).hexdigest()
        key = engine_cache_key(digest, self.build, self.version, self.gpu)
        return ensure_built(
            cache_dir or default_cache_dir(),
            f"tensorrt/{model.stem}-{key}.engine",
            lambda: self._build_engine(model),
            what=f"the TensorRT engine for {model}",
        )

    def _build_engine(self, model: Path) -> bytes:
        trt = self._trt
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # explicit batch: the only mode TensorRT 10 has
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse_from_file(str(model)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelError(f"TensorRT {self.version} cannot parse {model}: {errors}")
        config = builder.create_builder_config()
        if self.build.workspace_mib is not None:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.build.workspace_mib << 20)
        if self.build.precision == "fp32":
            # TF32 is on by default on Ampere and later and rounds fp32 matmuls to 10 mantissa bits.
            config.clear_flag(trt.BuilderFlag.TF32)
        elif self.build.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        else:
            config.set_flag(trt.BuilderFlag.INT8)
        profile = builder.create_optimization_profile()
        dynamic = False
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = tuple(tensor.shape)
            if any(d < 0 for d in shape[1:]):
                raise ModelError(
                    f"{model}: input {tensor.name!r} has dynamic dimensions besides the batch axis {shape}; export "
                    "it with fixed sizes"
                )
            if shape and shape[0] < 0:
                dynamic = True
                most = (self.build.max_batch, *shape[1:])
                profile.set_shape(tensor.name, (1, *shape[1:]), most, most)
        if dynamic:
            config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ModelError(
                f"TensorRT {self.version} could not build an engine for {model} (precision {self.build.precision}, "
                f"workspace {self.build.workspace_mib or 'default'} MiB); its log above names the layer; a larger "
                "workspace_mib or precision=fp32 may help"
            )
        return bytes(serialized)

    def _state(self) -> _ThreadState:
        state: _ThreadState | None = getattr(self._local, "state", None)
        if state is not None:
            return state
        cudart = self._cudart
        _check(cudart.cudaSetDevice(self.build.device), "cudaSetDevice")
        context = self._engine.create_execution_context()
        stream = _check(cudart.cudaStreamCreate(), "stream creation")
        state = _ThreadState(context, stream)
        rows = self.max_batch or 1
        for name in self.input_names:
            shape = tuple(self._engine.get_tensor_shape(name))
            context.set_input_shape(name, (rows, *shape[1:]))
        for name in (*self.input_names, *self.output_names):
            shape = tuple(context.get_tensor_shape(name))
            nbytes = int(np.prod(shape)) * self._dtypes[name].itemsize
            state.buffers[name] = _check(cudart.cudaMalloc(max(1, nbytes)), f"cudaMalloc of {nbytes} bytes")
            context.set_tensor_address(name, state.buffers[name])
        self._local.state = state
        with self._states_lock:
            self._states.append(state)
        return state

    def run(self, inputs: Inputs) -> Mapping[str, np.ndarray]:
        n = len(inputs) if isinstance(inputs, np.ndarray) else len(next(iter(inputs.values())))
        size = self.max_batch or n
        if n > size or (self._fixed and n != size):
            return run_in_chunks(self._run_batch, inputs, size, pad=self._fixed)
        return self._run_batch(inputs)

    def _run_batch(self, inputs: Inputs) -> Mapping[str, np.ndarray]:
        cudart = self._cudart
        if isinstance(inputs, np.ndarray):
            if len(self.input_names) != 1:
                raise ModelError(
                    f"{self._model} has {len(self.input_names)} inputs ({', '.join(self.input_names)}) but the "
                    "dataset gives one array; give the dataset a mapping of input name -> array"
                )
            arrays = {self.input_names[0]: inputs}
        else:
            arrays = dict(inputs)
        state = self._state()
        to_device, to_host = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        kept = []  # the host arrays must outlive the asynchronous copies
        for name in self.input_names:
            array = np.ascontiguousarray(arrays[name], dtype=self._dtypes[name])
            kept.append(array)
            state.context.set_input_shape(name, array.shape)
            _check(
                cudart.cudaMemcpyAsync(state.buffers[name], array.ctypes.data, array.nbytes, to_device, state.stream),
                "copy to the device",
            )
        if not state.context.execute_async_v3(int(state.stream)):
            shapes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
            raise ModelError(f"TensorRT could not run {self._model} on inputs {shapes}")
        outputs: dict[str, np.ndarray] = {}
        for name in self.output_names:
            out = np.empty(tuple(state.context.get_tensor_shape(name)), dtype=self._dtypes[name])
            _check(
                cudart.cudaMemcpyAsync(out.ctypes.data, state.buffers[name], out.nbytes, to_host, state.stream),
                "copy to the host",
            )
            outputs[name] = out
        _check(cudart.cudaStreamSynchronize(state.stream), "stream synchronisation")
        return outputs

    def warmup(self, sample: Inputs) -> None:
        warm_up(self.run, sample, self.options)

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "gpu": self.gpu,
            "device": self.build.device,
            "precision": self.build.precision,
            "tf32": self.build.precision != "fp32",  # TensorRT's default, cleared for fp32
            "workspace_mib": self.build.workspace_mib,
            "max_batch": self.max_batch,
            "batch_size": self.options.batch_size,
            "engine": self.engine_path.name,
        }

    def close(self) -> None:
        cudart = self._cudart
        with self._states_lock:
            states, self._states = self._states, []
        for state in states:
            state.context = None  # a context must go before the memory it points at
            for pointer in state.buffers.values():
                cudart.cudaFree(pointer)
            cudart.cudaStreamDestroy(state.stream)
        self.__dict__.pop("_engine", None)
