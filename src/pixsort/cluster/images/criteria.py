"""Label-free criteria for the number of clusters, scored per candidate k.

Every criterion is "higher is better" and is computed on one seeded sample of the
points (the silhouette sample of :func:`~pixsort.cluster.images.select.select_k`), so
its cost does not grow with n past the sample and no ``n x n`` matrix is built:

``silhouette``
    Mean silhouette of the candidate partition in the clustering space (computed by
    :func:`~pixsort.cluster.images.select.score_partition`, not here).
``umap_silhouette``
    Mean silhouette of the candidate partition's labels in a 2-D UMAP layout of the
    sample (one layout for every k).
``stability``
    Mean adjusted Rand index between two partitions of the same k fitted on two
    random subsamples of the sample (each :data:`STABILITY_FRACTION` of it), compared
    on the points both hold; :data:`STABILITY_PAIRS` pairs per k, seeded by
    ``(random_state, k)``.
``eigengap``
    The gap ``lambda_{k+1} - lambda_k`` between consecutive smallest eigenvalues of the
    normalised Laplacian of the sample's symmetric k-nearest-neighbour graph (sparse,
    :data:`GRAPH_NEIGHBORS` neighbours; ``eigsh`` with a seeded start vector).  It
    depends on k only, not on the partition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.metrics import adjusted_rand_score, silhouette_score

from pixsort.cluster.images.methods import Partition, partition

CRITERIA = ("silhouette", "umap_silhouette", "stability", "eigengap")
# Measured by bench/k_choice.py on six train sets with known classes (CIFAR-10 sample at
# 10,000 and 2,000, two uneven draws of 4 and 7 of its classes, the digits of the demo,
# PneumoniaMNIST): stability (select.choose_k: the best silhouette among the stable k),
# the largest stable k and the UMAP silhouette came within 1 of the true k on 3 of 6 sets,
# the silhouette on 2, the eigengap on 1; none found the 10 CIFAR-10 classes.  The
# silhouette stays the default: the one-set difference came from a rule settled on these
# very sets, stability costs 23-27 s against 4.5 s at 10,000 images (2 cores; a warm
# re-cluster of 10,000 takes 14 s), and on the CIFAR sample it chose k = 2 (ACC 0.195)
# where the silhouette chose 8 (ACC 0.517).
DEFAULT_K_CRITERION = "silhouette"
STABILITY_PAIRS = 5
STABILITY_FRACTION = 0.8
GRAPH_NEIGHBORS = 15
UMAP_NEIGHBORS = 15
DENSE_MAX = 256  # graph components up to this many points get a dense eigensolver

# fit(points, k, seed) -> labels: how the stability criterion partitions a subsample
SubsampleFit = Callable[[np.ndarray, int, int], np.ndarray]


def kmeans_labels(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means with three restarts, as the candidates of ``select_k`` are fitted."""
    return partition(X, "kmeans", k, seed, n_init=3).labels


class UmapSilhouette:
    """Silhouette of each candidate's labels in one seeded 2-D UMAP layout of the sample."""

    name = "umap_silhouette"

    def __init__(self, X: np.ndarray, sample_index: np.ndarray, random_state: int = 0):
        import umap

        Xs = np.asarray(X, dtype=np.float32)[sample_index]
        self.sample_index = sample_index
        model = umap.UMAP(
            n_components=2,
            n_neighbors=min(UMAP_NEIGHBORS, len(Xs) - 1),
            min_dist=0.0,
            random_state=random_state,
            n_jobs=1,  # a seed makes umap-learn single-threaded anyway
        )
        self.layout = model.fit_transform(Xs).astype(np.float32)

    def __call__(self, k: int, part: Partition) -> float:
        labels = part.labels[self.sample_index]
        kept = labels >= 0
        if len(np.unique(labels[kept])) < 2:
            return float("nan")
        return float(silhouette_score(self.layout[kept], labels[kept]))


class Stability:
    """Mean ARI of pairs of subsample partitions on their overlap, per k."""

    name = "stability"

    def __init__(
        self,
        X: np.ndarray,
        sample_index: np.ndarray,
        random_state: int = 0,
        fit: SubsampleFit = kmeans_labels,
        n_pairs: int = STABILITY_PAIRS,
        fraction: float = STABILITY_FRACTION,
    ):
        self.X = np.asarray(X, dtype=np.float32)
        self.sample_index = np.asarray(sample_index)
        self.random_state = int(random_state)
        self.fit = fit
        self.n_pairs = int(n_pairs)
        self.fraction = float(fraction)
        self._cache: dict[int, float] = {}

    def __call__(self, k: int, part: Partition | None = None) -> float:
        k = int(k)
        if k not in self._cache:
            self._cache[k] = self._score(k)
        return self._cache[k]

    def _score(self, k: int) -> float:
        base = self.sample_index
        m = int(round(self.fraction * len(base)))
        if m <= k:
            return float("nan")
        rng = np.random.default_rng([self.random_state, k])
        aris = []
        for b in range(self.n_pairs):
            a = np.sort(rng.choice(base, m, replace=False))
            c = np.sort(rng.choice(base, m, replace=False))
            both = np.intersect1d(a, c, assume_unique=True)
            seed = self.random_state + b
            la = self.fit(self.X[a], k, seed)[np.searchsorted(a, both)]
            lc = self.fit(self.X[c], k, seed)[np.searchsorted(c, both)]
            aris.append(adjusted_rand_score(la, lc))
        return float(np.mean(aris))


