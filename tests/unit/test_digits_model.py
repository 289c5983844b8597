"""Tests for the embedded digits model: packaged data, split, deterministic training, ONNX export, cache."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest

from pytest_mlperf.errors import ModelError
from pytest_mlperf.models.digits import (
    DIGITS_ACCURACY_TARGET,
    DIGITS_MODEL_NAME,
    build_digits_onnx,
    digits_logits,
    digits_recipe_hash,
    ensure_digits_model,
    load_digits,
    split_indices,
    train_digits_cnn,
)

# Per-class sample counts of the UCI optdigits test set, as published in its description.
UCI_CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]

Weights = dict[str, npt.NDArray[np.float32]]


@pytest.fixture(scope="module")
def weights() -> Weights:
    return train_digits_cnn()


@pytest.fixture(scope="module")
def test_split() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    images, labels = load_digits()
    _, test_idx = split_indices(labels)
    return images[test_idx], labels[test_idx]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_load_digits_returns_the_uci_test_set_scaled_to_unit_range() -> None:
    images, labels = load_digits()
    assert images.shape == (1797, 1, 8, 8)
    assert images.dtype == np.float32
    assert labels.shape == (1797,)
    assert labels.dtype == np.int64
    assert np.bincount(labels).tolist() == UCI_CLASS_COUNTS
    assert images.min() == 0.0
    assert images.max() == 1.0
    # Pixels are counts 0..16 divided by 16, so every value sits exactly on that grid.
    assert np.array_equal(images * 16, np.round(images * 16))
    # The first scan of the file is a zero: a ring of ink with an empty centre.
    assert labels[0] == 0
    assert images[0, 0, 3:5, 3:5].max() == 0.0


def test_split_is_stratified_disjoint_complete_and_deterministic() -> None:
    _, labels = load_digits()
    train_idx, test_idx = split_indices(labels)
    again_train, again_test = split_indices(labels)

    assert np.array_equal(train_idx, again_train)
    assert np.array_equal(test_idx, again_test)
    assert np.intersect1d(train_idx, test_idx).size == 0
    assert np.array_equal(np.sort(np.concatenate([train_idx, test_idx])), np.arange(len(labels)))
    test_counts = np.bincount(labels[test_idx], minlength=10)
    expected = np.floor(np.array(UCI_CLASS_COUNTS) * 0.2 + 0.5)
    assert test_counts.tolist() == expected.astype(int).tolist()
    assert len(test_idx) == 359


def test_split_depends_on_the_seed() -> None:
    _, labels = load_digits()
    _, test_a = split_indices(labels, seed=0)
    _, test_b = split_indices(labels, seed=1)
    assert not np.array_equal(test_a, test_b)
    assert np.bincount(labels[test_a]).tolist() == np.bincount(labels[test_b]).tolist()


def test_split_rejects_a_fraction_outside_the_open_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"test_fraction must lie strictly between 0 and 1, got 1\.0"):
        split_indices(np.array([0, 0, 1, 1]), test_fraction=1.0)


def test_two_builds_of_the_same_weights_are_byte_identical(weights: Weights) -> None:
    assert _sha256(build_digits_onnx(weights)) == _sha256(build_digits_onnx(weights))


def test_onnx_model_has_the_documented_interface(weights: Weights) -> None:
    model = onnx.load_from_string(build_digits_onnx(weights))
    onnx.checker.check_model(model)
    assert [(op.domain, op.version) for op in model.opset_import] == [("", 17)]
    (graph_input,) = model.graph.input
    (graph_output,) = model.graph.output
    assert graph_input.name == "input"
    assert graph_output.name == "logits"
    input_dims = graph_input.type.tensor_type.shape.dim
    output_dims = graph_output.type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in input_dims] == ["N", 1, 8, 8]
    assert [d.dim_param or d.dim_value for d in output_dims] == ["N", 10]
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_onnxruntime_reaches_the_accuracy_target_and_matches_numpy(
    weights: Weights, test_split: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]
) -> None:
    images, labels = test_split
    session = ort.InferenceSession(build_digits_onnx(weights), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"input": images})

    assert logits.dtype == np.float32
    assert logits.shape == (len(labels), 10)
    accuracy = float(np.mean(logits.argmax(axis=1) == labels))
    assert accuracy >= DIGITS_ACCURACY_TARGET
    np.testing.assert_allclose(logits, digits_logits(weights, images), rtol=0, atol=1e-4)


def test_onnx_model_accepts_any_batch_size(weights: Weights) -> None:
    images, _ = load_digits()
    session = ort.InferenceSession(build_digits_onnx(weights), providers=["CPUExecutionProvider"])
    one = session.run(["logits"], {"input": images[:1]})[0]
    many = session.run(["logits"], {"input": images[:7]})[0]
    assert one.shape == (1, 10)
    assert many.shape == (7, 10)
    np.testing.assert_allclose(one[0], many[0], rtol=0, atol=1e-5)


def test_build_names_a_missing_weight(weights: Weights) -> None:
    partial = {name: value for name, value in weights.items() if name != "fc1.bias"}
    with pytest.raises(ModelError, match=r"lack 'fc1\.bias'.*train_digits_cnn\(\)"):
        build_digits_onnx(partial)


def test_ensure_builds_reuses_and_rebuilds_a_corrupted_model(tmp_path: Path, weights: Weights) -> None:
    cache_dir = tmp_path / "cache"
    path = ensure_digits_model(cache_dir)

    assert path == cache_dir / f"{DIGITS_MODEL_NAME}-{digits_recipe_hash()}.onnx"
    sidecar = path.with_name(path.name + ".sha256")
    built = path.read_bytes()
    assert sidecar.read_text().split() == [_sha256(built), path.name]
    # An independent training run gives the same bytes as the module's weights: training is deterministic.
    assert _sha256(built) == _sha256(build_digits_onnx(weights))

    before = path.stat()
    assert ensure_digits_model(cache_dir) == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    path.write_bytes(built[: len(built) // 2])
    assert ensure_digits_model(cache_dir) == path
    assert path.read_bytes() == built
    # Whether filelock deletes its lock file on release differs between its versions, so it is not checked.
    left = sorted(p.name for p in cache_dir.iterdir() if not p.name.endswith(".lock"))
    assert left == sorted([path.name, sidecar.name, "CACHEDIR.TAG"])


def test_ensure_is_safe_when_two_processes_race(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; "
        "from pytest_mlperf.models.digits import ensure_digits_model; "
        "print(ensure_digits_model(Path(sys.argv[1])))"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [worker.communicate() for worker in workers]

    assert [worker.returncode for worker in workers] == [0, 0], [err for _, err in results]
    paths = {out.strip() for out, _ in results}
    assert len(paths) == 1
    path = Path(paths.pop())
    sidecar = path.with_name(path.name + ".sha256")
    assert sidecar.read_text().split()[0] == _sha256(path.read_bytes())
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
