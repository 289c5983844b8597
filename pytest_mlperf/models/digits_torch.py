"""The digits CNN for PyTorch: an ``nn.Module`` holding the trained weights, saved as TorchScript and cached."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pytest_mlperf.backends.torch import quiet_jit
from pytest_mlperf.errors import ModelError
from pytest_mlperf.fileio import ensure_built
from pytest_mlperf.models.digits import (
    DIGITS_MODEL_NAME,
    digits_recipe_hash,
    digits_weights_from_onnx,
    ensure_digits_model,
)

__all__ = ["DigitsNet", "build_digits_torchscript", "ensure_digits_torch"]


class DigitsNet(nn.Module):
    """Conv 3x3 (16, pad 1) -> ReLU -> MaxPool 2 -> Flatten -> FC 64 -> ReLU -> FC 10, as ``models.digits`` trains.

    Its state dict keys are the numpy weight names, so ``load_state_dict`` takes the trained weights as they are.
    Constructed without arguments, so ``--mlperf-backend-option torch.model_class=`` can name it for eager mode.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        # NCHW flatten, as ONNX Flatten does on the exported graph.
        logits: torch.Tensor = self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))
        return logits


def build_digits_torchscript(weights: Mapping[str, np.ndarray]) -> bytes:
    """A ``DigitsNet`` with *weights*, in eval mode, scripted and serialised as a TorchScript archive."""
    net = DigitsNet()
    try:
        net.load_state_dict({
            name: torch.from_numpy(np.array(value, dtype=np.float32)) for name, value in weights.items()
        })
    except RuntimeError as exc:  # missing, unexpected or misshapen keys
        raise ModelError(f"the digits weights do not fit DigitsNet: {exc}") from exc
    buffer = io.BytesIO()
    with quiet_jit():
        torch.jit.save(torch.jit.script(net.eval()), buffer)
    return buffer.getvalue()


def ensure_digits_torch(cache_dir: Path) -> Path:
    """Return the cached TorchScript digits model in cache_dir, writing it from the cached ONNX weights if absent.

    The name carries torch's major.minor: an archive written by a newer torch may not load in an older one.
    """
    onnx_path = ensure_digits_model(cache_dir)
    major_minor = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    name = f"{DIGITS_MODEL_NAME}-{digits_recipe_hash()}-torch{major_minor}.pt"
    return ensure_built(
        cache_dir,
        name,
        lambda: build_digits_torchscript(digits_weights_from_onnx(onnx_path)),
        what="the digits TorchScript model",
    )