class Eigengap:
    """Gaps between the smallest eigenvalues of the sample's normalised k-NN Laplacian."""

    name = "eigengap"

    def __init__(self, X: np.ndarray, sample_index: np.ndarray, k_max: int, random_state: int = 0):
        self.points = np.asarray(X, dtype=np.float32)[sample_index]
        self.random_state = int(random_state)
        self.eigenvalues = laplacian_eigenvalues(self.points, k_max + 1, random_state=self.random_state)

    def __call__(self, k: int, part: Partition | None = None) -> float:
        k = int(k)
        if k >= len(self.eigenvalues) and k + 1 <= len(self.points) - 2:  # a widened range: more values
            self.eigenvalues = laplacian_eigenvalues(self.points, k + 1, random_state=self.random_state)
        if k >= len(self.eigenvalues):
            return float("nan")
        return float(self.eigenvalues[k] - self.eigenvalues[k - 1])


def knn_graph(X: np.ndarray, n_neighbors: int = GRAPH_NEIGHBORS):
    """Symmetric 0/1 adjacency (scipy CSR, n x n sparse) of the Euclidean k-NN graph of
    ``X`` (for the unit rows of the clustering space, the cosine graph)."""
    from sklearn.neighbors import kneighbors_graph

    m = int(min(n_neighbors, len(X) - 1))
    A = kneighbors_graph(np.asarray(X, dtype=np.float32), m, mode="connectivity", include_self=False)
    return ((A + A.T) > 0).astype(np.float64).tocsr()


def laplacian_eigenvalues(
    X: np.ndarray, n_values: int, n_neighbors: int = GRAPH_NEIGHBORS, random_state: int = 0
) -> np.ndarray:
    """The ``n_values`` smallest eigenvalues (ascending) of ``I - D^-1/2 W D^-1/2``, W the
    k-NN graph of ``X``.

    Each connected component is solved on its own (the spectrum is the union of
    theirs): Lanczos (``eigsh``) from one start vector can miss copies of a repeated
    eigenvalue, and a graph of c components has c zero eigenvalues.  Components of up
    to :data:`DENSE_MAX` points are solved densely, larger ones by ``eigsh`` on the
    normalised adjacency (its largest eigenvalues) with a seeded start vector.
    """
    from scipy.sparse.csgraph import connected_components

    W = knn_graph(X, n_neighbors)
    n_values = int(min(n_values, W.shape[0]))
    _, component = connected_components(W, directed=False)
    rng = np.random.default_rng(random_state)
    values = []
    for c in range(int(component.max()) + 1):
        members = np.flatnonzero(component == c)
        values.append(_component_eigenvalues(W[members][:, members], n_values, rng))
    return np.sort(np.concatenate(values))[:n_values]


def _component_eigenvalues(W, n_values: int, rng: np.random.Generator) -> np.ndarray:
    from scipy import sparse
    from scipy.sparse.linalg import eigsh

    m = W.shape[0]
    d = np.asarray(W.sum(axis=1)).ravel()
    inv = sparse.diags(1.0 / np.sqrt(np.maximum(d, 1e-12)))
    S = inv @ W @ inv
    if m <= max(DENSE_MAX, n_values + 2):
        top = np.linalg.eigvalsh(S.toarray())[::-1][:n_values]
    else:
        v0 = rng.uniform(0.5, 1.5, size=m)
        top = eigsh(S, k=n_values, which="LA", v0=v0, tol=1e-8, return_eigenvectors=False)
    return np.clip(1.0 - top, 0.0, 2.0)


def make_criterion(
    name: str,
    X: np.ndarray,
    sample_index: np.ndarray,
    k_values: Sequence[int],
    random_state: int = 0,
    fit: SubsampleFit = kmeans_labels,
):
    """A callable ``(k, partition) -> score`` for criterion ``name`` (None: silhouette,
    which :func:`~pixsort.cluster.images.select.score_partition` computes)."""
    if name not in CRITERIA:
        raise ValueError(f"unknown k criterion {name!r}; choose from {', '.join(CRITERIA)}")
    if name == "silhouette":
        return None
    if name == "umap_silhouette":
        return UmapSilhouette(X, sample_index, random_state)
    if name == "stability":
        return Stability(X, sample_index, random_state, fit=fit)
    return Eigengap(X, sample_index, max(k_values), random_state)


__all__ = [
    "CRITERIA",
    "DEFAULT_K_CRITERION",
    "Eigengap",
    "Stability",
    "UmapSilhouette",
    "kmeans_labels",
    "knn_graph",
    "laplacian_eigenvalues",
    "make_criterion",
]
