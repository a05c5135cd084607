"""2-D views of a clustering space, for the scatter plots and the map."""

from __future__ import annotations

import numpy as np

from pixsort.features.reduce import embed_2d

VIEW_METHODS = ("tsne", "umap", "pca")
MAX_VIEW_POINTS = 5000  # a t-SNE of more points takes minutes on 2 cores and shows nothing more


def view_coordinates(
    embeddings: np.ndarray, method: str = "tsne", random_state: int = 0, max_points: int = MAX_VIEW_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """(positions shown, their 2-D coordinates (m, 2)); a seeded sample above ``max_points``."""
    if method not in VIEW_METHODS:
        raise ValueError(f"view must be one of {', '.join(VIEW_METHODS)}, got {method!r}")
    n = len(embeddings)
    idx = np.arange(n)
    if n > max_points:
        idx = np.sort(np.random.default_rng(random_state).choice(n, max_points, replace=False))
    return idx, embed_2d(np.asarray(embeddings)[idx], method=method, random_state=random_state)


__all__ = ["MAX_VIEW_POINTS", "VIEW_METHODS", "view_coordinates"]
