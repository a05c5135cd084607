"""Choose the number of clusters of images by silhouette, with Davies-Bouldin and
Calinski-Harabasz reported beside it.

The silhouette is O(n^2) in time and memory, so above ``sample_size`` points it is
computed on one seeded random sample, the same for every candidate k (so the
candidates are compared on equal terms).  Davies-Bouldin and Calinski-Harabasz are
linear and use every point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_samples

from pixsort.cluster.images.methods import Partition
from pixsort.cluster.select import best_k, silhouette_sample_index

DEFAULT_SAMPLE_SIZE = 4000
# The silhouette curve is "flat" when every candidate lies within this of the best: on
# the CIFAR-10 test set all of k = 2..10 scored 0.152-0.165 and the chosen 6 was no
# better than its neighbours; candidates within NEAR_BEST of the best are named as
# equally good choices.
FLAT_SPREAD = 0.02
NEAR_BEST = 0.005


@dataclass
class KCandidate:
    """Scores of one candidate partition.

    ``silhouette_values`` holds the per-point silhouette of the sampled points
    (``KSelection.sample_index``), for the silhouette plot.
    """

    k: int
    partition: Partition
    silhouette: float
    davies_bouldin: float
    calinski_harabasz: float
    silhouette_values: np.ndarray = field(repr=False)


@dataclass
class KSelection:
    """All candidates, in increasing k, and the one chosen (highest silhouette)."""

    candidates: list[KCandidate]
    best_k: int
    sample_index: np.ndarray = field(repr=False)
    asked_range: tuple[int, int] | None = None  # the range before it was widened (None: not widened)

    @property
    def best(self) -> KCandidate:
        return self[self.best_k]

    @property
    def at_upper_edge(self) -> bool:
        """The chosen k is the largest tried: a larger one might score higher."""
        return self.best_k == max(c.k for c in self.candidates) and len(self.candidates) > 1

    def near_best(self) -> list[int]:
        """The candidates (best first) whose silhouette is within :data:`NEAR_BEST` of the best."""
        top = self.best.silhouette
        return [c.k for c in self.ranked() if top - c.silhouette <= NEAR_BEST]

    @property
    def flat(self) -> bool:
        """No k is clearly better: every finite silhouette within :data:`FLAT_SPREAD` of the best."""
        scores = [c.silhouette for c in self.candidates if np.isfinite(c.silhouette)]
        return len(scores) > 2 and max(scores) - min(scores) < FLAT_SPREAD

    def notes(self) -> list[str]:
        """What a user should know about the choice: a widened range, a choice at the
        edge of the range, a flat curve, other k about as good."""
        ks = [c.k for c in self.candidates]
        out = []
        if self.asked_range is not None:
            out.append(
                f"the best k sat at the top of {self.asked_range[0]}..{self.asked_range[1]}, "
                f"so the range was widened to {min(ks)}..{max(ks)}"
            )
        if self.at_upper_edge:
            out.append(
                f"k = {self.best_k} is the largest k tried and the silhouette was still rising: "
                "more clusters may fit better (raise --k-max)"
            )
        near = self.near_best()
        if self.flat:
            scores = [c.silhouette for c in self.candidates if np.isfinite(c.silhouette)]
            best3 = ", ".join(f"k = {c.k} ({c.silhouette:.3f})" for c in self.ranked(3))
            out.append(
                f"the silhouette curve is flat ({min(scores):.3f}..{max(scores):.3f} over k = {min(ks)}..{max(ks)}): "
                f"no k is clearly better; the best three: {best3}"
            )
        elif len(near) > 1:
            out.append(f"k = {', '.join(map(str, near[1:]))} scored within {NEAR_BEST} of k = {self.best_k}")
        return out

    def ranked(self, n: int | None = None) -> list[KCandidate]:
        """The ``n`` candidates with the highest silhouette, best first (ties: smaller k)."""
        scored = [c for c in self.candidates if np.isfinite(c.silhouette)]
        return sorted(scored, key=lambda c: (-c.silhouette, c.k))[:n]

    def __getitem__(self, k: int) -> KCandidate:
        for c in self.candidates:
            if c.k == k:
                return c
        raise KeyError(k)

    def table(self) -> pd.DataFrame:
        """One row per candidate k: silhouette (higher is better), Davies-Bouldin
        (lower is better), Calinski-Harabasz (higher is better), chosen flag."""
        return pd.DataFrame(
            {
                "k": [c.k for c in self.candidates],
                "silhouette": [c.silhouette for c in self.candidates],
                "davies_bouldin": [c.davies_bouldin for c in self.candidates],
                "calinski_harabasz": [c.calinski_harabasz for c in self.candidates],
                "chosen": [c.k == self.best_k for c in self.candidates],
            }
        )


def score_partition(X: np.ndarray, part: Partition, sample_index: np.ndarray, k: int | None = None) -> KCandidate:
    """Silhouette (on the sample), Davies-Bouldin and Calinski-Harabasz (on all points).

    Noise points (label -1) are left out.  A partition with fewer than two clusters
    gets NaN scores.  ``k`` is the number asked for (default: the clusters found).
    """
    k = part.n_clusters if k is None else int(k)
    labels = part.labels
    kept = labels >= 0
    n_found = len(np.unique(labels[kept]))
    values = np.full(len(sample_index), np.nan)
    if n_found < 2 or kept.sum() <= n_found:
        return KCandidate(k, part, float("nan"), float("nan"), float("nan"), values)
    s_idx = sample_index[kept[sample_index]]
    if len(np.unique(labels[s_idx])) >= 2:
        values[kept[sample_index]] = silhouette_samples(X[s_idx], labels[s_idx])
    Xk, lk = X[kept], labels[kept]
    return KCandidate(
        k=k,
        partition=part,
        silhouette=float(np.nanmean(values)) if np.isfinite(values).any() else float("nan"),
        davies_bouldin=float(davies_bouldin_score(Xk, lk)),
        calinski_harabasz=float(calinski_harabasz_score(Xk, lk)),
        silhouette_values=values,
    )


def select_k(
    X: np.ndarray,
    k_values: Iterable[int],
    fit: Callable[[int], Partition],
    sample_size: int | None = DEFAULT_SAMPLE_SIZE,
    random_state: int = 0,
    progress: Callable[[int], None] | None = None,
) -> KSelection:
    """Fit one partition per candidate k and keep the one with the best silhouette.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        The space the partitions were made in (distances are Euclidean).
    k_values : candidate numbers of clusters (each >= 2 and < n)
    fit : ``fit(k) -> Partition``
    sample_size : points the silhouette is computed on (None: all)
    progress : called with each k once it is scored

    Ties (equal silhouette) go to the smaller k.
    """
    ks = sorted({int(k) for k in k_values})
    if not ks:
        raise ValueError("no candidate k given")
    if ks[0] < 2 or ks[-1] >= len(X):
        raise ValueError(f"candidate k must lie in [2, n_samples - 1] = [2, {len(X) - 1}], got {ks[0]}..{ks[-1]}")
    X = np.asarray(X, dtype=np.float32)
    sample_index = silhouette_sample_index(len(X), sample_size, random_state)
    candidates = []
    for k in ks:
        candidates.append(score_partition(X, fit(k), sample_index, k))
        if progress is not None:
            progress(k)
    chosen = best_k([c.k for c in candidates], [c.silhouette for c in candidates])
    if chosen is None:
        raise ValueError("no candidate k produced at least two clusters")
    return KSelection(candidates, chosen, sample_index)


__all__ = ["DEFAULT_SAMPLE_SIZE", "FLAT_SPREAD", "NEAR_BEST", "KCandidate", "KSelection", "score_partition", "select_k"]
