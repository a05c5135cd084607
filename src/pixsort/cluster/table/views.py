"""2-D views of table rows under a fitted clusterer's own distance."""

from __future__ import annotations

import numpy as np

MAX_MAP_ROWS = 3000  # classical MDS is an eigendecomposition of an n x n matrix


def principal_coordinates(dist: np.ndarray, n_components: int = 2) -> np.ndarray:
    """Classical (Torgerson) MDS: coordinates whose Euclidean distances best match
    ``dist`` (n, n) in the least-squares sense of the double-centred matrix.
    Returns (n, n_components).  One eigendecomposition, no iterations, deterministic
    up to the sign of each axis (fixed here so the largest loading is positive)."""
    n = len(dist)
    centre = np.eye(n) - 1.0 / n
    gram = -0.5 * centre @ (dist**2) @ centre
    values, vectors = np.linalg.eigh(gram)
    top = np.argsort(values)[::-1][:n_components]
    coords = vectors[:, top] * np.sqrt(np.clip(values[top], 0, None))
    signs = np.sign(coords[np.abs(coords).argmax(axis=0), range(coords.shape[1])])
    return coords * np.where(signs == 0, 1, signs)


def map_coordinates(clusterer, max_rows: int = MAX_MAP_ROWS) -> tuple[np.ndarray, np.ndarray, str]:
    """(rows shown, their 2-D coordinates (n, 2), how they were made) for a fitted
    ``TableClusterer``: principal components of a Euclidean space, classical MDS of
    the distance matrix otherwise; a seeded sample of ``max_rows`` rows above that."""
    rows = np.flatnonzero(~clusterer.empty_rows_)
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(0).choice(rows, max_rows, replace=False))
    space = clusterer.embedding_[rows]
    if clusterer.metric_ == "euclidean":
        from sklearn.decomposition import PCA

        return rows, PCA(n_components=2, random_state=0).fit_transform(space), "principal components"
    return rows, principal_coordinates(clusterer.distances(space)), f"classical MDS of {clusterer.metric_} distance"


__all__ = ["MAX_MAP_ROWS", "map_coordinates", "principal_coordinates"]
