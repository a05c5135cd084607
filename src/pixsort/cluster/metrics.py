"""Scores of a clustering against known labels: Hungarian accuracy, NMI, ARI, purity,
and the cluster-by-class table they are read from.

Conventions
-----------
* Items whose true label is negative (``-1``: unlabeled) are left out of every score.
* A predicted label of ``-1`` (HDBSCAN noise) is a cluster of its own for NMI/ARI,
  but is never matched to a class, so its items count as errors for accuracy and
  purity.
* Accuracy matches clusters to classes one-to-one (Hungarian algorithm on the
  contingency table); clusters left without a class count as errors.  Purity lets
  every cluster take its majority class, so purity >= accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from pixsort.cluster.labels import NOISE


def _labeled_pairs(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.shape[0]} vs {y_pred.shape[0]}")
    keep = y_true >= 0
    return y_true[keep].astype(np.int64), y_pred[keep].astype(np.int64)


def contingency(y_true, y_pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of (cluster, class) pairs over labeled items.

    Returns
    -------
    table : ndarray of int64, shape (n_clusters, n_classes)
    clusters : ndarray, shape (n_clusters,)  -- the cluster ids, sorted (noise first)
    classes : ndarray, shape (n_classes,)    -- the class ids, sorted
    """
    t, p = _labeled_pairs(y_true, y_pred)
    clusters, p_idx = np.unique(p, return_inverse=True)
    classes, t_idx = np.unique(t, return_inverse=True)
    table = np.zeros((len(clusters), len(classes)), dtype=np.int64)
    np.add.at(table, (p_idx, t_idx), 1)
    return table, clusters, classes


def match_clusters(y_true, y_pred) -> dict[int, int]:
    """One-to-one cluster -> class mapping that maximises the matched count.

    Noise (``-1``) is never matched; clusters beyond the number of classes stay
    unmatched and are absent from the result.
    """
    table, clusters, classes = contingency(y_true, y_pred)
    matchable = clusters != NOISE
    if not matchable.any() or table.size == 0:
        return {}
    rows, cols = linear_sum_assignment(table[matchable], maximize=True)
    return {int(clusters[matchable][r]): int(classes[c]) for r, c in zip(rows, cols)}


def hungarian_accuracy(y_true, y_pred) -> float:
    """Share of labeled items whose cluster is matched to their class (0..1)."""
    t, p = _labeled_pairs(y_true, y_pred)
    if len(t) == 0:
        return float("nan")
    mapping = match_clusters(t, p)
    mapped = np.array([mapping.get(int(c), -2) for c in p]) if len(p) else p
    return float(np.mean(mapped == t))


def purity(y_true, y_pred) -> float:
    """Share of labeled items that belong to their cluster's majority class (0..1)."""
    table, clusters, _ = contingency(y_true, y_pred)
    total = table.sum()
    if total == 0:
        return float("nan")
    counted = table[clusters != NOISE]
    return float(counted.max(axis=1).sum() / total) if len(counted) else 0.0


def clustering_scores(y_true, y_pred) -> dict[str, float]:
    """Accuracy (Hungarian), NMI, ARI and purity over the labeled items.

    Returns a dict with keys ``accuracy``, ``nmi``, ``ari``, ``purity``,
    ``n_labeled``, ``n_classes``, ``n_clusters`` (noise not counted).
    """
    t, p = _labeled_pairs(y_true, y_pred)
    if len(t) == 0:
        raise ValueError("no labeled items to score against (every label is -1)")
    return {
        "accuracy": hungarian_accuracy(t, p),
        "nmi": float(normalized_mutual_info_score(t, p)),
        "ari": float(adjusted_rand_score(t, p)),
        "purity": purity(t, p),
        "n_labeled": int(len(t)),
        "n_classes": int(len(np.unique(t))),
        "n_clusters": int(len(np.setdiff1d(np.unique(p), [NOISE]))),
    }


def cluster_class_table(y_true, y_pred, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Cluster-by-class counts as a DataFrame, with the matched class of each cluster.

    Rows are clusters (``noise`` for -1), columns are class names, then ``total``,
    ``matched_class`` (Hungarian; empty when unmatched) and ``matched_share``.
    """
    table, clusters, classes = contingency(y_true, y_pred)
    names = [class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c) for c in classes]
    frame = pd.DataFrame(
        table, columns=names, index=pd.Index(["noise" if c == NOISE else int(c) for c in clusters], name="cluster")
    )
    mapping = match_clusters(y_true, y_pred)
    totals = table.sum(axis=1)
    frame["total"] = totals
    matched = []
    share = []
    for row, c in enumerate(clusters):
        cls = mapping.get(int(c))
        if cls is None:
            matched.append("")
            share.append(0.0)
        else:
            col = int(np.flatnonzero(classes == cls)[0])
            matched.append(names[col])
            share.append(table[row, col] / totals[row] if totals[row] else 0.0)
    frame["matched_class"] = matched
    frame["matched_share"] = np.round(share, 4)
    return frame


__all__ = [
    "cluster_class_table",
    "clustering_scores",
    "contingency",
    "hungarian_accuracy",
    "match_clusters",
    "purity",
]
