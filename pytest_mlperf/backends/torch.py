"""PyTorch backend: a TorchScript archive, or a state dict and its ``nn.Module`` class, run under inference_mode.

Modes: ``scripted`` runs a TorchScript module (the default for a TorchScript file); ``eager`` runs the Python module
that ``model_class`` builds (the default when it is given); ``compiled`` runs that module through ``torch.compile``
(inductor), which takes tens of seconds to start and so is never the default. The thread count is process-wide in
torch: the backend sets it and records what torch reports.

On the CPU every torch call of every backend (loading, warm-up, inference) runs on one thread, the process's
"mlperf-torch" thread, whichever thread asks: torch's CPU kernels run on OpenMP, and libgomp keeps a team of worker
threads for each thread that has ever started a parallel region, for as long as that thread lives. Once two teams
exist (the harness warms up on the main thread, LoadGen issues from its own; or two models' backends), more OpenMP
threads exist than cores and libgomp stops letting idle workers spin; every kernel then pays a futex wake-up, measured
here at +35% per batch-1 inference of a ResNet50 and 3.5x for a small CNN on 2 cores. One thread keeps one team; the
hand-off to it costs a few microseconds. Calls are thereby serialised, which costs nothing on a CPU whose cores each
call already uses.
"""

from __future__ import annotations

import importlib
import queue
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pytest_mlperf.backends.base import (
    BackendOptions,
    option_error,
    require_model_file,
    warm_up,
    whole_option,
)
from pytest_mlperf.backends.options import check_options
from pytest_mlperf.datasets.base import Inputs
from pytest_mlperf.errors import ModelError
from pytest_mlperf.provenance import usable_cpus


# torch 2.13 deprecates TorchScript in favour of torch.export, but still loads and runs it: the warning would be noise
# in every run's summary, so it is muted around the (single-threaded) scripting, saving and loading calls only.
@contextmanager
def quiet_jit() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
        yield




