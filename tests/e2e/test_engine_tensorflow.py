"""TensorFlow engine: the SavedModel built from the numpy weights agrees with ONNX Runtime and runs the digits suite;
frozen GraphDefs (the MLPerf ResNet50 .pb's format) load through tf.compat.v1; options are recorded."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import onnxruntime as ort
import tensorflow as tf

from pytest_mlperf.backends.base import BackendOptions
from pytest_mlperf.backends.tensorflow import TensorFlowBackend
from pytest_mlperf.errors import ModelError
from pytest_mlperf.models.digits import build_digits_onnx, digits_logits
from pytest_mlperf.models.digits_formats import digits_model_for
from pytest_mlperf.models.digits_tensorflow import ensure_digits_savedmodel
from tests.e2e.engine_checks import run_digits_suite, runs_of, top1_by_engine

# fp32 logits of a few units; the engines sum in different orders, so they agree to ~1e-5, not bit for bit.
ATOL = 1e-4


@pytest.fixture(scope="module")
def savedmodel(engine_cache: Path) -> Path:
    return ensure_digits_savedmodel(engine_cache)


def tensorflow(model: Path, **extra: str) -> TensorFlowBackend:
    return TensorFlowBackend(model, BackendOptions(extra=tuple(extra.items())))


def frozen_graph(digits_weights: dict[str, np.ndarray], path: Path, batch: int | None = None) -> Path:
    """The digits CNN as a frozen GraphDef shaped like the MLPerf ResNet50 .pb: an NHWC placeholder
    ``input_tensor``, and ``ArgMax`` and ``softmax_tensor`` outputs, digits_weights as constants."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [batch, 8, 8, 1], name="input_tensor")
        conv = tf.nn.conv2d(x, tf.constant(digits_weights["conv1.weight"].transpose(2, 3, 1, 0)), 1, "SAME")
        pooled = tf.nn.max_pool2d(tf.nn.relu(conv + digits_weights["conv1.bias"]), 2, 2, "VALID")
        flat = tf.reshape(tf.transpose(pooled, [0, 3, 1, 2]), [-1, 256])
        hidden = tf.nn.relu(tf.matmul(flat, tf.constant(digits_weights["fc1.weight"].T)) + digits_weights["fc1.bias"])
        logits = tf.matmul(hidden, tf.constant(digits_weights["fc2.weight"].T)) + digits_weights["fc2.bias"]
        tf.argmax(logits, axis=1, name="ArgMax")
        tf.nn.softmax(logits, name="softmax_tensor")
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def nhwc(digits_images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(digits_images.transpose(0, 2, 3, 1))


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_savedmodel_logits_match_onnxruntime_and_the_numpy_reference(
    digits_weights: dict[str, np.ndarray], digits_images: np.ndarray, savedmodel: Path
) -> None:
    session = ort.InferenceSession(build_digits_onnx(digits_weights), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": digits_images})[0]
    backend = tensorflow(savedmodel)
    assert backend.input_names == ("input",) and backend.output_names == ("logits",)
    got = backend.run(digits_images)["logits"]
    assert got.shape == (len(digits_images), 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    np.testing.assert_allclose(got, digits_logits(digits_weights, digits_images), rtol=0, atol=ATOL)
    assert len(np.unique(got.argmax(axis=1))) == 10
    for size in (1, 7):  # the batch axis is free
        np.testing.assert_allclose(backend.run(digits_images[:size])["logits"], expected[:size], rtol=0, atol=ATOL)
    backend.close()


def test_the_savedmodel_is_built_once_into_place_and_identified_by_content(tmp_path: Path) -> None:
    first = ensure_digits_savedmodel(tmp_path)
    stamp = (first / "saved_model.pb").stat().st_mtime_ns
    assert digits_model_for("tensorflow", tmp_path) == first
    assert (first / "saved_model.pb").stat().st_mtime_ns == stamp, "the cached SavedModel was rebuilt"
    assert first.name.endswith(".savedmodel") and first.parent.name == "tensorflow"
    assert [p.name for p in first.parent.iterdir() if p.name.endswith(".tmp")] == [], "a build temporary was left"
    identity = tensorflow(first).model_identity
    assert identity is not None and identity.startswith("sha256:")
    assert tensorflow(first).model_identity == identity
    (first / "assets" / "extra.txt").write_text("changed")
    assert tensorflow(first).model_identity != identity, "the identity must cover every file of the directory"


def test_options_are_recorded(savedmodel: Path) -> None:
    backend = tensorflow(savedmodel, threads="1", inter_op_threads="2")
    described = backend.describe()
    assert (described["threads"], described["inter_op_threads"]) == (1, 2)
    assert described["format"] == "savedmodel" and described["signature"] == "serving_default"
    assert described["version"] == tf.__version__
    assert described["options"] == {"threads": "1", "inter_op_threads": "2"}
    # Without the options the session follows --mlperf-threads and BackendOptions.inter_op_threads.
    default = TensorFlowBackend(savedmodel, BackendOptions(intra_op_threads=3, inter_op_threads=1)).describe()
    assert (default["threads"], default["inter_op_threads"]) == (3, 1)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"threads": "many"}, "threads=many: the tensorflow backend needs a whole number >= 0"),
        ({"inter_op_threads": "-2"}, "inter_op_threads=-2: the tensorflow backend needs a whole number >= 0"),
        ({"signature": "predict"}, "has no signature 'predict'; its signatures are serving_default"),
        ({"delegate": "none"}, "the tensorflow backend has no option 'delegate'; it reads: threads=N"),
        ({"data_format": "CHW"}, "tensorflow.data_format=CHW: use one of NCHW, NHWC"),
    ],
)
def test_a_bad_option_is_a_clear_error(savedmodel: Path, extra: dict[str, str], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        tensorflow(savedmodel, **extra)


def test_a_frozen_graph_loads_by_tensor_name_like_the_mlperf_resnet50_pb(
    digits_weights: dict[str, np.ndarray], digits_images: np.ndarray, tmp_path: Path
) -> None:
    model = frozen_graph(digits_weights, tmp_path / "frozen.pb")
    reference = digits_logits(digits_weights, digits_images)
    named = tensorflow(model, inputs="input_tensor:0", outputs="ArgMax:0,softmax_tensor:0")
    assert named.output_names == ("ArgMax:0", "softmax_tensor:0")  # in the order given: classification reads the first
    out = named.run(nhwc(digits_images))
    np.testing.assert_array_equal(out["ArgMax:0"], reference.argmax(axis=1))
    np.testing.assert_allclose(out["softmax_tensor:0"], softmax(reference), rtol=0, atol=1e-5)
    assert named.describe()["format"] == "frozen_graph" and named.model_identity is None  # the harness hashes it
    # data_format=NHWC feeds the datasets' NCHW batches (the ImageNet dataset's layout) to an NHWC graph.
    transposed = tensorflow(model, outputs="ArgMax:0", data_format="NHWC")
    np.testing.assert_array_equal(transposed.run(digits_images)["ArgMax:0"], reference.argmax(axis=1))
    assert transposed.describe()["data_format"] == "NHWC"
    # Unnamed, the placeholders are the inputs and the tensors no op consumes are the outputs.
    found = tensorflow(model)
    assert found.input_names == ("input_tensor:0",)
    assert set(found.output_names) == {"ArgMax:0", "softmax_tensor:0"}


def test_a_frozen_graph_with_a_fixed_batch_is_cut_and_padded(
    digits_weights: dict[str, np.ndarray], digits_images: np.ndarray, tmp_path: Path
) -> None:
    backend = tensorflow(frozen_graph(digits_weights, tmp_path / "b1.pb", batch=1), outputs="ArgMax:0")
    assert backend.max_batch == 1
    expected = digits_logits(digits_weights, digits_images[:5]).argmax(axis=1)
    np.testing.assert_array_equal(backend.run(nhwc(digits_images[:5]))["ArgMax:0"], expected)


def test_bad_frozen_graphs_and_tensor_names_are_clear_errors(
    digits_weights: dict[str, np.ndarray], digits_images: np.ndarray, tmp_path: Path
) -> None:
    model = frozen_graph(digits_weights, tmp_path / "frozen.pb")
    with pytest.raises(ModelError, match=r"has no tensor 'logits:0'.*its placeholders are input_tensor:0"):
        tensorflow(model, outputs="logits:0")
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelError, match=r"could not load .*garbage\.pb as a frozen GraphDef"):
        tensorflow(garbage)
    with pytest.raises(ModelError, match=r"is a directory but not a SavedModel"):
        tensorflow(tmp_path)
    with pytest.raises(ModelError, match="model not found"):
        tensorflow(tmp_path / "absent.pb")
    with pytest.raises(ModelError, match=r"refused the batch \{'input_tensor:0': \[3, 1, 8, 8\]\}"):
        tensorflow(model).run(digits_images[:3])  # NCHW into an NHWC graph


