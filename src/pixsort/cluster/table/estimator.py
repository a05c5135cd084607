"""Clustering the records of a table, with methods suited to binary (presence/absence) data.

``TableClusterer`` wraps four families behind one scikit-learn style estimator:

* ``kmodes``: k-modes (the ``kmodes`` package, Huang init) under simple-matching
  (Hamming) dissimilarity; binary data only.
* ``agglomerative``: a scipy hierarchy on Jaccard or Hamming distance with average or
  complete linkage; binary data only for those metrics.
* ``kmeans``: k-means on standardised features or on the leading principal components.
* ``hdbscan``: ``sklearn.cluster.HDBSCAN`` on the Jaccard/Hamming matrix (binary data)
  or on standardised features; finds its own number of clusters and may leave noise.

k is given, or chosen by the silhouette under the method's own distance among the k
whose smallest cluster holds at least ``min_cluster_share`` of the rows: on sparse
binary data the silhouette alone rewards "everyone, plus a few outliers", which is
not a grouping anyone can use.  Stability is the mean adjusted Rand index between
refits on random subsamples, each with its own seed.
"""

from __future__ import annotations

import math
import time
import warnings
from itertools import combinations
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import cut_tree, linkage
from scipy.spatial.distance import cdist, pdist, squareform
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.metrics import adjusted_rand_score, silhouette_score
from threadpoolctl import threadpool_limits

from pixsort.base.errors import check_fitted
from pixsort.base.params import Integral, Interval, Real, StrOptions, validate_params
from pixsort.cluster.labels import NOISE, order_by_size
from pixsort.cluster.select import best_k, silhouette_sample_index

METHODS = ("auto", "kmodes", "agglomerative", "kmeans", "hdbscan")
METRICS = ("auto", "jaccard", "hamming", "euclidean")
LINKAGES = ("average", "complete")
SCALINGS = ("standard", "pca")

# What "auto" picks for 0/1 tables.  Measured on the 667 heroes x 167 powers: k-means
# on 10 principal components scores a higher silhouette than k-modes under k-modes'
# own Hamming distance at every k from 2 to 6 (k=4: 0.168 vs 0.099), is more stable
# from k=3 on (k=4: ARI 0.75 vs 0.67) and runs ~100x faster; the modes of sparse
# features are mostly "absent", whereas a k-means centre is the prevalence of each
# feature, the summary one wants.  Agglomerative Jaccard/Hamming peels off single
# outliers at every k, HDBSCAN leaves ~30% as noise.
DEFAULT_BINARY_METHOD = "kmeans"

# below this many rows, OpenMP/BLAS threads cost more than they save: k-means on a
# few hundred rows took 30 s with default threads on a busy 2-core machine, 0.15 s
# with one
_SINGLE_THREAD_BELOW = 50_000


class _Fit(NamedTuple):
    labels: np.ndarray  # 0 = largest cluster, -1 = noise
    model: object  # KModes / KMeans / HDBSCAN, or None for the scipy hierarchy
    order: np.ndarray  # order[label from the model] = label in ``labels``


