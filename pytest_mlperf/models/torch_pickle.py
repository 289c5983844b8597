"""Read PyTorch ``.pth`` state dicts (legacy and zip formats) into numpy arrays, without torch.

Only the globals a plain state dict needs are honoured: ``collections.OrderedDict``, the
``torch._utils`` tensor rebuild helpers and the ``torch.*Storage`` type tags. Any other global makes
the load fail before it is ever imported, so a malicious ``.pth`` cannot run code through pickle.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from pytest_mlperf.errors import ModelError

__all__ = ["TorchPickleError", "UnsafePickleError", "load_pickle", "load_state_dict"]

# The first object of a legacy (pre-1.6) torch file; protocol 1001 is the only one torch ever wrote.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# "bfloat16" has no numpy dtype: it is widened to float32 on load, see _Storage.array.
_STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class TorchPickleError(ModelError):
    """A ``.pth`` file is malformed or uses a feature this reader does not support."""


class UnsafePickleError(TorchPickleError):
    """A ``.pth`` file references a global that a plain state dict never needs."""


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: only the element type matters."""

    name: str

    @property
    def itemsize(self) -> int:
        return 2 if self.name == "BFloat16Storage" else np.dtype(_STORAGE_DTYPES[self.name]).itemsize


@dataclass
class _Storage:
    """Raw bytes of one torch storage, filled in after the main pickle in the legacy format."""

    kind: _StorageType
    numel: int
    raw: bytes | None = None

    def array(self, source: str) -> npt.NDArray[Any]:
        if self.raw is None:
            raise TorchPickleError(f"{source}: a tensor refers to a storage whose bytes were never stored")
        if len(self.raw) != self.numel * self.kind.itemsize:
            raise TorchPickleError(
                f"{source}: a storage holds {len(self.raw)} bytes but declares {self.numel} elements of "
                f"{self.kind.itemsize} bytes; the file is truncated or corrupt, replace it"
            )
        if self.kind.name == "BFloat16Storage":
            # bfloat16 is the upper half of a float32, so shifting the bits up is exact.
            halves = np.frombuffer(self.raw, dtype="<u2").astype(np.uint32)
            return (halves << 16).view(np.float32)
        return np.frombuffer(self.raw, dtype=np.dtype(_STORAGE_DTYPES[self.kind.name]).newbyteorder("<"))


class _Tensor:
    """A strided view into a storage, materialised once every storage has its bytes."""

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any) -> None:
        if not isinstance(storage, _Storage):
            raise TorchPickleError("a tensor's storage is not a persistent storage reference")
        if not (isinstance(offset, int) and _int_tuple(size) and _int_tuple(stride) and len(size) == len(stride)):
            raise TorchPickleError(f"a tensor has a malformed offset/size/stride: {offset!r} {size!r} {stride!r}")
        self.storage = storage
        self.offset: int = offset
        self.size: tuple[int, ...] = size
        self.stride: tuple[int, ...] = stride

    def materialise(self, source: str) -> npt.NDArray[Any]:
        flat = self.storage.array(source)
        dtype = flat.dtype.newbyteorder("=")
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, dtype=dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if self.offset < 0 or any(s < 0 for s in self.stride) or any(n < 0 for n in self.size) or last >= flat.size:
            raise TorchPickleError(
                f"{source}: a tensor of size {self.size} and stride {self.stride} at offset {self.offset} "
                f"reaches outside its storage of {flat.size} elements; the file is corrupt, replace it"
            )
        numel = math.prod(self.size)
        contiguous = tuple(math.prod(self.size[i + 1 :]) for i in range(len(self.size)))
        if all(n == 1 or s == c for n, s, c in zip(self.size, self.stride, contiguous, strict=True)):
            chunk = flat[self.offset : self.offset + numel]
        else:
            # Index arithmetic instead of as_strided: numpy bounds-checks it, so no read can escape the buffer.
            index = np.full(self.size, self.offset, dtype=np.int64)
            for axis, (n, s) in enumerate(zip(self.size, self.stride, strict=True)):
                shape = [1] * len(self.size)
                shape[axis] = n
                index += (np.arange(n, dtype=np.int64) * s).reshape(shape)
            chunk = flat[index]
        # An owned, native-endian copy: callers must not alias the file buffer or each other.
        return np.array(chunk, dtype=dtype).reshape(self.size)


def _int_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any) -> _Tensor:
    return _Tensor(storage, offset, size, stride)


def _rebuild_tensor_v2(
    storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, metadata: Any = None
) -> _Tensor:
    # requires_grad, backward hooks and metadata only matter for autograd, which numpy has no use for.
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any, hooks: Any) -> Any:
    return data


