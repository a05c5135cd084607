"""Evaluate a classifier on labelled images: metrics, per-item predictions, the worst
predictions and Grad-CAM explanations of them.  Nothing here writes a file:
:func:`pixsort.report.classification.write_evaluation` does."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pixsort.classify.metrics import BOOTSTRAP_RESAMPLES, classification_metrics, predict_from_proba


@dataclass
class Evaluation:
    """What an evaluation found; ``files`` is filled in when it is written.

    Attributes
    ----------
    metrics : dict
        Everything ``metrics.json`` holds.
    predictions : DataFrame
        One row per item, skipped ones included with their reason.
    labels, proba : ndarray (m,), (m, K)
        The labelled items' true class and probabilities (for the curves).
    worst : ndarray of int (w,)
        Positions (into the evaluated images) of the worst predictions, worst first.
    worst_titles : list of str
    explained : ndarray uint8 (2 * e, H, W, 3) or None
        Each explained image followed by its Grad-CAM overlay; ``explained_titles`` beside.
    """

    metrics: dict
    predictions: pd.DataFrame
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    proba: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    worst: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    worst_titles: list[str] = field(default_factory=list)
    explained: np.ndarray | None = None
    explained_titles: list[str] = field(default_factory=list)
    files: dict = field(default_factory=dict)


def predictions_frame(
    paths: list[str], proba: np.ndarray, classes: list[str], threshold: float | None, labels: np.ndarray | None = None
) -> pd.DataFrame:
    """One row per image: path, predicted class, its probability, p_<class> columns,
    and the true class and correctness when labels are known (``-1`` = unknown)."""
    pred = predict_from_proba(proba, threshold)
    frame = pd.DataFrame(
        {
            "path": paths,
            "status": "loaded",
            "predicted": [classes[i] for i in pred],
            "confidence": proba[np.arange(len(pred)), pred],
        }
    )
    for i, name in enumerate(classes):
        frame[f"p_{name}"] = proba[:, i]
    if labels is not None:
        known = np.asarray(labels) >= 0
        frame.insert(1, "true", [classes[i] if i >= 0 else "" for i in labels])
        frame["correct"] = pd.array(np.where(known, pred == labels, pd.NA), dtype="boolean")
    return frame


def with_skipped(frame: pd.DataFrame, manifest: pd.DataFrame | None) -> pd.DataFrame:
    """Append the items that could not be decoded, with their reason."""
    if manifest is None:
        return frame.assign(reason="")
    skipped = manifest[manifest["status"] == "skipped"]
    rows = pd.DataFrame({"path": skipped["path"], "status": "skipped", "reason": skipped["reason"]})
    if "true" in frame.columns:
        rows["true"] = skipped["label"].to_numpy()
    return pd.concat([frame.assign(reason=""), rows], ignore_index=True)


def evaluate(
    clf,
    images: np.ndarray,
    labels: np.ndarray,
    paths: list[str],
    proba: np.ndarray,
    *,
    manifest: pd.DataFrame | None = None,
    n_worst: int = 12,
    n_gradcam: int = 6,
    extra: dict | None = None,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
) -> Evaluation:
    """Metrics, predictions, worst predictions and their Grad-CAM for a fitted ``clf``.

    ``images`` uint8 (n, H, W, C), ``labels`` (n,) model class indices (-1 unknown),
    ``proba`` (n, K) its probabilities; ``extra`` is merged into the metrics
    (timings, data counts); the metrics carry bootstrap 95% intervals (``ci95``)
    from ``n_resamples`` stratified resamples.
    """
    classes = clf.classes_
    labels = np.asarray(labels, dtype=np.int64)
    known = labels >= 0
    frame = with_skipped(
        predictions_frame(paths, proba, classes, clf.threshold_, labels if known.any() else None), manifest
    )
    metrics: dict = {"n_images": int(len(labels)), "n_labelled": int(known.sum())}
    result = Evaluation(metrics, frame)
    if known.any():
        y, p = labels[known], proba[known]
        metrics.update(classification_metrics(y, p, classes, clf.threshold_, n_resamples=n_resamples))
        result.labels, result.proba = y, p
        worst = _worst(y, p, clf.threshold_, n_worst)
        if len(worst):
            pos = np.flatnonzero(known)[worst]
            result.worst = pos
            result.worst_titles = [
                f"true {classes[labels[i]]}\np({classes[labels[i]]})={proba[i, labels[i]]:.3f}" for i in pos
            ]
            result.explained, result.explained_titles = _explain(
                clf, images, pos[:n_gradcam], result.worst_titles[:n_gradcam]
            )
    if manifest is not None:
        metrics["n_skipped"] = int((manifest["status"] == "skipped").sum())
    metrics.update({"threshold": clf.threshold_, "threshold_info": clf.threshold_info_, **(extra or {})})
    return result


def gather(images: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``images[positions]`` read in ascending order (fast on a memory map), in the given order."""
    positions = np.asarray(positions)
    return np.asarray(images[np.sort(positions)])[np.argsort(np.argsort(positions))]


def _worst(y: np.ndarray, proba: np.ndarray, threshold: float | None, n: int) -> np.ndarray:
    """Positions of the ``n`` misclassified items with the lowest probability on their
    true class (falling back to the least confident correct ones)."""
    p_true = proba[np.arange(len(y)), y]
    wrong = predict_from_proba(proba, threshold) != y
    order = np.lexsort((p_true, ~wrong))  # wrong first, then by p(true) ascending
    return order[:n]


def _explain(clf, images: np.ndarray, pos: np.ndarray, titles: list[str]) -> tuple[np.ndarray | None, list[str]]:
    """Each image beside its Grad-CAM overlay for the decision (threshold applied)."""
    from pixsort.classify.gradcam import grad_cam, overlay

    if clf.network_.gradcam_layer is None or len(pos) == 0:
        return None, []
    imgs = gather(images, pos)
    try:
        maps, explained = grad_cam(clf.network_, imgs, classes=clf.predict(imgs))
    except Exception:  # an explanation must never cost the evaluation
        return None, []
    tiles, names = [], []
    for img, heat, c, t in zip(imgs, maps, explained, titles):
        tiles += [img if img.shape[-1] == 3 else np.repeat(img, 3, -1), overlay(img, heat)]
        names += [t, f"Grad-CAM of the decision: {clf.classes_[c]}"]
    return np.stack(tiles), names


__all__ = ["Evaluation", "evaluate", "gather", "predictions_frame", "with_skipped"]