class TableClusterer(ClusterMixin, BaseEstimator):
    """Cluster table rows; scikit-learn style (``fit``, ``fit_predict``, ``predict``).

    Parameters
    ----------
    method : {"auto", "kmodes", "agglomerative", "kmeans", "hdbscan"}
        "auto": ``DEFAULT_BINARY_METHOD`` for 0/1 data, k-means otherwise (both
        k-means on principal components today; see ``DEFAULT_BINARY_METHOD``).
    n_clusters : int or None
        Number of clusters; None chooses it in ``k_range`` by silhouette.  Not
        allowed with HDBSCAN, which finds its own.
    k_range : (int, int)
        Smallest and largest k tried (inclusive) when ``n_clusters`` is None.
    metric : {"auto", "jaccard", "hamming", "euclidean"}
        Distance for agglomerative and HDBSCAN ("auto": Jaccard on 0/1 data,
        Euclidean on standardised features otherwise).  k-modes always uses Hamming,
        k-means Euclidean; the silhouette is computed under this distance.
    linkage : {"average", "complete"}
        Agglomerative linkage.
    scaling : {"standard", "pca"}
        Feature space of k-means: z-scored features, or principal components.  On
        0/1 data the components are of the unscaled features, so that a feature
        held by one row does not weigh like a common one; on other data of the
        z-scored ones, so that units do not decide.
    n_components : int or float
        Components kept by ``scaling="pca"`` (a float in (0, 1) = variance kept).
    min_cluster_size : int or None
        HDBSCAN's minimum cluster size; None = max(5, ``min_cluster_share`` * rows).
    min_cluster_share : float
        When choosing k, only k whose smallest cluster has at least this share of
        the rows (and at least 2 rows) are eligible.
    n_init : int
        Restarts of k-modes / k-means.
    stability_runs : int
        Refits for the stability estimate (0 = skip; 1 gives no pair, so NaN).
    stability_fraction : float
        Share of rows each stability refit sees (1.0 = only the seed changes).
    random_state : int
        Seed of everything random; the same seed gives the same result.
    max_silhouette_rows : int
        The silhouette is computed on a fixed random sample of this many rows when
        the table is larger.

    Attributes
    ----------
    labels_ : ndarray of shape (n_rows,)
        Cluster per row, 0 = largest cluster; -1 = HDBSCAN noise or a row with no
        true feature (see ``empty_rows_``).
    n_clusters_ : int
    silhouette_ : float
        Mean silhouette of the final labels under ``metric_`` (rows labelled -1 left out).
    scores_ : dict[int, float]
        Silhouette per k tried (for HDBSCAN: the one k found).
    k_search_ : pd.DataFrame
        Per k: silhouette, smallest cluster size, eligible.
    stability_ : float
        Mean pairwise adjusted Rand index between the stability refits (on the rows
        both refits saw).
    stability_scores_ : ndarray of shape (n_pairs,)
    method_, metric_ : str
        Resolved method and distance.
    embedding_ : ndarray of shape (n_rows, n_dims)
        The rows in the space where ``metric_`` applies (0/1 features, z-scores or
        principal components).
    empty_rows_ : ndarray of bool, shape (n_rows,)
        Rows of a 0/1 table with no true feature: they say nothing about which
        group they resemble (Jaccard is undefined for them; under Hamming they would
        join the sparsest cluster), so they are set aside with label -1.
    linkage_matrix_ : ndarray of shape (n_fitted - 1, 4) or None
        The scipy hierarchy (agglomerative only), over the non-empty rows.
    model_ : object
        The fitted underlying estimator (KModes, KMeans, HDBSCAN) or None.
    notes_ : list[str]
        Anything the caller should know (e.g. no k met ``min_cluster_share``).
    """

    _parameter_constraints: dict = {
        "method": [StrOptions(set(METHODS))],
        "n_clusters": [Interval(Integral, 2, None, closed="left"), None],
        "k_range": [tuple, list],
        "metric": [StrOptions(set(METRICS))],
        "linkage": [StrOptions(set(LINKAGES))],
        "scaling": [StrOptions(set(SCALINGS))],
        "n_components": [Interval(Integral, 1, None, closed="left"), Interval(Real, 0, 1, closed="neither")],
        "min_cluster_size": [Interval(Integral, 2, None, closed="left"), None],
        "min_cluster_share": [Interval(Real, 0, 0.5, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "stability_runs": [Interval(Integral, 0, None, closed="left")],
        "stability_fraction": [Interval(Real, 0, 1, closed="right")],
        "random_state": [Interval(Integral, 0, None, closed="left")],
        "max_silhouette_rows": [Interval(Integral, 10, None, closed="left")],
    }

    def __init__(
        self,
        method: str = "auto",
        n_clusters: int | None = None,
        *,
        k_range: tuple[int, int] = (2, 10),
        metric: str = "auto",
        linkage: str = "average",
        scaling: str = "pca",
        n_components: int | float = 10,
        min_cluster_size: int | None = None,
        min_cluster_share: float = 0.02,
        n_init: int = 5,
        stability_runs: int = 5,
        stability_fraction: float = 0.8,
        random_state: int = 0,
        max_silhouette_rows: int = 5000,
    ) -> None:
        self.method = method
        self.n_clusters = n_clusters
        self.k_range = k_range
        self.metric = metric
        self.linkage = linkage
        self.scaling = scaling
        self.n_components = n_components
        self.min_cluster_size = min_cluster_size
        self.min_cluster_share = min_cluster_share
        self.n_init = n_init
        self.stability_runs = stability_runs
        self.stability_fraction = stability_fraction
        self.random_state = random_state
        self.max_silhouette_rows = max_silhouette_rows

    # ------------------------------------------------------------------ fitting

    def fit(self, X, y=None) -> TableClusterer:
        """Cluster the rows of ``X`` (array or DataFrame of shape (n_rows, n_features))."""
        validate_params(self)
        self._check_combinations()
        data = self._as_array(X, reset=True)
        with threadpool_limits(limits=1 if len(data) < _SINGLE_THREAD_BELOW else None):
            return self._fit(data)

    def _fit(self, data: np.ndarray) -> TableClusterer:
        self._resolve(data)
        self.notes_: list[str] = []
        self.embedding_ = self._fit_space(data)
        self.empty_rows_ = self._empty(data)
        fit_rows = np.flatnonzero(~self.empty_rows_)
        space = self.embedding_[fit_rows]
        if len(fit_rows) < 3:
            raise ValueError(f"only {len(fit_rows)} rows have a true feature; need at least 3 to cluster")
        dist = self._distance_matrix(space) if self._needs_matrix(len(space)) else None
        self._sil_rows = silhouette_sample_index(len(space), self.max_silhouette_rows, self.random_state)
        self.linkage_matrix_ = self._hierarchy(dist) if self.method_ == "agglomerative" else None

        best = self._search_k(space, dist)
        fit_labels, self.model_, self._label_order = best
        self._train_rows, self._train_labels = fit_rows, fit_labels
        self.labels_ = np.full(len(data), NOISE, dtype=int)
        self.labels_[fit_rows] = fit_labels
        self.n_clusters_ = int(len(np.unique(fit_labels[fit_labels != NOISE])))
        self.silhouette_ = self._silhouette(space, dist, fit_labels)
        self.stability_scores_ = self._stability(space, dist)
        self.stability_ = float(self.stability_scores_.mean()) if len(self.stability_scores_) else float("nan")
        return self

    def predict(self, X) -> np.ndarray:
        """Cluster of new rows, shape (n_new,); -1 for rows with no true feature.

        k-modes and k-means use their centres; agglomerative places a row in the
        cluster with the smallest mean distance to its members (the average-linkage
        rule, applied to the finished clusters, so a few training rows of a greedy
        tree may land elsewhere).  HDBSCAN has no such rule.
        """
        check_fitted(self, "labels_")
        if self.method_ == "hdbscan":
            raise NotImplementedError("HDBSCAN has no rule for placing new rows; refit on the grown table instead")
        data = self._as_array(X, reset=False)
        space = self._embed_array(data)
        out = np.full(len(data), NOISE, dtype=int)
        rows = np.flatnonzero(~self._empty(data))
        if not len(rows):
            return out
        if self.method_ == "agglomerative":
            dist = self.distances(space[rows], self.embedding_[self._train_rows])
            # mean distance for complete linkage too: the max distance is ruled by a
            # cluster's farthest member (on planted data it put 6% of the training
            # rows elsewhere, the mean 2%)
            per_cluster = np.column_stack(
                [dist[:, self._train_labels == c].mean(axis=1) for c in range(self.n_clusters_)]
            )
            out[rows] = per_cluster.argmin(axis=1)
        else:
            raw = self.model_.predict(space[rows].astype(np.uint8) if self.method_ == "kmodes" else space[rows])
            out[rows] = self._label_order[np.asarray(raw)]
        return out

    def embed(self, X) -> np.ndarray:
        """Rows in the space where ``metric_`` applies, shape (n_rows, n_dims)."""
        check_fitted(self, "embedding_")
        return self._embed_array(self._as_array(X, reset=False))

    def _embed_array(self, data: np.ndarray) -> np.ndarray:
        if self._transformer is None:
            return data
        return self._transformer.transform(data)

    def distances(self, A: np.ndarray, B: np.ndarray | None = None) -> np.ndarray:
        """Distances under ``metric_`` between embedded rows, shape (len(A), len(B or A))."""
        A = np.asarray(A)
        B = A if B is None else np.asarray(B)
        if self.metric_ in ("jaccard", "hamming"):
            return cdist(A.astype(bool), B.astype(bool), metric=self.metric_)
        return cdist(A, B, metric=self.metric_)

    # ----------------------------------------------------------- configuration

    def _check_combinations(self) -> None:
        """What the constraints table cannot say: choices that exclude each other."""
        if self.n_clusters is not None and self.method == "hdbscan":
            raise ValueError("HDBSCAN finds its own number of clusters; set min_cluster_size instead of n_clusters")
        if len(self.k_range) != 2 or not (2 <= self.k_range[0] <= self.k_range[1]):
            raise ValueError(f"k_range must be (low, high) with 2 <= low <= high, got {self.k_range!r}")
        if self.method == "kmodes" and self.metric not in ("auto", "hamming"):
            raise ValueError("k-modes works under Hamming (simple matching) dissimilarity only")
        if self.method == "kmeans" and self.metric not in ("auto", "euclidean"):
            raise ValueError("k-means works under Euclidean distance only")

    def _as_array(self, X, reset: bool) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            names = np.asarray(X.columns, dtype=object)
            if reset:
                self.feature_names_in_ = names
            elif hasattr(self, "feature_names_in_") and list(names) != list(self.feature_names_in_):
                raise ValueError("columns differ from those seen in fit")
            X = X.to_numpy()
        data = np.asarray(X, dtype=float)
        if data.ndim != 2:
            raise ValueError(f"X must be 2-D (n_rows, n_features), got shape {data.shape}")
        if np.isnan(data).any():
            raise ValueError("X has missing values; encode the table first (pixsort.data.tables)")
        if reset:
            self.n_features_in_ = data.shape[1]
        elif data.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {data.shape[1]} features, the clusterer was fitted on {self.n_features_in_}")
        return data

    def _resolve(self, data: np.ndarray) -> None:
        self.binary_ = bool(np.isin(data, (0.0, 1.0)).all())
        method = self.method
        if method == "auto":
            method = DEFAULT_BINARY_METHOD if self.binary_ else "kmeans"
        if method == "kmodes":
            metric = "hamming"
        elif method == "kmeans":
            metric = "euclidean"
        else:
            metric = self.metric if self.metric != "auto" else ("jaccard" if self.binary_ else "euclidean")
        if not self.binary_ and (method == "kmodes" or metric in ("jaccard", "hamming")):
            raise ValueError(
                f"{method} with {metric} distance needs 0/1 features; this table has numeric ones "
                "(use method='kmeans' or 'hdbscan' with metric='euclidean')"
            )
        self.method_, self.metric_ = method, metric

    def _fit_space(self, data: np.ndarray) -> np.ndarray:
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler

        self._transformer = None
        if self.metric_ in ("jaccard", "hamming"):
            return data
        if self.method_ == "kmeans" and self.scaling == "pca":
            from sklearn.pipeline import make_pipeline

            n = self.n_components
            if isinstance(n, int):
                n = min(n, *data.shape)
            pca = PCA(n_components=n, random_state=self.random_state)
            self._transformer = pca if self.binary_ else make_pipeline(StandardScaler(), pca)
        else:
            self._transformer = StandardScaler()
        return self._transformer.fit_transform(data)

    def _empty(self, data: np.ndarray) -> np.ndarray:
        if not self.binary_:
            return np.zeros(len(data), dtype=bool)
        return data.sum(axis=1) == 0

    # --------------------------------------------------------------- clustering

    def _needs_matrix(self, n_rows: int) -> bool:
        """Whether to hold the full (n, n) distance matrix: the hierarchy and HDBSCAN
        on Jaccard/Hamming are built from it; otherwise it only serves the silhouette."""
        if self.method_ == "agglomerative" or (self.method_ == "hdbscan" and self.metric_ != "euclidean"):
            return True
        return n_rows <= self.max_silhouette_rows

    def _distance_matrix(self, space: np.ndarray) -> np.ndarray:
        if self.metric_ in ("jaccard", "hamming"):
            return squareform(pdist(space.astype(bool), metric=self.metric_))
        return squareform(pdist(space, metric=self.metric_))

    def _hierarchy(self, dist: np.ndarray) -> np.ndarray:
        return linkage(squareform(dist, checks=False), method=self.linkage)

    def _search_k(self, space: np.ndarray, dist: np.ndarray | None) -> _Fit:
        """Fit for each candidate k; keep the best eligible silhouette."""
        if self.method_ == "hdbscan":
            fit = self._fit_once(space, dist, None, self.random_state)
            k = len(np.unique(fit.labels[fit.labels != NOISE]))
            if k == 0:
                self.notes_.append("HDBSCAN found no cluster, every row is noise; try a smaller min_cluster_size")
            self.scores_ = {k: self._silhouette(space, dist, fit.labels)}
            self.k_search_ = self._k_row_frame([(k, self.scores_[k], fit.labels)])
            return fit
        n = len(space)
        if self.n_clusters is not None:
            candidates = [min(self.n_clusters, n - 1)]
            if candidates[0] < self.n_clusters:
                self.notes_.append(f"{self.n_clusters} clusters asked of {n} rows; {candidates[0]} made")
        else:
            candidates = list(range(self.k_range[0], min(self.k_range[1], n - 1) + 1))
        fits = {}
        rows = []
        for k in candidates:
            fits[k] = self._fit_once(space, dist, k, self.random_state, self.linkage_matrix_)
            rows.append((k, self._silhouette(space, dist, fits[k].labels), fits[k].labels))
        self.k_search_ = self._k_row_frame(rows)
        self.scores_ = dict(zip(self.k_search_["k"], self.k_search_["silhouette"]))
        eligible = self.k_search_[self.k_search_["eligible"]]
        if eligible.empty:
            eligible = self.k_search_
            if len(candidates) > 1:
                self.notes_.append(
                    f"no k in {self.k_range} gives clusters of at least {self.min_cluster_share:.0%} of the rows; "
                    "k chosen by silhouette alone"
                )
        chosen = best_k(eligible["k"].tolist(), eligible["silhouette"].tolist())
        return fits[int(eligible["k"].iloc[0]) if chosen is None else chosen]

    def _k_row_frame(self, rows: list[tuple[int, float, np.ndarray]]) -> pd.DataFrame:
        n = len(rows[0][2])
        floor = max(2, math.ceil(self.min_cluster_share * n))
        records = []
        for k, score, labels in rows:
            sizes = np.bincount(labels[labels != NOISE]) if (labels != NOISE).any() else np.zeros(1, int)
            records.append(
                {"k": k, "silhouette": score, "smallest": int(sizes.min()), "eligible": bool(sizes.min() >= floor)}
            )
        return pd.DataFrame(records)

    def _fit_once(self, space, dist, k, seed, hierarchy=None) -> _Fit:
        """One fit for one k (None for HDBSCAN) and seed."""
        model = None
        if self.method_ == "kmodes":
            from kmodes.kmodes import KModes

            model = KModes(n_clusters=k, init="Huang", n_init=self.n_init, random_state=seed, n_jobs=1)
            with warnings.catch_warnings():  # kmodes warns when fewer distinct rows than k
                warnings.simplefilter("ignore")
                raw = model.fit_predict(space.astype(np.uint8))
        elif self.method_ == "kmeans":
            from sklearn.cluster import KMeans

            model = KMeans(n_clusters=k, n_init=self.n_init, random_state=seed)
            raw = model.fit_predict(space)
        elif self.method_ == "agglomerative":
            tree = hierarchy if hierarchy is not None else self._hierarchy(dist)
            # cut_tree cuts by number of merges, so it returns exactly k clusters even
            # when many merges tie at the same height (common: Jaccard distance 1)
            raw = cut_tree(tree, n_clusters=k).ravel()
        else:
            model, raw = self._fit_hdbscan(space, dist)
        labels, order = order_by_size(np.asarray(raw))
        return _Fit(labels, model, order)

    def _fit_hdbscan(self, space, dist):
        from sklearn.cluster import HDBSCAN

        size = self.min_cluster_size or max(5, math.ceil(self.min_cluster_share * len(space)))
        extra = {"copy": True} if "copy" in HDBSCAN().get_params() else {}
        if dist is not None:
            model = HDBSCAN(min_cluster_size=size, metric="precomputed", **extra)
            return model, model.fit_predict(dist)
        model = HDBSCAN(min_cluster_size=size, metric=self.metric_, **extra)
        return model, model.fit_predict(space)

    # ------------------------------------------------------------ diagnostics

    def _silhouette(self, space, dist, labels) -> float:
        rows = self._sil_rows[labels[self._sil_rows] != NOISE]
        if len(np.unique(labels[rows])) < 2 or len(rows) <= len(np.unique(labels[rows])):
            return float("nan")
        if dist is not None:
            sub = dist[np.ix_(rows, rows)]
        else:
            sub = self._distance_matrix(space[rows])
        return float(silhouette_score(sub, labels[rows], metric="precomputed"))

    def _stability(self, space, dist) -> np.ndarray:
        """Pairwise ARI between refits on random subsamples, one seed per refit."""
        if self.stability_runs < 2:
            return np.zeros(0)
        n = len(space)
        size = max(3, round(self.stability_fraction * n))
        runs = []
        for r in range(self.stability_runs):
            seed = self.random_state + 1 + r
            rows = np.arange(n)
            if size < n:
                rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
            sub_dist = dist[np.ix_(rows, rows)] if dist is not None else None
            k = None if self.method_ == "hdbscan" else min(self.n_clusters_, len(rows) - 1)
            runs.append(pd.Series(self._fit_once(space[rows], sub_dist, k, seed).labels, index=rows))
        scores = []
        for a, b in combinations(runs, 2):
            common = a.index.intersection(b.index)
            scores.append(adjusted_rand_score(a[common], b[common]))
        return np.asarray(scores)


def compare_methods(
    X,
    candidates: list[dict] | None = None,
    **common,
) -> pd.DataFrame:
    """Fit several configurations and tabulate k, silhouette, stability, sizes and time.

    ``candidates``: dicts of ``TableClusterer`` parameters (default:
    ``default_candidates(binary)``); ``common`` parameters apply to all.  On 0/1 data
    a ``silhouette_jaccard`` column scores every method's labels under one common
    distance, since silhouettes under different distances are not comparable.
    Returns one row per candidate, in the given order.
    """
    data = X.to_numpy(dtype=float) if isinstance(X, pd.DataFrame) else np.asarray(X, dtype=float)
    binary = bool(np.isin(data, (0.0, 1.0)).all())
    candidates = candidates if candidates is not None else default_candidates(binary)
    jaccard = None
    if binary:
        jaccard = squareform(pdist(data.astype(bool), metric="jaccard"))
    rows = []
    for params in candidates:
        start = time.perf_counter()
        model = TableClusterer(**{**common, **params}).fit(data)
        seconds = time.perf_counter() - start
        labels = model.labels_
        clustered = labels != NOISE
        sizes = np.bincount(labels[clustered]) if clustered.any() else np.zeros(0, int)
        row = {
            "method": describe_method(model),
            "k": model.n_clusters_,
            "silhouette": model.silhouette_,
            "metric": model.metric_,
            "stability": model.stability_,
            "sizes": " ".join(map(str, sizes)),
            "largest_share": sizes.max() / len(labels) if len(sizes) else float("nan"),
            "unclustered": int((~clustered).sum()),
            "seconds": seconds,
        }
        if jaccard is not None:
            keep = np.flatnonzero(clustered)
            ok = len(np.unique(labels[keep])) >= 2
            row["silhouette_jaccard"] = (
                float(silhouette_score(jaccard[np.ix_(keep, keep)], labels[keep], metric="precomputed"))
                if ok
                else float("nan")
            )
        rows.append(row)
    return pd.DataFrame(rows)


def default_candidates(binary: bool) -> list[dict]:
    """The configurations ``compare_methods`` tries by default."""
    if not binary:
        return [
            {"method": "kmeans", "scaling": "standard"},
            {"method": "kmeans", "scaling": "pca"},
            {"method": "agglomerative", "metric": "euclidean", "linkage": "average"},
            {"method": "hdbscan", "metric": "euclidean"},
        ]
    return [
        {"method": "kmodes"},
        {"method": "agglomerative", "metric": "jaccard", "linkage": "average"},
        {"method": "agglomerative", "metric": "jaccard", "linkage": "complete"},
        {"method": "agglomerative", "metric": "hamming", "linkage": "average"},
        {"method": "agglomerative", "metric": "hamming", "linkage": "complete"},
        {"method": "kmeans", "scaling": "standard"},
        {"method": "kmeans", "scaling": "pca"},
        {"method": "hdbscan", "metric": "jaccard"},
    ]


def describe_method(model: TableClusterer) -> str:
    """A short label such as ``agglomerative (jaccard, average)`` for a fitted clusterer."""
    if model.method_ == "agglomerative":
        return f"agglomerative ({model.metric_}, {model.linkage})"
    if model.method_ == "kmeans":
        detail = f"PCA {model.n_components}" if model.scaling == "pca" else "standardised"
        return f"k-means ({detail})"
    if model.method_ == "hdbscan":
        return f"HDBSCAN ({model.metric_})"
    return "k-modes (hamming)"
