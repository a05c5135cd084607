"""The one check of a uint8 image batch that every public method runs on its input."""

from __future__ import annotations

import numpy as np


class ImageBatchError(TypeError, ValueError):
    """Input that is not a usable uint8 image batch (a TypeError and a ValueError, so
    callers catching either get it)."""


def check_images(images, name: str = "images", *, allow_empty: bool = True) -> np.ndarray:
    """Validate an image batch and return it as ``(N, H, W, C)`` uint8, C in {1, 3}.

    ``(N, H, W)`` greyscale is given a channel axis (a view, no copy); a torch tensor
    is read as its numpy array.  Raises :class:`ImageBatchError` saying what was
    received and what to do instead.
    """
    if type(images).__module__.startswith("torch"):
        images = images.numpy()
    elif (
        not isinstance(images, np.ndarray)
        and hasattr(images, "__array__")
        and getattr(images, "dtype", None) == np.uint8
    ):
        images = np.asarray(images)  # an image set made on access (pixsort.data.lazy): made here, once
    if not isinstance(images, np.ndarray):
        raise ImageBatchError(
            f"{name} must be a numpy uint8 array (N, H, W, C), got {type(images).__name__}; "
            "stack equally sized images with np.stack first"
        )
    if images.dtype != np.uint8:
        raise ImageBatchError(
            f"{name} must have dtype uint8 (0-255 pixels, decoded with pixsort.data), got {images.dtype}"
        )
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ImageBatchError(f"{name} must have shape (N, H, W, C) or (N, H, W), got {images.shape}")
    n, h, w, c = images.shape
    if c not in (1, 3):
        hint = " (drop the alpha channel: images[..., :3])" if c == 4 else ""
        raise ImageBatchError(f"{name} must have 1 (grey) or 3 (RGB) channels, got {c}{hint}")
    if n and (h < 1 or w < 1):
        raise ImageBatchError(f"{name} must not be empty, got shape {images.shape}")
    if not allow_empty and n == 0:
        raise ImageBatchError(f"{name} holds no images")
    return images


__all__ = ["ImageBatchError", "check_images"]