def test_one_session_serves_concurrent_threads(
    digits_weights: dict[str, np.ndarray], digits_images: np.ndarray, savedmodel: Path
) -> None:
    backend = tensorflow(savedmodel)
    assert backend.thread_safe is True
    reference = digits_logits(digits_weights, digits_images)
    errors: list[str] = []

    def work(size: int) -> None:
        for start in range(0, len(digits_images) - size, size):
            out = backend.run(digits_images[start : start + size])["logits"]
            if not np.allclose(out, reference[start : start + size], rtol=0, atol=ATOL):
                errors.append(f"batch of {size} at {start}")

    threads = [threading.Thread(target=work, args=(size,)) for size in (3, 17)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.slow
def test_the_digits_suite_runs_on_tensorflow_as_accurately_as_onnxruntime(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    # Two inference threads for Offline and Server share the one session (thread_safe).
    doc = run_digits_suite(
        pytester, tmp_path, "tensorflow", "--mlperf-workers=2", "--mlperf-backend-option=tensorflow.threads=1"
    )
    top1 = top1_by_engine(doc)
    assert abs(top1["tensorflow"] - top1["onnxruntime"]) <= 0.001
    assert top1["tensorflow"] >= 0.97
    for run in runs_of(doc, "tensorflow"):
        options = run["backend_options"]
        assert options["threads"] == 1 and options["format"] == "savedmodel" and options["version"] == tf.__version__
        assert options["options"] == {"threads": "1"}
        # A SavedModel is a directory: the run is identified by the backend's digest of its files.
        assert run["model_identity"].startswith("sha256:") and run["model_sha256"] is None
        assert run["metrics"]["accuracy"]["count"] == 359
    assert all("options" not in run["backend_options"] for run in runs_of(doc, "onnxruntime"))
