"""Image-quality flags from decoded pixels and native sizes, a few array passes each.

Per image, on the decoded pixels (greyscale of every f-th pixel, about 64 px a side):
``brightness`` (mean, 0-255), ``contrast`` (standard deviation), ``sharpness``
(variance of the 4-neighbour Laplacian over the variance of the image: how much of the
contrast is in fine detail, whatever the brightness and contrast), ``colourfulness`` (mean spread between the
largest and smallest channel).  From the file's own size: ``width``, ``height``,
``aspect`` (long side / short side).

Flags (thresholds fixed, or relative to the set where "blurred" is a matter of the set):

=================  ==================================================================
dark / bright      brightness < 25 / > 230
low_contrast       contrast < 12
blurry             sharpness below 1/8 of the set's median (unless flat,
                   contrast < 2: a flat picture has no detail to lose)
tiny               short side < 32 px (native size)
extreme_aspect     long side / short side > 3
grey_among_colour  a greyscale image (colourfulness < 3) where most images have colour
colour_among_grey  a colour image where most images are greyscale
=================  ==================================================================
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DARK, BRIGHT = 25.0, 230.0
LOW_CONTRAST = 12.0
FLAT = 2.0  # contrast below which a picture has no detail to be blurred
BLUR_SHARE = 1 / 8
TINY_SIDE = 32
EXTREME_ASPECT = 3.0
GREY_SPREAD = 3.0
SMALL_SIDE = 64  # the greyscale the statistics are computed on, about this many px a side
CHUNK = 256
QUALITY_FLAGS = (
    "dark",
    "bright",
    "low_contrast",
    "blurry",
    "tiny",
    "extreme_aspect",
    "grey_among_colour",
    "colour_among_grey",
)


def pixel_statistics(images) -> pd.DataFrame:
    """brightness, contrast, sharpness, colourfulness of uint8 images (n, H, W, C).

    ``images`` may be a memmap or any array-like indexable by slices; it is read in
    chunks of :data:`CHUNK` images."""
    n = len(images)
    out = np.zeros((n, 4), dtype=np.float64)
    for s in range(0, n, CHUNK):
        batch = np.asarray(images[s : s + CHUNK])
        if batch.ndim == 3:
            batch = batch[..., None]
        out[s : s + len(batch)] = _stats(batch)
    return pd.DataFrame(out, columns=["brightness", "contrast", "sharpness", "colourfulness"])


def _stats(batch: np.ndarray) -> np.ndarray:
    b, h, w, c = batch.shape
    f = max(1, min(h, w) // SMALL_SIDE)
    x = batch[:, ::f, ::f].astype(np.float32)  # every f-th pixel: a few MB a chunk, not the full decode in float
    spread = (x.max(axis=-1) - x.min(axis=-1)).mean(axis=(1, 2)) if c > 1 else np.zeros(b, np.float32)
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32) if c == 3 else x[..., 0]
    bright = grey.mean(axis=(1, 2))
    contrast = grey.std(axis=(1, 2))
    if grey.shape[1] >= 3 and grey.shape[2] >= 3:
        lap = grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1] + grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:] - 4 * grey[:, 1:-1, 1:-1]
        sharp = lap.var(axis=(1, 2)) / np.maximum(contrast**2, 1e-6)
    else:
        sharp = np.zeros(b, np.float32)
    return np.stack([bright, contrast, sharp, spread], axis=1)


def quality_table(stats: pd.DataFrame, width=None, height=None) -> pd.DataFrame:
    """The statistics of :func:`pixel_statistics` plus native size, aspect and every flag
    of :data:`QUALITY_FLAGS` (bool columns) and ``n_quality_flags``.

    Parameters
    ----------
    stats : DataFrame (n rows), from :func:`pixel_statistics`
    width, height : array (n,), the files' own sizes (missing: the flags that need
        them stay False)
    """
    n = len(stats)
    q = stats.copy()
    w = pd.array(np.full(n, pd.NA) if width is None else width, dtype="Int64")
    h = pd.array(np.full(n, pd.NA) if height is None else height, dtype="Int64")
    q["width"], q["height"] = w, h
    wf = w.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    hf = h.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        aspect = np.maximum(wf, hf) / np.minimum(wf, hf)
    q["aspect"] = np.round(aspect, 4)
    q["dark"] = q["brightness"] < DARK
    q["bright"] = q["brightness"] > BRIGHT
    q["low_contrast"] = q["contrast"] < LOW_CONTRAST
    median_sharp = float(np.median(q["sharpness"])) if n else 0.0
    q["blurry"] = (q["sharpness"] < BLUR_SHARE * median_sharp) & (q["contrast"] >= FLAT)
    q["tiny"] = np.nan_to_num(np.minimum(wf, hf), nan=np.inf) < TINY_SIDE
    q["extreme_aspect"] = np.nan_to_num(aspect, nan=1.0) > EXTREME_ASPECT
    grey = q["colourfulness"].to_numpy() < GREY_SPREAD
    mostly_grey = grey.mean() > 0.5 if n else False
    q["grey_among_colour"] = grey & (not mostly_grey)
    q["colour_among_grey"] = (~grey) & mostly_grey
    q["n_quality_flags"] = q[list(QUALITY_FLAGS)].sum(axis=1).astype(np.int64)
    return q


__all__ = ["QUALITY_FLAGS", "pixel_statistics", "quality_table"]
