"""Classification metrics from labels and predicted probabilities.

scikit-learn computes everything it has (accuracy, balanced accuracy, per-class
precision/recall/F1, ROC-AUC, average precision, confusion matrix, log loss, Brier);
only the expected calibration error, the reliability table, the bootstrap intervals
(:func:`bootstrap_intervals`) and the most-confused pairs (the confusion matrix's
largest off-diagonal cells) are written here.  For two classes the positive class is
index 1 and sensitivity / specificity are the recall of class 1 / class 0 at the
given threshold.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)


def predict_from_proba(proba: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Class indices from ``(n, K)`` probabilities: ``p1 >= threshold`` for two
    classes with a threshold, else the arg-max."""
    proba = np.asarray(proba)
    if proba.shape[1] == 2 and threshold is not None:
        return (proba[:, 1] >= threshold).astype(np.int64)
    return proba.argmax(axis=1).astype(np.int64)


def reliability_table(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> dict:
    """Confidence bins of the predicted class (top-label calibration).

    Returns dict of arrays: ``bin_lower``, ``bin_upper``, ``count``, ``confidence``
    (mean top probability), ``accuracy`` (fraction correct); empty bins hold NaN.
    """
    y = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=np.float64)
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins, the first also closed on the left: (a, b], [0, b] for the first
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / count
        acc = np.bincount(which, weights=correct, minlength=n_bins) / count
    return {"bin_lower": edges[:-1], "bin_upper": edges[1:], "count": count, "confidence": mean_conf, "accuracy": acc}


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> float:
    """ECE: the count-weighted mean |accuracy - confidence| over confidence bins."""
    table = reliability_table(y_true, proba, n_bins)
    filled = table["count"] > 0
    gaps = np.abs(table["accuracy"][filled] - table["confidence"][filled])
    return float(np.sum(gaps * table["count"][filled]) / np.sum(table["count"]))


def classification_metrics(
    y_true,
    proba,
    class_names: list[str],
    threshold: float | None = None,
    n_bins: int = 10,
    *,
    n_resamples: int = 0,
    random_state: int = 0,
) -> dict:
    """All metrics of one evaluation, JSON-able.

    Parameters
    ----------
    y_true : int array (n,)
    proba : float array (n, K), rows summing to 1
    class_names : K names
    threshold : decision threshold on the positive class (binary only)
    n_resamples : bootstrap resamples for 95% intervals (0: none; the training loop
        scores every epoch without them); ``random_state`` seeds them

    Returns
    -------
    dict with ``n``, ``accuracy``, ``balanced_accuracy``, ``roc_auc``, ``pr_auc``,
    ``log_loss``, ``ece``, ``confusion_matrix`` (rows = true), ``per_class``
    (precision, recall, f1, support and one-vs-rest ``roc_auc`` per class name),
    ``macro_f1``; for more than two classes ``most_confused`` (see
    :func:`most_confused`); for two classes ``sensitivity``, ``specificity``, ``ppv``,
    ``npv``, ``brier``, ``threshold``.  AUCs are None when a class is missing from
    ``y_true`` (a class's own AUC: when it is missing or is every item).  With
    ``n_resamples``: ``ci95`` (metric -> ``[low, high]`` or None, see
    :func:`bootstrap_intervals`) and ``ci_method``.
    """
    y = np.asarray(y_true).astype(np.int64).ravel()
    proba = np.asarray(proba, dtype=np.float64)
    k = len(class_names)
    if proba.ndim != 2 or proba.shape != (len(y), k):
        raise ValueError(f"proba must be (n={len(y)}, K={k}), got {proba.shape}")
    proba = proba / proba.sum(axis=1, keepdims=True)  # float32 softmax rows may miss 1 by 1e-7
    pred = predict_from_proba(proba, threshold)
    labels = np.arange(k)
    prec, rec, f1, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    cm = confusion_matrix(y, pred, labels=labels)
    present = np.unique(y)
    out: dict = {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if len(present) > 1 else None,
        "macro_f1": float(np.mean(f1)),
        "roc_auc": None,
        "pr_auc": None,
        "log_loss": float(log_loss(y, proba, labels=labels)),  # sklearn clips at its own eps
        "ece": expected_calibration_error(y, proba, n_bins),
        "confusion_matrix": cm.tolist(),
        "class_names": list(class_names),
        "per_class": {
            name: {
                "precision": float(prec[i]),
                "recall": float(rec[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "roc_auc": _one_vs_rest_auc(y == i, proba[:, i]),
            }
            for i, name in enumerate(class_names)
        },
    }
    if k > 2:
        out["most_confused"] = most_confused(cm, class_names)
    if k == 2:
        tn, fp, fn, tp = cm.ravel()
        out.update(
            {
                "threshold": None if threshold is None else float(threshold),
                "positive_class": class_names[1],
                "sensitivity": _ratio(tp, tp + fn),
                "specificity": _ratio(tn, tn + fp),
                "ppv": _ratio(tp, tp + fp),
                "npv": _ratio(tn, tn + fn),
                "brier": float(brier_score_loss(y, proba[:, 1])),
            }
        )
        if len(present) == 2:
            out["roc_auc"] = float(roc_auc_score(y, proba[:, 1]))
            out["pr_auc"] = float(average_precision_score(y, proba[:, 1]))
    elif len(present) == k:
        out["roc_auc"] = float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=labels))
        onehot = np.eye(k)[y]
        out["pr_auc"] = float(average_precision_score(onehot, proba, average="macro"))
    if n_resamples:
        out["ci95"] = bootstrap_intervals(y, proba, threshold, n_resamples=n_resamples, random_state=random_state)
        out["ci_method"] = {
            "method": "percentile bootstrap, resampled within each class",
            "n_resamples": int(n_resamples),
            "level": CI_LEVEL,
            "random_state": int(random_state),
        }
    return out