class EngineThread:
    """One daemon thread that makes every call given to :meth:`call`, so that torch's OpenMP runtime keeps one team of
    workers (see the module docstring); callers wait for their own call's result or exception."""

    def __init__(self, name: str = "mlperf-torch") -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], list[Any], threading.Lock]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            fn, box, done = self._jobs.get()
            try:
                box.append((True, fn()))
            except BaseException as exc:  # handed to the caller, which raises it
                box.append((False, exc))
            finally:
                done.release()

    def call(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run on this thread (directly when already on it): its result, or its exception raised here."""
        if threading.current_thread() is self._thread:
            return fn()
        # A lock taken twice is the cheapest wait Python has: the engine thread releases it when the call is done.
        done = threading.Lock()
        done.acquire()
        box: list[tuple[bool, Any]] = []
        self._jobs.put((fn, box, done))
        done.acquire()
        ok, value = box[0]
        if not ok:
            raise value
        return value


_ENGINE: EngineThread | None = None
_ENGINE_LOCK = threading.Lock()


def engine_thread() -> EngineThread:
    """The process's one torch engine thread, started on first use; it lives as long as the process."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = EngineThread()
        return _ENGINE


def _load_model_class(spec: str) -> Callable[[], Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise option_error(
            "torch", "model_class", spec, "give it as package.module:Class, e.g. torchvision.models:resnet50"
        )
    try:
        found: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise option_error("torch",
            "model_class", spec, f"cannot import it ({exc}); install the package that defines it"
        ) from exc
    if not callable(found):
        raise option_error("torch", "model_class", spec, "it is not a class or function")
    built: Callable[[], Any] = found
    return built


def _state_dict(model: Path, device: torch.device) -> Mapping[str, torch.Tensor]:
    """The weights in *model*: a TorchScript archive's parameters, else a ``torch.save``d state dict (read with
    ``weights_only``, so a pickle cannot run code), also one nested under "state_dict" or "model"."""
    try:
        with quiet_jit():
            scripted: Any = torch.jit.load(str(model), map_location=device)  # type: ignore[no-untyped-call]
        weights: Mapping[str, torch.Tensor] = scripted.state_dict()
        return weights
    except RuntimeError:
        pass  # not a TorchScript archive: a plain state dict
    try:
        loaded: Any = torch.load(str(model), map_location=device, weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError: torch names the cause
        raise ModelError(
            f"torch could not read weights from {model}: {exc}. It must be a TorchScript archive or a state dict "
            "saved with torch.save; the file may be truncated: delete it and provision it again"
        ) from exc
    for key in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ModelError(f"{model} holds a {type(loaded).__name__}, not a state dict of tensors")
    return loaded


class TorchBackend:
    """Wraps a ``torch.nn.Module`` or TorchScript module; ``run`` wraps numpy inputs with ``torch.from_numpy``.

    Thread-safe: a module in eval mode keeps no state between calls, the forward runs under ``inference_mode``
    (thread-local) and torch releases the GIL inside its kernels; torch.compile serialises its (re)compiles behind
    dynamo's own lock. tests/e2e/test_engine_torch.py checks concurrent calls against serial ones.
    """

    name = "torch"
    thread_safe = True
    model_identity: str | None = None  # a local file: the harness records its sha256
    max_batch: int | None = None

    def __init__(self, model: Path | str, options: BackendOptions) -> None:
        model = Path(model)
        self.version = torch.__version__
        self.options = options
        check_options("torch", options)
        self.model_class = options.option("model_class")
        self.mode = options.option("mode") or ("eager" if self.model_class else "scripted")
        if self.mode != "scripted" and not self.model_class:
            raise option_error("torch",
                "mode",
                self.mode,
                "this mode runs the Python nn.Module, so it needs its class: add --mlperf-backend-option "
                "torch.model_class=package.module:Class (the model file then holds its weights), or use "
                "mode=scripted for a TorchScript file",
            )
        self.device = self._device(options.option("device", "cpu") or "cpu")
        require_model_file(model)
        self._model = model
        # CUDA kernels do not run on OpenMP: there the calling threads run the module themselves, concurrently.
        self._engine = engine_thread() if self.device.type == "cpu" else None
        # On this thread as well as the engine's: torch keeps the count both process-wide (for threads that start
        # later) and per OpenMP thread, and a caller that reads torch.get_num_threads() sees what runs.
        self._set_threads(options)
        self.threads = self._on_engine(lambda: self._set_threads(options))
        self._module: Any = self._on_engine(lambda: self._load(model))
        wanted = options.option("outputs")
        self.output_names: tuple[str, ...] | None = (
            tuple(n.strip() for n in wanted.split(",") if n.strip()) if wanted else None
        )
        self._cpu = self.device.type == "cpu"

    @staticmethod
    def _device(spec: str) -> torch.device:
        device = torch.device(spec)  # check_options let only cpu, cuda and cuda:N through
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise option_error("torch",
                    "device",
                    spec,
                    f"torch {torch.__version__} sees no CUDA device (a CPU-only build, or no driver); install a "
                    "CUDA build of torch on a GPU machine, or use device=cpu",
                )
            if device.index is not None and device.index >= torch.cuda.device_count():
                raise option_error("torch", "device", spec, f"only {torch.cuda.device_count()} CUDA device(s) here")
        return device

    @staticmethod
    def _set_threads(options: BackendOptions) -> int:
        wanted = whole_option(options, "threads", options.intra_op_threads) or len(usable_cpus())
        torch.set_num_threads(wanted)
        threads: int = torch.get_num_threads()
        return threads

    def _load(self, model: Path) -> Any:
        if self.model_class is None:
            try:
                with quiet_jit():
                    scripted: Any = torch.jit.load(  # type: ignore[no-untyped-call]
                        str(model), map_location=self.device
                    )
            except (RuntimeError, ValueError) as exc:
                raise ModelError(
                    f"torch could not load {model} as TorchScript ({exc}). A state dict (.pth) needs the class "
                    "that holds it: --mlperf-backend-option torch.model_class=package.module:Class; a truncated "
                    "file must be deleted and provisioned again"
                ) from exc
            return scripted.eval()
        factory = _load_model_class(self.model_class)
        try:
            module = factory()
        except Exception as exc:  # whatever the user's constructor raises
            raise option_error("torch",
                "model_class", self.model_class, f"calling it without arguments failed ({type(exc).__name__}: {exc})"
            ) from exc
        if not isinstance(module, torch.nn.Module):
            built = type(module).__name__
            raise option_error("torch", "model_class", self.model_class, f"it built a {built}, not an nn.Module")
        try:
            module.load_state_dict(_state_dict(model, self.device))
        except RuntimeError as exc:  # missing, unexpected or misshapen keys: torch lists them
            raise ModelError(f"the weights in {model} do not fit {self.model_class}: {exc}") from exc
        module = module.to(self.device).eval()
        if self.mode == "scripted":
            try:
                with quiet_jit():
                    return torch.jit.script(module)
            except Exception as exc:  # torch.jit.frontend errors name the unsupported construct
                raise ModelError(
                    f"torch.jit.script cannot compile {self.model_class}: {exc}; use mode=eager"
                ) from exc
        if self.mode == "compiled":
            # dynamic: one graph for every batch size, so a short last batch does not recompile mid-measurement.
            return torch.compile(module, dynamic=True)
        return module

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        # from_numpy shares the array's memory; a read-only array is copied, since torch tensors are always writable.
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
        return tensor if self._cpu else tensor.to(self.device)

    def _on_engine(self, fn: Callable[[], Any]) -> Any:
        return fn() if self._engine is None else self._engine.call(fn)

    def run(self, inputs: Inputs) -> Mapping[str, np.ndarray]:
        if self._engine is None:
            return self._run(inputs)
        result: Mapping[str, np.ndarray] = self._engine.call(lambda: self._run(inputs))
        return result

    def _run(self, inputs: Inputs) -> Mapping[str, np.ndarray]:
        if "_module" not in self.__dict__:
            raise RuntimeError(f"the torch backend of {self._model} is closed")
        with torch.inference_mode():
            if isinstance(inputs, np.ndarray):
                out = self._module(self._tensor(inputs))
            else:
                out = self._module(**{name: self._tensor(array) for name, array in inputs.items()})
            return self._named(out)

    def _named(self, out: Any) -> dict[str, np.ndarray]:
        if isinstance(out, torch.Tensor):
            tensors: dict[str, torch.Tensor] = {"output": out}
        elif isinstance(out, (tuple, list)):
            tensors = {f"output{i}": t for i, t in enumerate(out)}
        elif isinstance(out, Mapping):
            tensors = dict(out)
        else:
            raise ModelError(f"{self._model}: forward returned a {type(out).__name__}; expected tensors")
        if self.output_names is not None:
            if isinstance(out, Mapping):
                missing = [n for n in self.output_names if n not in tensors]
                if missing:
                    raise ModelError(
                        f"{self._model} has no output {missing[0]!r}; its outputs are {', '.join(tensors)} "
                        "(--mlperf-backend-option torch.outputs=NAME[,NAME...])"
                    )
                tensors = {n: tensors[n] for n in self.output_names}
            elif len(self.output_names) != len(tensors):
                raise ModelError(
                    f"--mlperf-backend-option torch.outputs={','.join(self.output_names)} names "
                    f"{len(self.output_names)} output(s), but {self._model} returns {len(tensors)}; give one name per "
                    "output, in order"
                )
            else:
                tensors = dict(zip(self.output_names, tensors.values(), strict=True))
        return {name: t.detach().cpu().numpy() for name, t in tensors.items()}

    def warmup(self, sample: Inputs) -> None:
        warm_up(self.run, sample, self.options)

    def describe(self) -> dict[str, Any]:
        described = {
            key: value
            for key, value in self.options.describe().items()
            # ONNX Runtime's knobs mean nothing here; leaving them out keeps them out of the fingerprint.
            if key not in ("providers", "graph_optimization", "inter_op_threads")
        }
        described |= {
            "version": self.version,
            "mode": self.mode,
            "threads": self.threads,
            "device": str(self.device),
        }
        if self.model_class:
            described["model_class"] = self.model_class
        if self.mode == "compiled":
            described["compile"] = {"backend": "inductor", "dynamic": True}
        return described

    def close(self) -> None:
        # The engine thread stays for the process's other torch backends.
        self.__dict__.pop("_module", None)
