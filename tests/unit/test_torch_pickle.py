"""Unit tests of the torch-free .pth reader, on state dicts assembled by hand from pickle opcodes."""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pytest_mlperf.models.torch_pickle import TorchPickleError, UnsafePickleError, load_pickle, load_state_dict


class _Pickle:
    """A tiny assembler for the protocol-2 opcodes torch.save emits, so no torch is needed to write one."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")  # PROTO 2

    def glob(self, module: str, name: str) -> _Pickle:
        self.out += b"c" + f"{module}\n{name}\n".encode()
        return self

    def op(self, code: bytes) -> _Pickle:
        self.out += code
        return self

    def text(self, value: str) -> _Pickle:
        data = value.encode()
        self.out += b"X" + struct.pack("<I", len(data)) + data
        return self

    def integer(self, value: int) -> _Pickle:
        self.out += b"J" + struct.pack("<i", value)
        return self

    def ints(self, values: tuple[int, ...]) -> _Pickle:
        self.op(b"(")
        for v in values:
            self.integer(v)
        return self.op(b"t")

    def ordered_dict(self) -> _Pickle:
        return self.glob("collections", "OrderedDict").op(b")R")  # OrderedDict()

    def tensor(
        self,
        key: str,
        storage: str,
        numel: int,
        offset: int,
        size: tuple[int, ...],
        stride: tuple[int, ...],
        legacy: bool,
    ) -> _Pickle:
        """Emit torch._utils._rebuild_tensor_v2(<persistent storage>, offset, size, stride, False, OrderedDict())."""
        self.glob("torch._utils", "_rebuild_tensor_v2").op(b"(")
        self.op(b"(").text("storage").glob("torch", storage).text(key).text("cpu").integer(numel)
        if legacy:
            self.op(b"N")  # view_metadata, None since torch 0.4
        self.op(b"tQ")  # TUPLE, BINPERSID
        self.integer(offset).ints(size).ints(stride).op(b"\x89").ordered_dict()
        return self.op(b"tR")

    def done(self) -> bytes:
        return bytes(self.out + b".")


def _state_dict_pickle(legacy: bool) -> bytes:
    # Two tensors share storage "0": a 2x3 float matrix and its transpose (a non-contiguous view),
    # plus an int64 scalar-like counter in storage "1", as a BatchNorm's num_batches_tracked is.
    p = _Pickle().ordered_dict().op(b"(")
    p.text("linear.weight").tensor("0", "FloatStorage", 6, 0, (2, 3), (3, 1), legacy)
    p.text("linear.weight_t").tensor("0", "FloatStorage", 6, 0, (3, 2), (1, 3), legacy)
    p.text("bn.num_batches_tracked").tensor("1", "LongStorage", 1, 0, (), (), legacy)
    return p.op(b"u").done()  # SETITEMS


_FLOATS = np.arange(6, dtype="<f4") * 1.5
_COUNT = np.array([42], dtype="<i8")


def _write_zip(path: Path, pickle_bytes: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/data/0", _FLOATS.tobytes())
        archive.writestr("archive/data/1", _COUNT.tobytes())
        archive.writestr("archive/version", "3\n")
    return path


def _write_legacy(path: Path, pickle_bytes: bytes, float_bytes: bytes = _FLOATS.tobytes()) -> Path:
    header = b"".join(
        pickle.dumps(obj, protocol=2)
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True})
    )
    keys = pickle.dumps(["0", "1"], protocol=2)
    storages = struct.pack("<q", 6) + float_bytes + struct.pack("<q", 1) + _COUNT.tobytes()
    path.write_bytes(header + pickle_bytes + keys + storages)
    return path


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_reads_hand_built_state_dict(tmp_path: Path, fmt: str) -> None:
    if fmt == "zip":
        path = _write_zip(tmp_path / "w.pth", _state_dict_pickle(legacy=False))
    else:
        path = _write_legacy(tmp_path / "w.pth", _state_dict_pickle(legacy=True))

    state = load_state_dict(path)

    assert list(state) == ["linear.weight", "linear.weight_t", "bn.num_batches_tracked"]
    expected = _FLOATS.reshape(2, 3)
    np.testing.assert_array_equal(state["linear.weight"], expected)
    np.testing.assert_array_equal(state["linear.weight_t"], expected.T)
    assert state["linear.weight"].dtype == np.float32
    assert state["bn.num_batches_tracked"].dtype == np.int64
    assert state["bn.num_batches_tracked"].shape == ()
    assert int(state["bn.num_batches_tracked"]) == 42
    # Arrays are owned copies: writing to one must not change its sibling view of the same storage.
    state["linear.weight"][0, 0] = -1.0
    assert state["linear.weight_t"][0, 0] == 0.0


def test_refuses_forbidden_global_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    # os.system("touch <marker>") wrapped as the value of a state-dict entry.
    evil = _Pickle().ordered_dict().op(b"(").text("x").glob("os", "system").op(b"(").text(f"touch {marker}")
    path = _write_zip(tmp_path / "evil.pth", evil.op(b"tRu").done())

    with pytest.raises(UnsafePickleError, match=r"evil\.pth: refers to the global os\.system") as info:
        load_state_dict(path)

    assert "torch.save(model.state_dict(), path)" in str(info.value)
    assert not marker.exists()


def test_refuses_builtins_eval_in_legacy_header(tmp_path: Path) -> None:
    evil = _Pickle().glob("builtins", "eval").op(b"(").text("1+1").op(b"tR").done()
    path = tmp_path / "evil.pth"
    path.write_bytes(evil)

    with pytest.raises(UnsafePickleError, match=r"builtins\.eval"):
        load_pickle(path)


def test_truncated_legacy_file_names_the_file(tmp_path: Path) -> None:
    path = _write_legacy(tmp_path / "short.pth", _state_dict_pickle(legacy=True))
    path.write_bytes(path.read_bytes()[:-4])  # as an interrupted download would leave it

    with pytest.raises(TorchPickleError, match=r"short\.pth: a storage holds 4 bytes but declares 1 elements"):
        load_state_dict(path)


def test_corrupt_legacy_storage_count_is_refused(tmp_path: Path) -> None:
    path = _write_legacy(tmp_path / "bad.pth", _state_dict_pickle(legacy=True), _FLOATS.tobytes()[:-4])

    with pytest.raises(TorchPickleError, match=r"bad\.pth: storage 1 declares .* the file is corrupt, replace it"):
        load_state_dict(path)


def test_stride_reaching_outside_storage_is_refused(tmp_path: Path) -> None:
    p = _Pickle().ordered_dict().op(b"(").text("w").tensor("0", "FloatStorage", 6, 2, (2, 3), (3, 1), False)
    p.text("c").tensor("1", "LongStorage", 1, 0, (), (), False)
    path = _write_zip(tmp_path / "oob.pth", p.op(b"u").done())

    with pytest.raises(TorchPickleError, match=r"oob\.pth: .*reaches outside its storage of 6 elements"):
        load_state_dict(path)


def test_not_a_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("hello")

    with pytest.raises(TorchPickleError, match=r"notes\.pth: .*\.pth file"):
        load_state_dict(path)


def test_non_tensor_payload_is_not_a_state_dict(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "list.pth", _Pickle().ints((1, 2)).done())

    with pytest.raises(TorchPickleError, match=r"list\.pth: holds a tuple, not a flat state dict"):
        load_state_dict(path)