def most_confused(cm, class_names: list[str]) -> list[dict]:
    """The off-diagonal cells of a confusion matrix (rows = true) that hold any item,
    most frequent first (ties: the larger share, then matrix order): one dict each
    with ``true``, ``predicted``, ``count`` and ``share`` (of the true class's items)."""
    cm = np.asarray(cm, dtype=np.int64)
    rows = cm.sum(axis=1)
    cells = [
        (int(cm[i, j]), float(cm[i, j] / rows[i]), i, j)
        for i in range(len(cm))
        for j in range(len(cm))
        if i != j and cm[i, j] > 0
    ]
    cells.sort(key=lambda c: (-c[0], -c[1], c[2], c[3]))
    return [
        {"true": class_names[i], "predicted": class_names[j], "count": n, "share": share} for n, share, i, j in cells
    ]


def _one_vs_rest_auc(is_class: np.ndarray, score: np.ndarray) -> float | None:
    """ROC-AUC of ``score`` for one class against the rest (None without both sides)."""
    if is_class.all() or not is_class.any():
        return None
    return float(roc_auc_score(is_class, score))


def _ratio(a, b) -> float | None:
    return float(a / b) if b else None


def monitor_value(metrics: dict, monitor: str) -> float:
    """The value early stopping maximises (``loss``-type metrics are negated)."""
    if monitor in ("loss", "log_loss"):
        return -float(metrics["log_loss"])
    value = metrics.get(monitor)
    if value is None:
        value = metrics.get("balanced_accuracy") or metrics["accuracy"]
    return float(value)


MONITORS = ("roc_auc", "pr_auc", "balanced_accuracy", "accuracy", "macro_f1", "loss")


# ----------------------------------------------------------------------------- bootstrap intervals

BOOTSTRAP_RESAMPLES = 1000
CI_LEVEL = 0.95
CI_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "roc_auc", "pr_auc")
_BOOTSTRAP_BLOCK = 4_000_000  # resample-by-item counts held at once


