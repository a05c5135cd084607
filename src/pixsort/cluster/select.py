"""Choosing k, shared by image and table clustering: the seeded silhouette sample
(the silhouette is O(n^2), so above a size it is computed on one sample, the same
for every candidate k) and the rule that picks the best candidate."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def silhouette_sample_index(n: int, sample_size: int | None, random_state: int = 0) -> np.ndarray:
    """Sorted positions of the points the silhouette is computed on (all up to ``sample_size``)."""
    if sample_size is None or n <= sample_size:
        return np.arange(n)
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, size=sample_size, replace=False))


def best_k(ks: Sequence[int], scores: Sequence[float], eligible: Sequence[bool] | None = None) -> int | None:
    """The candidate k with the highest score among the eligible ones with a finite
    score; ties go to the smaller k.  None when no candidate qualifies."""
    allowed = [True] * len(ks) if eligible is None else list(eligible)
    valid = [(round(float(s), 12), -int(k)) for k, s, ok in zip(ks, scores, allowed) if ok and np.isfinite(s)]
    if not valid:
        return None
    return -max(valid)[1]


__all__ = ["best_k", "silhouette_sample_index"]
