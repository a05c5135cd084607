"""Nearest neighbours of unit embeddings by inner product (cosine), at any n.

Three engines, chosen by the size of the reference set (``method="auto"``):

``exact`` (n <= :data:`EXACT_MAX`)
    NumPy, float64 blocks: ties and near-duplicates order exactly (the results of
    earlier pixsort versions, bit for bit).
``flat`` (n <= :data:`FLAT_MAX`)
    faiss ``IndexFlatIP``: exact search in float32, several times faster.
``hnsw`` (larger)
    faiss ``IndexHNSWFlat`` (a navigable small-world graph, M = 32 links a node,
    construction depth 40, search depth 32): approximate, but its cost grows about
    linearly with n where exact search grows with n squared.  On real embedding sets
    (the CIFAR-10 sample's Lite0/1/2 embeddings, reduced; k = 20) recall@20 against
    exact search was 0.975-0.981 and the clustering's accuracy over seeds was that of
    exact search (0.629 x3 against 0.630 x3 for Lite1); at 50,000 rows build and search
    took 8.0-8.4 s against 11.7-12.1 s for ``flat`` (``bench/neighbours.py``).  An
    inverted-file index (IVF) was measured first and dropped: 0.78-0.92 recall on the
    same embeddings at no lower cost.  The graph is built by faiss's threads; repeated
    builds gave the same graph here, and the search given a graph is deterministic, but
    faiss does not promise bit-equal graphs across thread schedules (``flat`` does, at
    any n).

No engine builds an ``n x n`` matrix: queries go in blocks.
"""

from __future__ import annotations

import numpy as np

from pixsort.base.runtime import available_cores

EXACT_MAX = 20_000
# exact faiss search up to here: at 10k rows it took 0.4 s against 0.6-0.8 s for the graph, at 50k
# 11.7-12.1 s against 8.0-8.4 s (quadratic against about linear; the crossover lies between)
FLAT_MAX = 40_000
HNSW_LINKS = 32  # M: recall@20 0.975-0.981 on real embeddings; M = 16 gave 0.93 and cost accuracy on a seed
HNSW_BUILD_DEPTH = 40
HNSW_SEARCH_DEPTH = 32  # raised to the number of neighbours asked for where that is larger
METHODS = ("auto", "exact", "flat", "hnsw")


def has_faiss() -> bool:
    """Whether faiss imports here (the ``cluster`` extra)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def nearest_rows(
    queries: np.ndarray,
    reference: np.ndarray,
    k: int,
    exclude_self: bool = False,
    block: int = 1024,
    dtype=np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``reference`` to each query row by inner product
    (unit rows: cosine), exact, in float64 blocks so near-duplicates order correctly
    (``dtype=float32`` where every inner product is exact in it anyway, such as the +-1
    vectors of bit hashes: half the work, the same answer).

    Returns
    -------
    similarities : ndarray (n, k) float64, best first
    indices : ndarray (n, k) int64; ties go to the lower index
    """
    Q = np.asarray(queries, dtype=dtype)
    R = np.asarray(reference, dtype=dtype)
    k = int(min(k, len(R) - (1 if exclude_self else 0)))
    sims = np.empty((len(Q), k))
    idx = np.empty((len(Q), k), dtype=np.int64)
    for s in range(0, len(Q), block):
        S = Q[s : s + block] @ R.T
        if exclude_self:
            S[np.arange(len(S)), np.arange(s, s + len(S))] = -np.inf
        part = np.argpartition(-S, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(S, part, axis=1)
        order = np.lexsort((part, -vals), axis=1)
        idx[s : s + block] = np.take_along_axis(part, order, axis=1)
        sims[s : s + block] = np.take_along_axis(vals, order, axis=1)
    return sims, idx


class NeighbourSearch:
    """An index over ``reference`` (n, d) unit rows answering k-nearest queries.

    Parameters
    ----------
    reference : ndarray (n, d)
    method : {"auto", "exact", "flat", "hnsw"}
        ``auto`` picks by n (see the module notes); faiss engines fall back to
        ``exact`` where faiss is not installed.
    exact_dtype : numpy dtype, default float64
        Of the ``exact`` engine's products (float32 where they are exact in it: see
        :func:`nearest_rows`).
    """

    def __init__(self, reference: np.ndarray, method: str = "auto", exact_dtype=np.float64):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.reference = np.ascontiguousarray(reference, dtype=np.float32)
        n = len(self.reference)
        if method == "auto":
            method = "exact" if n <= EXACT_MAX else ("flat" if n <= FLAT_MAX else "hnsw")
        if method != "exact" and not has_faiss():
            method = "exact"
        self.method = method
        self.exact_dtype = exact_dtype
        self._index = None
        if method != "exact":
            self._index = self._build()

    def _build(self):
        import faiss

        faiss.omp_set_num_threads(available_cores())
        n, d = self.reference.shape
        if self.method == "flat":
            index = faiss.IndexFlatIP(d)
        else:
            index = faiss.IndexHNSWFlat(d, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_BUILD_DEPTH
        index.add(self.reference)
        return index

    def search(
        self, queries: np.ndarray, k: int, exclude_self: bool = False, block: int = 8192
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(similarities (m, k) float64, indices (m, k) int64)``, best first.

        ``exclude_self``: the queries are the reference rows themselves, in order;
        each row's own index is left out of its answer."""
        if self._index is None:
            return nearest_rows(queries, self.reference, k, exclude_self=exclude_self, dtype=self.exact_dtype)
        Q = np.ascontiguousarray(queries, dtype=np.float32)
        k = int(min(k, len(self.reference) - (1 if exclude_self else 0)))
        extra = 1 if exclude_self else 0
        if self.method == "hnsw":
            self._index.hnsw.efSearch = max(HNSW_SEARCH_DEPTH, k + extra)
        sims = np.empty((len(Q), k))
        idx = np.empty((len(Q), k), dtype=np.int64)
        for s in range(0, len(Q), block):
            found_sims, found = self._index.search(Q[s : s + block], k + extra)
            if exclude_self:
                rows = len(found)
                own = np.arange(s, s + rows)[:, None] == found
                # drop the row's own hit, or the last one where the search missed it
                drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
                keep = np.ones_like(found, dtype=bool)
                keep[np.arange(rows), drop] = False
                found_sims, found = found_sims[keep].reshape(rows, k), found[keep].reshape(rows, k)
            sims[s : s + block], idx[s : s + block] = found_sims, found
        return sims, idx


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact k nearest neighbours that an approximate search found."""
    hits = sum(len(np.intersect1d(a, e)) for a, e in zip(approx, exact))
    return hits / exact.size if exact.size else 1.0


__all__ = ["EXACT_MAX", "FLAT_MAX", "METHODS", "NeighbourSearch", "has_faiss", "nearest_rows", "recall_at_k"]