_ALLOWED_CALLABLES: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allow-listed globals and maps storages through a table."""

    def __init__(self, file: IO[bytes], source: str, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self._source = source
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_CALLABLES:
            return _ALLOWED_CALLABLES[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickleError(
            f"{self._source}: refers to the global {module}.{name}, which a plain state dict never needs; "
            "refusing to load it. Re-save the weights with torch.save(model.state_dict(), path)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise TorchPickleError(f"{self._source}: unsupported persistent id {pid!r}")
        # legacy: (tag, type, key, location, numel, view_metadata); zip: (tag, type, key, location, numel)
        if len(pid) not in (5, 6):
            raise TorchPickleError(f"{self._source}: malformed storage reference {pid!r}")
        kind, key, numel = pid[1], pid[2], pid[4]
        if not (isinstance(kind, _StorageType) and isinstance(key, str) and isinstance(numel, int)):
            raise TorchPickleError(f"{self._source}: malformed storage reference {pid!r}")
        if len(pid) == 6 and pid[5] is not None:
            raise TorchPickleError(f"{self._source}: storage views (torch < 0.4 files) are not supported")
        if key not in self._storages:
            self._storages[key] = _Storage(kind, numel)
        return self._storages[key]


def _materialise(obj: Any, source: str) -> Any:
    """Replace every _Tensor in a (nested) container by a numpy array, keeping the container types."""
    if isinstance(obj, _Tensor):
        return obj.materialise(source)
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for key, value in obj.items():
            out[key] = _materialise(value, source)
        return out
    if isinstance(obj, list):
        return [_materialise(v, source) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v, source) for v in obj)
    return obj


def _load_zip(path: Path) -> Any:
    source = str(path)
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise TorchPickleError(f"{source}: a zip-format .pth must hold exactly one <dir>/data.pkl")
        prefix = pickles[0][: -len("data.pkl")]
        names = set(archive.namelist())
        if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() != b"little":
            raise TorchPickleError(
                f"{source}: big-endian .pth files are not supported; re-save on a little-endian host"
            )
        storages: dict[str, _Storage] = {}
        result = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), source, storages).load()
        for key, storage in storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise TorchPickleError(f"{source}: storage {member} is missing from the archive")
            storage.raw = archive.read(member)
    return _materialise(result, source)


def _load_legacy(path: Path) -> Any:
    source = str(path)
    storages: dict[str, _Storage] = {}
    with path.open("rb") as f:

        def header() -> Any:
            return _RestrictedUnpickler(f, source, storages).load()

        try:
            magic = header()
        except (pickle.UnpicklingError, EOFError) as exc:
            raise TorchPickleError(f"{source}: neither a zip archive nor a pickle; is it a .pth file?") from exc
        if magic != _LEGACY_MAGIC:
            raise TorchPickleError(f"{source}: not a torch file (magic {magic!r}); is it a .pth file?")
        if header() != _LEGACY_PROTOCOL:
            raise TorchPickleError(f"{source}: unsupported legacy protocol version")
        sys_info = header()
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise TorchPickleError(
                f"{source}: big-endian .pth files are not supported; re-save on a little-endian host"
            )
        result = header()
        keys = header()
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            raise TorchPickleError(f"{source}: malformed storage key list")
        # Each storage follows in key order: an int64 element count, then the raw little-endian bytes.
        for key in keys:
            if key not in storages:
                raise TorchPickleError(f"{source}: storage {key} is stored but never referenced")
            storage = storages[key]
            count_bytes = f.read(8)
            if len(count_bytes) != 8:
                raise TorchPickleError(f"{source}: truncated before storage {key}; replace the file")
            (count,) = struct.unpack("<q", count_bytes)
            if count != storage.numel:
                raise TorchPickleError(
                    f"{source}: storage {key} declares {count} elements, expected {storage.numel}; "
                    "the file is corrupt, replace it"
                )
            storage.raw = f.read(count * storage.kind.itemsize)
    return _materialise(result, source)


def load_pickle(path: Path) -> Any:
    """Load a ``.pth`` file (zip or legacy format) with tensors as numpy arrays; never imports torch."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        return _load_legacy(path)
    except TorchPickleError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError, KeyError, IndexError) as exc:
        raise TorchPickleError(f"{path}: cannot read as a torch .pth file ({exc}); replace the file") from exc


def load_state_dict(path: Path) -> dict[str, npt.NDArray[Any]]:
    """Load a ``.pth`` state dict as ``{parameter name: numpy array}``, in the file's order."""
    obj = load_pickle(path)
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()):
        raise TorchPickleError(
            f"{path}: holds a {type(obj).__name__}, not a flat state dict of tensors; "
            "save it with torch.save(model.state_dict(), path)"
        )
    return dict(obj)
