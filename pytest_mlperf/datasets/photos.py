"""Real photos shipped inside scikit-image, with their known ImageNet classes, and ImageNet preprocessing.

No download is involved: the photos are files in the scikit-image wheel. Only photos whose ImageNet
class is unambiguous are listed; ``KNOWN_CLASSES`` holds every class an honest label would accept.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import numpy.typing as npt

from pytest_mlperf.errors import ProvisioningError

__all__ = ["KNOWN_CLASSES", "load_skimage_photos", "preprocess_imagenet"]

# ImageNet-1k indices (0..999), checked by eye against the photos and against EfficientNet-Lite0's
# top-5 (its top-1, with probability, in brackets). Classes that merely look alike are left out.
# chelsea, a tabby house cat: 281 tabby, 282 tiger cat, 285 Egyptian cat   [282 tiger cat, 0.38]
# coffee, an espresso in a cup on a saucer: 967 espresso, 968 cup           [967 espresso, 0.96]
# rocket, a Falcon 9 lift-off (ImageNet has no "rocket"): 657 missile, 744 projectile [657, 0.36];
#   812 space shuttle also reaches the top 5 but is not what the photo shows, so it is not accepted.
# camera, a grayscale photographer at a camera on a tripod: 872 tripod, 759 reflex camera [872, 0.94]
KNOWN_CLASSES: dict[str, frozenset[int]] = {
    "chelsea": frozenset({281, 282, 285}),
    "coffee": frozenset({967, 968}),
    "rocket": frozenset({657, 744}),
    "camera": frozenset({872, 759}),
}

_INSTALL_HINT = "pip install scikit-image"


def load_skimage_photos() -> list[tuple[str, npt.NDArray[np.uint8]]]:
    """Return ``(name, HWC uint8 RGB image)`` for each photo in ``KNOWN_CLASSES``, in that order.

    Grayscale photos come back with the gray channel repeated three times.

    Raises ProvisioningError naming the package and the pip command when scikit-image is missing.
    """
    try:
        data: Any = importlib.import_module("skimage.data")
    except ImportError:
        raise ProvisioningError(
            f"scikit-image photos: the package scikit-image is not installed; run `{_INSTALL_HINT}`"
        ) from None
    photos: list[tuple[str, npt.NDArray[np.uint8]]] = []
    for name in KNOWN_CLASSES:
        image = np.asarray(getattr(data, name)())
        if image.ndim == 2:
            # Grayscale photos are replicated to three channels, as ImageNet loaders do with .convert("RGB").
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ProvisioningError(
                f"scikit-image photo {name}: expected HxWx3 uint8, got {image.shape} {image.dtype}; "
                f"reinstall it with `{_INSTALL_HINT}`"
            )
        photos.append((name, image))
    return photos


def preprocess_imagenet(
    image: npt.NDArray[np.uint8], *, resize: int = 256, crop: int = 224, mean: float = 127.0, std: float = 128.0
) -> npt.NDArray[np.float32]:
    """Turn an HWC uint8 RGB image into a (3, crop, crop) float32 tensor for EfficientNet-Lite0.

    The short side is resized to ``resize`` with Pillow's bilinear filter, which antialiases when
    shrinking (as torchvision's ``Resize`` does on PIL images), then the centre ``crop`` square is cut
    and each value becomes (x - mean) / std. The defaults, (x - 127) / 128, are EfficientNet-Lite's.
    """
    from PIL import Image  # deferred: Pillow is only needed by suites that preprocess photos

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"preprocess_imagenet: expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    # Like torchvision, the long side is truncated, not rounded, so both agree pixel for pixel on size.
    size = (int(resize * width / height), resize) if height <= width else (resize, int(resize * height / width))
    resized = Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)
    # torchvision's CenterCrop offsets, so that results are comparable with the PyTorch reference.
    left = round((size[0] - crop) / 2)
    top = round((size[1] - crop) / 2)
    cropped = np.asarray(resized.crop((left, top, left + crop, top + crop)), dtype=np.float32)
    return np.ascontiguousarray(((cropped - mean) / std).transpose(2, 0, 1), dtype=np.float32)
