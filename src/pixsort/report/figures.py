"""Figures: matplotlib on its file-only Agg backend, one way to save them."""

from __future__ import annotations

import os
from pathlib import Path

DPI = 110


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed, thread-safe enough for files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = DPI) -> Path:
    """Lay out, write as PNG (creating the folder) and close ``fig``; returns the path."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def thumbnail(image, side: int):
    """A ``side`` x ``side`` RGB PIL image of a uint8 array (H, W[, C]); tiny images
    (8-32 px) are enlarged with hard pixel edges rather than blurred."""
    import numpy as np
    from PIL import Image

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    im = Image.fromarray(arr).convert("RGB")
    resample = Image.NEAREST if max(im.size) < side else Image.BILINEAR
    return im.resize((side, side), resample)


def plain_text(text: object) -> str:
    """User text (class names, file names) for a figure: matplotlib reads ``$...$`` as
    mathtext markup, so every dollar sign is escaped and the text shows as it is."""
    return str(text).replace("$", r"\$")


__all__ = ["DPI", "plain_text", "pyplot", "save_figure", "thumbnail"]
