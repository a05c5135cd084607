"""Partition an embedding matrix: k-means, agglomerative (Ward), HDBSCAN, spectral.

Every method returns a :class:`Partition` with labels numbered by decreasing
cluster size (cluster 0 is the largest; ties broken by the smallest member index),
so equal inputs and seeds give identical labels whatever the backend, and a
centre per cluster (the members' mean) that ``predict`` and the report use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pixsort.cluster.images.neighbours import has_faiss
from pixsort.cluster.labels import order_by_size

METHODS = ("kmeans", "agglomerative", "hdbscan", "spectral", "tsne-kmeans")
NEEDS_K = {"kmeans": True, "agglomerative": True, "hdbscan": False, "spectral": True, "tsne-kmeans": True}
FAISS_MIN_SAMPLES = 50_000  # below this scikit-learn's k-means is as fast and exactly reproducible
# faiss restarts run on a seeded sample of this many rows, then the best is refined on all
# rows: k-means streams every row each step (memory-bound: ~17 ms a step at 50,000 x 413),
# and the restarts are most of the steps
RESTART_SAMPLE = 20_000
KMEANS_STEPS = 50


@dataclass
class Partition:
    """The result of clustering ``n`` points into ``k`` clusters.

    Attributes
    ----------
    labels : ndarray of int64, shape (n,)
        Cluster of each point, ``0..k-1``; ``-1`` for noise (HDBSCAN only).
    centers : ndarray of float32, shape (k, d)
        Mean of each cluster's members (the k-means centroids for k-means).
    """

    labels: np.ndarray
    centers: np.ndarray

    @property
    def n_clusters(self) -> int:
        return int(self.centers.shape[0])


def canonical_partition(X: np.ndarray, labels: np.ndarray) -> Partition:
    """Renumber clusters by decreasing size (:func:`~pixsort.cluster.labels.order_by_size`)
    and compute their centres."""
    new, order = order_by_size(labels)
    return Partition(new, cluster_means(X, new, int((order >= 0).sum())))


def cluster_means(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean of each cluster's members, shape (k, d) float32 (noise ignored)."""
    X = np.asarray(X, dtype=np.float64)
    keep = labels >= 0
    sums = np.zeros((k, X.shape[1]))
    np.add.at(sums, labels[keep], X[keep])
    counts = np.bincount(labels[keep], minlength=k).astype(np.float64)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def kmeans(X: np.ndarray, k: int, random_state: int = 0, n_init: int = 10, backend: str = "auto") -> Partition:
    """k-means with ``n_init`` seeded restarts (best inertia kept).

    ``backend``: ``sklearn``, ``faiss`` or ``auto`` (faiss for large inputs when it is
    installed, scikit-learn otherwise).  With faiss above :data:`RESTART_SAMPLE` rows, the
    restarts run on a seeded sample of that many rows and the best one's centres are
    refined by :data:`KMEANS_STEPS` steps on all rows.  Measured with the CIFAR-10
    sample's Lite0/1/2 embeddings (10,000 rows, restarts on 40%): accuracy over seeds
    0.622-0.630 / 0.618-0.621 / 0.626 against 0.630 / 0.618-0.619 / 0.579-0.625 with
    every row, in a third of the time; at 50,000 rows 4-7 s against 8-17 s, with an
    inertia as low (41,445 against 41,467).
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    use_faiss = backend == "faiss" or (backend == "auto" and len(X) >= FAISS_MIN_SAMPLES and has_faiss())
    if use_faiss:
        labels = _faiss_kmeans(X, k, random_state, n_init)
    else:
        from sklearn.cluster import KMeans

        labels = KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit_predict(X)
    return canonical_partition(X, labels)


def _faiss_kmeans(X: np.ndarray, k: int, random_state: int, n_init: int) -> np.ndarray:
    import faiss

    def run(rows: np.ndarray, restarts: int, init=None):
        km = faiss.Kmeans(
            X.shape[1],
            k,
            niter=KMEANS_STEPS,
            nredo=restarts,
            seed=int(random_state) + 1,
            verbose=False,
            max_points_per_centroid=len(rows) // k + 1,  # every given row (faiss would subsample)
        )
        km.train(rows, init_centroids=init)
        return km

    if len(X) > RESTART_SAMPLE:
        pick = np.sort(np.random.default_rng(random_state).choice(len(X), RESTART_SAMPLE, replace=False))
        km = run(X, 1, init=run(X[pick], n_init).centroids)
    else:
        km = run(X, n_init)
    return km.index.search(X, 1)[1][:, 0]


def agglomerative(X: np.ndarray, k: int, linkage: str = "ward", n_neighbors: int | None = None) -> Partition:
    """Hierarchical clustering cut at ``k`` clusters.

    Above 5,000 points a k-nearest-neighbour connectivity graph (``n_neighbors``,
    default 15) keeps memory linear instead of quadratic.
    """
    from sklearn.cluster import AgglomerativeClustering

    connectivity = None
    if n_neighbors or len(X) > 5000:
        from sklearn.neighbors import kneighbors_graph

        connectivity = kneighbors_graph(X, n_neighbors or 15, include_self=False)
    model = AgglomerativeClustering(n_clusters=k, linkage=linkage, connectivity=connectivity)
    return canonical_partition(X, model.fit_predict(X))


def hdbscan(X: np.ndarray, min_cluster_size: int | None = None, min_samples: int | None = None) -> Partition:
    """Density-based clustering; the number of clusters is found, noise is ``-1``.

    ``min_cluster_size`` defaults to 1% of the points (at least 5).
    """
    from sklearn.cluster import HDBSCAN

    size = min_cluster_size or max(5, len(X) // 100)
    labels = HDBSCAN(min_cluster_size=size, min_samples=min_samples, copy=True).fit_predict(X)
    return canonical_partition(X, labels)


def spectral(X: np.ndarray, k: int, random_state: int = 0, n_neighbors: int = 15) -> Partition:
    """Spectral clustering on a symmetric k-nearest-neighbour graph."""
    from sklearn.cluster import SpectralClustering

    model = SpectralClustering(
        n_clusters=k,
        affinity="nearest_neighbors",
        n_neighbors=n_neighbors,
        assign_labels="cluster_qr",
        random_state=random_state,
    )
    return canonical_partition(X, model.fit_predict(X))


# Methods whose cost grows faster than n (a pairwise tree merge, an eigen-solve of the
# graph, mutual-reachability distances): refused above these sizes, where k-means (faiss)
# runs in linear time and memory.
def tsne_kmeans(
    X: np.ndarray, k: int, random_state: int = 0, n_init: int = 10, layout: np.ndarray | None = None
) -> Partition:
    """Recipe (b) of the seed notebooks: k-means in a 2-D t-SNE layout of ``X``.

    ``layout`` (n, 2) is the t-SNE of ``X`` when already computed (choosing k fits
    every candidate on one layout); the centres are the members' means in ``X``, so new
    images are placed by their nearest training images, as t-SNE has no transform.
    """
    from sklearn.cluster import KMeans

    if layout is None:
        layout = tsne_layout(X, random_state)
    labels = KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit_predict(layout)
    return canonical_partition(X, labels)


def tsne_layout(X: np.ndarray, random_state: int = 0) -> np.ndarray:
    """The 2-D t-SNE layout ``tsne-kmeans`` partitions, (n, 2) float32."""
    from pixsort.features.reduce import embed_2d

    return embed_2d(X, "tsne", random_state=random_state)


SIZE_LIMITS = {
    "tsne-kmeans": (100_000, "lays every image out by t-SNE first (minutes per 10,000 images)"),
    "agglomerative": (50_000, "merges clusters pairwise over a neighbour graph (quadratic time)"),
    "spectral": (100_000, "solves for eigenvectors of the n x n neighbour graph"),
    "hdbscan": (100_000, "computes mutual-reachability distances between all near pairs"),
}


def check_size(method: str, n: int) -> None:
    """ValueError when ``method`` is refused for ``n`` points (see :data:`SIZE_LIMITS`)."""
    limit = SIZE_LIMITS.get(method)
    if limit is not None and n > limit[0]:
        raise ValueError(
            f"method {method!r} {limit[1]}: it is refused above {limit[0]:,} images (got {n:,}); "
            "use method='kmeans', which runs in linear time and memory"
        )


def partition(X: np.ndarray, method: str, k: int | None, random_state: int = 0, **params) -> Partition:
    """Dispatch to one method by name (see ``METHODS``)."""
    if method not in METHODS:
        raise ValueError(f"unknown clustering method {method!r}; choose from {', '.join(METHODS)}")
    check_size(method, len(X))
    if NEEDS_K[method] and (k is None or k < 1):
        raise ValueError(f"method {method!r} needs a number of clusters k >= 1")
    if method == "kmeans":
        return kmeans(X, k, random_state=random_state, **params)
    if method == "agglomerative":
        return agglomerative(X, k, **params)
    if method == "spectral":
        return spectral(X, k, random_state=random_state, **params)
    if method == "tsne-kmeans":
        return tsne_kmeans(X, k, random_state=random_state, **params)
    return hdbscan(X, **params)


__all__ = [
    "METHODS",
    "NEEDS_K",
    "Partition",
    "SIZE_LIMITS",
    "agglomerative",
    "canonical_partition",
    "check_size",
    "cluster_means",
    "hdbscan",
    "kmeans",
    "partition",
    "spectral",
    "tsne_kmeans",
    "tsne_layout",
]
