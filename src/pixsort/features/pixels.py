"""``PixelExtractor``: raw pixels as features, the baseline for small images."""

from __future__ import annotations

import numpy as np
import torch

from .base import ImageExtractor
from .preprocess import normalize_size, to_float_batch

__all__ = ["PixelExtractor"]

# ITU-R BT.601 luma weights, as PIL's convert("L") uses
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


class PixelExtractor(ImageExtractor):
    """Flattened pixels scaled to [0, 1], optionally resized.

    Parameters
    ----------
    size : None, int or (h, w)
        Resize to this size first (bilinear, antialiased when shrinking);
        ``None`` keeps the input size, which must then be the same at fit and
        predict time for the features to line up.
    color : {"rgb", "grey"}
        ``"rgb"`` repeats grey images to 3 channels (D = h * w * 3); ``"grey"``
        converts RGB to luma (D = h * w), the natural choice for X-rays.
    batch_size : int
        Images resized per torch call (bounds memory for large inputs).

    Output layout is (h, w, c) row-major, as ``images[i].ravel()`` would give.
    """

    def __init__(self, size=None, color: str = "rgb", batch_size: int = 1024):
        self.size = size
        self.color = color
        self.batch_size = batch_size

    def _validate_params(self) -> None:
        normalize_size(self.size)
        if self.color not in ("rgb", "grey"):
            raise ValueError(f"color must be 'rgb' or 'grey', got {self.color!r}")
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, (int, np.integer))
            or self.batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")

    @property
    def extractor_id(self) -> str:
        size = normalize_size(self.size)
        return f"PixelExtractor/size={'native' if size is None else f'{size[0]}x{size[1]}'}/{self.color}"

    def _extract(self, images: np.ndarray) -> np.ndarray:
        size = normalize_size(self.size)
        chunks = []
        with torch.inference_mode():
            for start in range(0, max(len(images), 1), self.batch_size):
                x = to_float_batch(
                    images[start : start + self.batch_size], size, rgb=self.color == "rgb", channels_last=True
                )
                if self.color == "grey" and x.shape[1] == 3:
                    x = (x * _LUMA).sum(dim=1, keepdim=True)
                # channels_last memory is (N, H, W, C): flattening it gives the (h, w, c) layout
                chunks.append(x.permute(0, 2, 3, 1).reshape(len(x), -1).numpy())
        return np.concatenate(chunks).astype(np.float32, copy=False)
