"""Near-identical images: a perceptual hash of a tiny decode, and groups joined by union.

:func:`dhash` is a 256-bit difference hash: the image decoded greyscale at 34 x 32
(:data:`DHASH_SETTINGS`, through the decoded-image cache, so a second run reads no
file), averaged over 2 x 2 blocks to 17 x 16, one bit per horizontally adjacent pair
(left darker than right).  Two images whose hashes differ in at most
:data:`NEAR_COPY_DISTANCE` bits are taken as copies of one another.

Why these choices, measured on the 5,216 chest X-rays of the Kaggle train split
(224 x 224 JPEGs, 2,846 patients):

* the common 64-bit dHash (9 x 8) cannot tell chest X-rays apart: 812 pairs of images
  of *different* patients hash identically, and at distance 1 the copies would join
  1,326 patients into one group;
* at 256 bits from a direct 17 x 16 decode, different patients come within 8 bits
  (1 pair; 6 within 10) while a brightened copy moves up to 12: the two overlap;
* decoded at twice the size and block-averaged, no two images of different patients
  are within 10 bits (5 pairs within 12), while copies stay within 7 bits of their
  original (200 sampled X-rays, worst case over the sample: JPEG re-encoding at
  quality 70: 5, at 40: 7; brightness +8%: 7; resized to 160 px: 7; blur sigma 1: 6);
* so at distance <= 8 copies are found with a margin on both sides; on that split
  the only ones are the 24 sets of byte-identical files (each within one patient).

Crops and rotations change the hash by 25-80 bits: they are not found here (nor meant to
be); ``pixsort audit`` also hashes each image's centre 95% to find 5% crops
(:mod:`pixsort.auditing.duplicates`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pixsort.data.decode import DecodeSettings

DHASH_SETTINGS = DecodeSettings(size=(32, 34), channels="L", resize="squash")
DHASH_BITS = 256
NEAR_COPY_DISTANCE = 8
_PAIR_BLOCK = 2_000_000  # hash comparisons held at once (x 32 bytes)


def dhash(grey: np.ndarray) -> np.ndarray:
    """Difference hashes of uint8 images ``(n, 32, 34[, 1])`` (:data:`DHASH_SETTINGS`):
    ``(n, 4)`` uint64 words.  Each image is averaged over 2 x 2 blocks to 16 x 17; a
    bit is 1 where a pixel is darker than its right neighbour (16 rows x 16 pairs)."""
    g = np.asarray(grey)
    if g.ndim == 4:
        g = g[..., 0]
    h, w = DHASH_SETTINGS.hw
    if g.ndim != 3 or g.shape[1:] != (h, w):
        raise ValueError(f"dhash expects images shaped (n, {h}, {w}), got {g.shape}")
    small = g.reshape(len(g), h // 2, 2, w // 2, 2).astype(np.float32).mean(axis=(2, 4))
    bits = (small[:, :, :-1] < small[:, :, 1:]).reshape(len(g), -1)
    return np.ascontiguousarray(np.packbits(bits, axis=1)).view(np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distances between hash rows ``a (..., W)`` and ``b (..., W)`` (broadcast)."""
    return np.bitwise_count(np.bitwise_xor(a, b)).sum(axis=-1, dtype=np.int64)


def near_pairs(hashes: np.ndarray, max_distance: int = NEAR_COPY_DISTANCE) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(i, j)``, ``i < j``, of every pair of hashes within ``max_distance`` bits.

    An exact search over all pairs, in blocks: about a second for 5,000 images, and
    quadratic beyond."""
    h = np.asarray(hashes)
    n = len(h)
    rows = max(1, _PAIR_BLOCK // max(n, 1))
    found_i, found_j = [], []
    for start in range(0, n, rows):
        block = h[start : start + rows]
        dist = hamming(block[:, None, :], h[None, :, :])
        i, j = np.nonzero(dist <= max_distance)
        i = i + start
        keep = i < j
        found_i.append(i[keep])
        found_j.append(j[keep])
    if not found_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(found_i).astype(np.int64), np.concatenate(found_j).astype(np.int64)


def label_pairs(labels) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, first)`` joining each item to the first item with its label;
    ``None`` or ``""`` labels join nothing."""
    values = [None if (v is None or v == "") else v for v in labels]
    codes, _ = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    n = len(codes)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    labelled = np.flatnonzero(codes >= 0)
    first = np.full(codes.max() + 1 if len(labelled) else 0, -1, dtype=np.int64)
    # the first position of each code: scan in reverse so the smallest index wins
    first[codes[labelled][::-1]] = labelled[::-1]
    j = first[codes[labelled]]
    keep = labelled != j
    return labelled[keep].astype(np.int64), j[keep]


def union_groups(n: int, *pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Group id per item (0..g-1) of the union of the links in ``pairs``: items linked
    directly or through others share a group (union-find, as connected components)."""
    if n == 0:
        return np.zeros(0, np.int64)
    i = np.concatenate([np.asarray(p[0], np.int64) for p in pairs] or [np.zeros(0, np.int64)])
    j = np.concatenate([np.asarray(p[1], np.int64) for p in pairs] or [np.zeros(0, np.int64)])
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    # number groups by their first item, so the ids do not depend on scipy's order
    _, first = np.unique(component, return_index=True)
    order = np.empty(len(first), np.int64)
    order[np.argsort(first)] = np.arange(len(first))
    return order[component]


__all__ = [
    "DHASH_BITS",
    "DHASH_SETTINGS",
    "NEAR_COPY_DISTANCE",
    "dhash",
    "hamming",
    "label_pairs",
    "near_pairs",
    "union_groups",
]
