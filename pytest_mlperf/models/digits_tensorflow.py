"""Save the digits CNN as a TensorFlow SavedModel built from the numpy weights, and cache the directory."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy.typing as npt

from pytest_mlperf.errors import ModelError
from pytest_mlperf.fileio import ensure_built_dir
from pytest_mlperf.models.digits import (
    DIGITS_MODEL_NAME,
    _checked_weights,
    digits_recipe_hash,
    digits_weights_from_onnx,
    ensure_digits_model,
)

__all__ = ["DIGITS_SIGNATURE", "ensure_digits_savedmodel", "save_digits_savedmodel"]

# Bump when the graph written below changes; it renames the cached directory.
_EXPORT_VERSION: Final = 1
#: The signature the backend runs by default: ``input`` [N,1,8,8] float32 (NCHW) -> ``logits`` [N,10].
DIGITS_SIGNATURE: Final = "serving_default"


def save_digits_savedmodel(weights: Mapping[str, npt.ArrayLike], export_dir: Path) -> None:
    """Write the weights as a SavedModel in *export_dir*: a ``tf.function`` with the ONNX graph's NCHW interface.

    TensorFlow's CPU convolution and pooling take NHWC only, so the function transposes in, convolves, pools, and
    transposes back before flattening in the (C, H, W) order ONNX uses, so fc1's weights are used as trained.
    """
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise ModelError(
            f'saving the digits model for TensorFlow needs tensorflow ({exc}); install it with pip install '
            '"pytest-mlperf[tensorflow]"'
        ) from exc
    w = _checked_weights(weights)

    class DigitsCnn(tf.Module):  # type: ignore[misc]  # tf is untyped
        def __init__(self) -> None:
            super().__init__(name="digits_cnn")
            self.conv_w = tf.constant(w["conv1.weight"].transpose(2, 3, 1, 0))  # OIHW -> HWIO
            self.conv_b = tf.constant(w["conv1.bias"])
            self.fc1_w = tf.constant(w["fc1.weight"].T)
            self.fc1_b = tf.constant(w["fc1.bias"])
            self.fc2_w = tf.constant(w["fc2.weight"].T)
            self.fc2_b = tf.constant(w["fc2.bias"])

        @tf.function(input_signature=[tf.TensorSpec([None, 1, 8, 8], tf.float32, name="input")])  # type: ignore[untyped-decorator]
        def __call__(self, images: Any) -> dict[str, Any]:
            x = tf.transpose(images, [0, 2, 3, 1])
            x = tf.nn.relu(tf.nn.conv2d(x, self.conv_w, strides=1, padding="SAME") + self.conv_b)
            x = tf.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID")
            x = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [-1, self.fc1_w.shape[0]])
            x = tf.nn.relu(tf.matmul(x, self.fc1_w) + self.fc1_b)
            return {"logits": tf.matmul(x, self.fc2_w) + self.fc2_b}

    module = DigitsCnn()
    tf.saved_model.save(
        module, str(export_dir), signatures={DIGITS_SIGNATURE: module.__call__.get_concrete_function()}
    )


def ensure_digits_savedmodel(cache_dir: Path) -> Path:
    """Return the cached digits SavedModel directory in cache_dir, saving it from the cached ONNX model's weights
    if absent."""
    onnx_path = ensure_digits_model(cache_dir)
    name = f"tensorflow/{DIGITS_MODEL_NAME}-{digits_recipe_hash()}-e{_EXPORT_VERSION}.savedmodel"
    return ensure_built_dir(
        cache_dir,
        name,
        lambda target: save_digits_savedmodel(digits_weights_from_onnx(onnx_path), target),
        what="the digits model for TensorFlow",
    )
