"""One estimator over one embedding matrix: copies, outliers and likely label errors.

>>> auditor = ImageAuditor().fit(embeddings, hashes=hashes, labels=labels)
>>> auditor.group_, auditor.outlier_score_, auditor.label_scores_

One k-nearest-neighbour search (k = ``n_neighbors``) serves the near-copies and the
outlier scores.  The near-copy threshold :data:`~pixsort.auditing.duplicates.NEAR_SIMILARITY`
was chosen by ``bench/audit.py`` (planted near-copies of chest X-rays: see the figures
in that script's output and the project notes).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from pixsort.auditing.duplicates import (
    HASH_DISTANCE,
    NEAR_SIMILARITY,
    centred_unit,
    duplicate_groups,
    hash_pairs,
    leaks_against,
    nearest_bits,
)
from pixsort.auditing.labels import N_FOLDS, label_issues
from pixsort.auditing.outliers import OUTLIER_K, OUTLIER_Z, outlier_scores, robust_z
from pixsort.base.errors import check_fitted
from pixsort.cluster.images.neighbours import METHODS, NeighbourSearch


class ImageAuditor:
    """Duplicates, outliers and label issues of a set of image embeddings.

    Parameters
    ----------
    near_threshold : float in (0, 1], default NEAR_SIMILARITY
        Cosine similarity (centred unit embeddings) from which two images are near-copies.
    hash_distance : int, default HASH_DISTANCE
        Bits of pixel hash (:func:`~pixsort.auditing.duplicates.copy_hashes`, where given
        to ``fit``) within which two images are near-copies.
    n_neighbors : int, default 10
        Neighbours searched per image (near-copy links are looked for among them).
    outlier_k : int, default 5
        Neighbours averaged for the outlier score.
    outlier_z : float, default 5.0
        Robust z-score above which an image is flagged as an outlier.
    n_folds : int, default 5
        Folds of the label-error probe.
    search : {"auto", "exact", "flat", "hnsw"}
        Engine of :class:`~pixsort.cluster.images.neighbours.NeighbourSearch`.
    random_state : int

    Attributes
    ----------
    mean_ : ndarray (d,), the centre the embeddings were moved to
    neighbour_similarities_, neighbour_indices_ : ndarray (n, k)
    group_ : ndarray (n,) int, duplicate group (exact or near) or -1
    exact_group_ : ndarray (n,) int, byte-identical group or -1
    nearest_similarity_ : ndarray (n,), similarity to the nearest other image
    nearest_index_ : ndarray (n,) int
    pixel_hashes_ : ndarray (n, 2, 4) uint64 or None
    nearest_hash_distance_ : ndarray (n,) int, bits to the nearest other hash (-1: no hashes)
    outlier_score_, outlier_z_ : ndarray (n,)
    outlier_ : ndarray (n,) bool
    label_scores_ : DataFrame (n rows) or None (see :func:`~pixsort.auditing.labels.label_issues`)
    label_info_ : dict
    timings_ : dict of seconds
    """

    def __init__(
        self,
        near_threshold: float = NEAR_SIMILARITY,
        hash_distance: int = HASH_DISTANCE,
        n_neighbors: int = 10,
        outlier_k: int = OUTLIER_K,
        outlier_z: float = OUTLIER_Z,
        n_folds: int = N_FOLDS,
        search: str = "auto",
        random_state: int = 0,
    ):
        self.near_threshold = near_threshold
        self.hash_distance = hash_distance
        self.n_neighbors = n_neighbors
        self.outlier_k = outlier_k
        self.outlier_z = outlier_z
        self.n_folds = n_folds
        self.search = search
        self.random_state = random_state

    def check_params(self) -> None:
        if not 0.0 < float(self.near_threshold) <= 1.0:
            raise ValueError(f"near_threshold must be in (0, 1], got {self.near_threshold}")
        if not 0 <= int(self.hash_distance) < 256:
            raise ValueError(f"hash_distance must be in [0, 256), got {self.hash_distance}")
        if int(self.n_neighbors) < 1 or int(self.outlier_k) < 1:
            raise ValueError("n_neighbors and outlier_k must be >= 1")
        if int(self.outlier_k) > int(self.n_neighbors):
            raise ValueError(f"outlier_k ({self.outlier_k}) cannot exceed n_neighbors ({self.n_neighbors})")
        if int(self.n_folds) < 2:
            raise ValueError(f"n_folds must be >= 2, got {self.n_folds}")
        if self.search not in METHODS:
            raise ValueError(f"search must be one of {METHODS}, got {self.search!r}")

    def fit(
        self, X: np.ndarray, hashes=None, labels: np.ndarray | None = None, pixel_hashes: np.ndarray | None = None
    ) -> ImageAuditor:
        """Audit the embeddings ``X`` (n, d).

        Parameters
        ----------
        X : ndarray (n, d), raw embeddings (centred and normalised here)
        hashes : sequence of str (n,), content hashes (exact copies); optional
        labels : ndarray (n,) int, class per image (-1: none); optional (no label scores)
        pixel_hashes : ndarray (n, 2, 4) uint64 from
            :func:`~pixsort.auditing.duplicates.copy_hashes`; optional (no pixel links)
        """
        self.check_params()
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or len(X) < 2:
            raise ValueError(f"need an (n, d) embedding matrix with n >= 2, got shape {X.shape}")
        n = len(X)
        hashes = [""] * n if hashes is None else [h or "" for h in hashes]
        if len(hashes) != n:
            raise ValueError(f"{len(hashes)} hashes for {n} embeddings")
        if pixel_hashes is not None:
            pixel_hashes = np.asarray(pixel_hashes, dtype=np.uint64)
            if pixel_hashes.shape != (n, 2, 4):
                raise ValueError(f"pixel_hashes must be shaped ({n}, 2, 4), got {pixel_hashes.shape}")
        timings = {}
        t = time.perf_counter()
        Z, self.mean_ = centred_unit(X)
        self.search_ = NeighbourSearch(Z, method=self.search)
        sims, idx = self.search_.search(Z, int(self.n_neighbors), exclude_self=True)
        self.neighbour_similarities_, self.neighbour_indices_ = sims, idx
        timings["neighbours"] = time.perf_counter() - t

        t = time.perf_counter()
        pixel_links, self.nearest_hash_distance_ = None, np.full(n, -1, np.int64)
        if pixel_hashes is not None:
            hi, hj, bits = hash_pairs(pixel_hashes)
            close = bits <= int(self.hash_distance)
            pixel_links, self.nearest_hash_distance_ = (hi[close], hj[close]), nearest_bits(n, hi, hj, bits)
        self.group_, self.exact_group_, self.nearest_similarity_ = duplicate_groups(
            hashes, sims, idx, float(self.near_threshold), pixel_links
        )
        self.pixel_hashes_ = pixel_hashes
        self.nearest_index_ = idx[:, 0].copy()
        self.outlier_score_ = outlier_scores(sims, idx, self.group_, int(self.outlier_k))
        self.outlier_z_ = robust_z(self.outlier_score_)
        self.outlier_ = self.outlier_z_ > float(self.outlier_z)
        timings["duplicates_outliers"] = time.perf_counter() - t

        self.label_scores_, self.label_info_ = None, {"scored": 0, "note": "no labels"}
        if labels is not None:
            y = np.asarray(labels, dtype=np.int64)
            if len(y) != n:
                raise ValueError(f"{len(y)} labels for {n} embeddings")
            t = time.perf_counter()
            self.label_scores_, self.label_info_ = label_issues(Z, y, int(self.n_folds), int(self.random_state))
            timings["label_issues"] = time.perf_counter() - t
        self.hashes_ = hashes
        self.timings_ = timings
        return self

    def leaks(self, other_X: np.ndarray, other_hashes=None, k: int = 5, other_pixel_hashes=None) -> pd.DataFrame:
        """Near-copies (and byte-identical copies) in the audited set of each image of
        another set ``other_X`` (m, d): columns other, row, similarity, exact.
        ``other_pixel_hashes`` (m, 2, 4): its pixel hashes, matched against the fitted ones."""
        check_fitted(self, "mean_")
        other_X = np.asarray(other_X, dtype=np.float32)
        other_Z, _ = centred_unit(other_X, self.mean_)
        other_hashes = [""] * len(other_X) if other_hashes is None else [h or "" for h in other_hashes]
        Z = self.search_.reference
        return leaks_against(
            Z, self.hashes_, other_Z, other_hashes, float(self.near_threshold), k, self.search_,
            self.pixel_hashes_, other_pixel_hashes, int(self.hash_distance),
        )  # fmt: skip

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("search_", None)  # a faiss index
        return state


__all__ = ["ImageAuditor"]