def bootstrap_intervals(
    y_true,
    proba,
    threshold: float | None = None,
    *,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = CI_LEVEL,
    random_state: int = 0,
) -> dict[str, list[float] | None]:
    """Percentile bootstrap intervals of the metrics in :data:`CI_METRICS`.

    Each resample draws, within each class, as many items as the class has (with
    replacement), so every resample holds every class present and the AUCs are always
    defined.  A resample is a matrix of counts (how often each item was drawn), and
    every metric is a weighted count over the items, so all resamples are scored at
    once (numpy, no Python loop over resamples); the decisions are those of
    ``threshold`` (binary) or the arg-max.

    Returns metric -> ``[low, high]`` (the ``(1 - level) / 2`` and ``(1 + level) / 2``
    quantiles), or None where the metric is undefined (sensitivity without positives,
    AUCs without two classes, the binary-only metrics for more classes).
    """
    y = np.asarray(y_true).astype(np.int64).ravel()
    proba = np.asarray(proba, dtype=np.float64)
    n, k = proba.shape
    pred = predict_from_proba(proba, threshold)
    correct = (pred == y).astype(np.float64)
    present = np.unique(y)
    members = [np.flatnonzero(y == c) for c in present]
    rng = np.random.default_rng(random_state)
    block = max(1, _BOOTSTRAP_BLOCK // max(n, 1))
    values: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_resamples, block):
        b = min(block, n_resamples - start)
        drawn = np.concatenate([idx[rng.integers(0, len(idx), size=(b, len(idx)))] for idx in members], axis=1)
        offsets = (np.arange(b, dtype=np.int64) * n)[:, None]
        w = np.bincount((drawn + offsets).ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        for key, value in _weighted_metrics(w, y, pred, correct, proba, present).items():
            values.setdefault(key, []).append(value)
    q = [50 * (1 - level), 50 * (1 + level)]
    out: dict[str, list[float] | None] = {}
    for key in CI_METRICS:
        v = np.concatenate(values[key]) if key in values else np.zeros(0)
        v = v[np.isfinite(v)]
        out[key] = [float(x) for x in np.percentile(v, q)] if len(v) else None
    return out


def _weighted_metrics(
    w: np.ndarray, y: np.ndarray, pred: np.ndarray, correct: np.ndarray, proba: np.ndarray, present: np.ndarray
) -> dict[str, np.ndarray]:
    """Metrics of each resample (a row of item counts ``w``, shape (b, n))."""
    k = proba.shape[1]
    total = w.sum(axis=1)
    recall = {int(c): (w[:, y == c] @ correct[y == c]) / w[:, y == c].sum(axis=1) for c in present}
    out = {"accuracy": (w @ correct) / total}
    if len(present) > 1:
        out["balanced_accuracy"] = np.mean(list(recall.values()), axis=0)
    if k == 2:
        with np.errstate(invalid="ignore", divide="ignore"):
            tp, fp = w[:, (y == 1) & (pred == 1)].sum(1), w[:, (y == 0) & (pred == 1)].sum(1)
            tn, fn = w[:, (y == 0) & (pred == 0)].sum(1), w[:, (y == 1) & (pred == 0)].sum(1)
            out["ppv"], out["npv"] = tp / (tp + fp), tn / (tn + fn)
        if 1 in recall:
            out["sensitivity"] = recall[1]
        if 0 in recall:
            out["specificity"] = recall[0]
        if len(present) == 2:
            out["roc_auc"], out["pr_auc"] = _ranking_metrics(w, y == 1, proba[:, 1])
    elif len(present) == k:
        per_class = [_ranking_metrics(w, y == c, proba[:, c]) for c in range(k)]
        out["roc_auc"] = np.mean([auc for auc, _ in per_class], axis=0)
        out["pr_auc"] = np.mean([ap for _, ap in per_class], axis=0)
    return out


def _ranking_metrics(w: np.ndarray, positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ROC-AUC, average precision) of each row of item weights ``w`` (b, n), from one
    sort: the positive and negative weight at each distinct score, in ascending order."""
    w = np.atleast_2d(w)
    positive, scores = np.asarray(positive, bool), np.asarray(scores, np.float64)
    order = np.argsort(scores, kind="stable")
    s, pos = scores[order], positive[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ws = w[:, order]
    wp, wn = np.add.reduceat(ws * pos, starts, axis=1), np.add.reduceat(ws * ~pos, starts, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # ROC-AUC: the weighted share of (positive, negative) pairs in order, ties half
        below = np.cumsum(wn, axis=1) - wn
        auc = (wp * (below + 0.5 * wn)).sum(axis=1) / (wp.sum(axis=1) * wn.sum(axis=1))
        # average precision: the precision at each distinct score (from the top), weighted by the recall it adds
        tp, fp = np.cumsum(wp[:, ::-1], axis=1), np.cumsum(wn[:, ::-1], axis=1)
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
        ap = (wp[:, ::-1] * precision).sum(axis=1) / tp[:, -1]
    return auc, ap


def weighted_roc_auc(w: np.ndarray, positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row of item weights ``w`` (b, n); equals scikit-learn's
    ``roc_auc_score(positive, scores, sample_weight=row)``."""
    return _ranking_metrics(w, positive, scores)[0]


def weighted_average_precision(w: np.ndarray, positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Average precision of each row of item weights ``w`` (b, n); equals scikit-learn's
    ``average_precision_score(positive, scores, sample_weight=row)``."""
    return _ranking_metrics(w, positive, scores)[1]


def disagreements(a: dict, b: dict, keys: tuple[str, ...] = ("balanced_accuracy", "roc_auc")) -> list[dict]:
    """The metrics whose 95% intervals (``ci95``) in the metrics ``a`` and ``b`` do not
    overlap: one dict per metric with both values and intervals."""
    out = []
    for key in keys:
        ia, ib = (a.get("ci95") or {}).get(key), (b.get("ci95") or {}).get(key)
        if ia is None or ib is None:
            continue
        if ia[1] < ib[0] or ib[1] < ia[0]:
            out.append({"metric": key, "a": a.get(key), "a_ci95": list(ia), "b": b.get(key), "b_ci95": list(ib)})
    return out
