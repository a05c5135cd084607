"""Decision thresholds for a binary classifier, chosen on validation scores.

A threshold ``t`` means: predict the positive class when ``score >= t``.  Both
choosers return one of the observed scores, so the achieved sensitivity on the
scores they were given is exactly what they report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_curve

THRESHOLD_METHODS = ("youden", "sensitivity", "fixed")


@dataclass(frozen=True)
class ThresholdChoice:
    """A chosen threshold and what it achieves on the scores it was chosen on."""

    threshold: float
    method: str
    sensitivity: float
    specificity: float
    target_sensitivity: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true and scores differ in length: {y.shape} vs {s.shape}")
    if not (np.any(y == 1) and np.any(y == 0)):
        raise ValueError("choosing a threshold needs both classes among the validation labels")
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    finite = np.isfinite(thr)  # sklearn's first threshold is +inf (nothing positive)
    return fpr[finite], tpr[finite], thr[finite]


def _between(thr: np.ndarray, i: int) -> float:
    """A threshold halfway between the score ``thr[i]`` and the next lower one: the same
    operating point, but one that a score rounded when stored (model.json keeps six
    decimals) or recomputed at another precision does not flip."""
    return float(thr[i]) if i + 1 >= len(thr) else float((thr[i] + thr[i + 1]) / 2)


def threshold_for_sensitivity(y_true, scores, target: float = 0.95) -> ThresholdChoice:
    """The highest threshold whose sensitivity (recall of class 1) is >= ``target``.

    Highest, so that specificity is as good as the target allows.
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target}")
    fpr, tpr, thr = _curve(y_true, scores)
    ok = np.flatnonzero(tpr >= target - 1e-12)
    i = ok[0]  # thresholds decrease along the curve: the first that reaches the target
    return ThresholdChoice(_between(thr, i), "sensitivity", float(tpr[i]), float(1 - fpr[i]), float(target))


def threshold_youden(y_true, scores) -> ThresholdChoice:
    """The threshold maximising Youden's J = sensitivity + specificity - 1."""
    fpr, tpr, thr = _curve(y_true, scores)
    i = int(np.argmax(tpr - fpr))
    return ThresholdChoice(_between(thr, i), "youden", float(tpr[i]), float(1 - fpr[i]))


def fixed_threshold(y_true, scores, threshold: float = 0.5) -> ThresholdChoice:
    y = np.asarray(y_true).astype(int).ravel()
    pred = np.asarray(scores).ravel() >= threshold
    sens = float(pred[y == 1].mean()) if np.any(y == 1) else float("nan")
    spec = float((~pred[y == 0]).mean()) if np.any(y == 0) else float("nan")
    return ThresholdChoice(float(threshold), "fixed", sens, spec)


def choose_threshold(
    y_true, scores, method: str = "youden", target_sensitivity: float | None = None, fixed: float = 0.5
) -> ThresholdChoice:
    """Dispatch: ``target_sensitivity`` given -> :func:`threshold_for_sensitivity`,
    else ``method`` (``youden`` or ``fixed``)."""
    if target_sensitivity is not None:
        return threshold_for_sensitivity(y_true, scores, target_sensitivity)
    if method == "youden":
        return threshold_youden(y_true, scores)
    if method == "fixed":
        return fixed_threshold(y_true, scores, fixed)
    raise ValueError(f"unknown threshold method {method!r}; choose from {THRESHOLD_METHODS}")
