"""Outliers: images far from every neighbour.

The score of an image is its mean cosine distance (1 - similarity of centred unit
embeddings) to its ``k`` nearest other images, copies of it left out (a picture
saved twice is not typical for being close to its copy).  An image is flagged when
its score is more than :data:`OUTLIER_Z` robust standard deviations (1.4826 x the
median absolute deviation) above the median score.
"""

from __future__ import annotations

import numpy as np

OUTLIER_K = 5
OUTLIER_Z = 5.0


def outlier_scores(
    similarities: np.ndarray, indices: np.ndarray, group: np.ndarray | None = None, k: int = OUTLIER_K
) -> np.ndarray:
    """Mean distance (n,) float64 to the ``k`` nearest neighbours outside the image's own
    duplicate group (``group`` -1: none).

    Parameters
    ----------
    similarities, indices : ndarray (n, K), K >= k, best first (own row excluded)
    """
    n = len(indices)
    if n == 0 or indices.shape[1] == 0:
        return np.zeros(n)
    valid = indices >= 0
    if group is not None:
        g = np.asarray(group)
        same = (g[:, None] >= 0) & (g[np.clip(indices, 0, None)] == g[:, None])
        valid &= ~same
    # the first k valid neighbours of each row
    rank = np.cumsum(valid, axis=1)
    take = valid & (rank <= k)
    count = take.sum(axis=1)
    dist = np.where(take, 1.0 - similarities, 0.0).sum(axis=1)
    # a row whose neighbours were all copies: its farthest neighbour is the best estimate
    fallback = 1.0 - similarities[:, -1]
    return np.where(count > 0, dist / np.maximum(count, 1), fallback)


def robust_z(scores: np.ndarray) -> np.ndarray:
    """(score - median) / (1.4826 MAD), with a floor on the spread so ties give no infinities."""
    s = np.asarray(scores, dtype=np.float64)
    if len(s) == 0:
        return s
    med = np.median(s)
    mad = 1.4826 * np.median(np.abs(s - med))
    return (s - med) / max(mad, 1e-9, 1e-3 * abs(med))


__all__ = ["OUTLIER_K", "OUTLIER_Z", "outlier_scores", "robust_z"]
