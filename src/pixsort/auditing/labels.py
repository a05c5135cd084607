"""Likely label errors: out-of-fold probabilities of a linear probe, ranked by cleanlab.

A logistic regression on the embeddings (centred, unit length, reduced by PCA to at
most :data:`PROBE_COMPONENTS` dimensions, not standardised) is fitted ``n_folds`` times with stratified
folds (``cross_val_predict``): each image is scored by a probe that never saw it.
``cleanlab.filter.find_label_issues`` (confident learning) picks the images whose
given label the probabilities contradict, ranked by label quality (self-confidence,
the out-of-fold probability of the given label: lowest first).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PROBE_COMPONENTS = 128
PROBE_C = 10.0  # the components of unit rows are small: a weak penalty (not standardised: noise would weigh as much)
N_FOLDS = 5


def out_of_fold_probabilities(
    Z: np.ndarray, labels: np.ndarray, n_folds: int = N_FOLDS, random_state: int = 0, C: float = PROBE_C
) -> np.ndarray:
    """Out-of-fold class probabilities (n, n_classes) of a logistic-regression probe.

    Parameters
    ----------
    Z : ndarray (n, d), embeddings
    labels : ndarray (n,) int in 0..n_classes-1, every class with >= ``n_folds`` items
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    # at most half a training fold's rows: more components than that fit noise
    n_comp = int(max(1, min(PROBE_COMPONENTS, Z.shape[1], len(Z) * (n_folds - 1) // (2 * n_folds))))
    # the PCA sees no label, so it is fitted once on every image; only the probe is cross-validated
    P = PCA(n_components=n_comp, svd_solver="randomized", random_state=random_state).fit_transform(Z)
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    return cross_val_predict(LogisticRegression(C=C, max_iter=1000), P, labels, cv=folds, method="predict_proba")


def label_issues(
    Z: np.ndarray, labels: np.ndarray, n_folds: int = N_FOLDS, random_state: int = 0
) -> tuple[pd.DataFrame, dict]:
    """Likely label errors among labelled images.

    Parameters
    ----------
    Z : ndarray (n, d), embeddings of the labelled images
    labels : ndarray (n,) int, the given labels (-1: unlabelled, left out)

    Returns
    -------
    scores : DataFrame (n rows) with ``label_quality`` (out-of-fold probability of the given
        label; NaN where not scored), ``suggested`` (the probe's class, -1 where not scored),
        ``p_suggested``, ``label_issue`` (bool, cleanlab's verdict) and ``issue_rank``
        (1 = most likely wrong; 0 where not an issue)
    info : dict, what was done (or why not): scored, n_issues, n_folds, classes_scored, note
    """
    from cleanlab.filter import find_label_issues

    y = np.asarray(labels, dtype=np.int64)
    n = len(y)
    scores = pd.DataFrame(
        {
            "label_quality": np.full(n, np.nan),
            "suggested": np.full(n, -1, np.int64),
            "p_suggested": np.full(n, np.nan),
            "label_issue": np.zeros(n, bool),
            "issue_rank": np.zeros(n, np.int64),
        }
    )
    classes, counts = np.unique(y[y >= 0], return_counts=True)
    usable = classes[counts >= n_folds]
    info = {"scored": 0, "n_issues": 0, "n_folds": n_folds, "classes_scored": [int(c) for c in usable], "note": ""}
    if len(usable) < 2:
        info["note"] = f"needs at least 2 classes of >= {n_folds} labelled images; label errors not scored"
        return scores, info
    pos = np.flatnonzero(np.isin(y, usable))
    codes = np.searchsorted(usable, y[pos])  # classes renumbered 0..c-1 for the probe and cleanlab
    proba = out_of_fold_probabilities(Z[pos], codes, n_folds, random_state)
    ranked = find_label_issues(codes, proba, return_indices_ranked_by="self_confidence")
    quality = proba[np.arange(len(pos)), codes]
    best = proba.argmax(axis=1)
    scores.loc[pos, "label_quality"] = quality
    scores.loc[pos, "suggested"] = usable[best]
    scores.loc[pos, "p_suggested"] = proba[np.arange(len(pos)), best]
    scores.loc[pos[ranked], "label_issue"] = True
    scores.loc[pos[ranked], "issue_rank"] = np.arange(1, len(ranked) + 1)
    info.update(scored=len(pos), n_issues=len(ranked))
    return scores, info


__all__ = ["N_FOLDS", "PROBE_COMPONENTS", "label_issues", "out_of_fold_probabilities"]
