"""Evaluate a classifier on labelled images: metrics, per-item predictions and the top
losses (fastai's ``plot_top_losses``: the items with the highest cross-entropy, each
with the Grad-CAM of its predicted class over it).  Nothing here writes a file:
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
    top_losses : ndarray of int (t,)
        Positions (into the evaluated images) of the highest losses, highest first; the
        loss of an item is its cross-entropy, ``-log p(true class)``.
    top_loss_titles : list of str
        ``true / predicted`` and ``loss / p(true)`` of each (the decision at the threshold).
    top_loss_tiles : ndarray uint8 (t, H, W, 3) or None
        Each of those images with the Grad-CAM heat map of its predicted class blended
        over it (the plain image where the network has no Grad-CAM layer).
    top_loss_gradcam : bool
        Whether the tiles carry Grad-CAM overlays.
    """

    metrics: dict
    predictions: pd.DataFrame
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    proba: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    top_losses: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    top_loss_titles: list[str] = field(default_factory=list)
    top_loss_tiles: np.ndarray | None = None
    top_loss_gradcam: bool = False
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
    n_top: int = 12,
    extra: dict | None = None,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
) -> Evaluation:
    """Metrics, predictions and the ``n_top`` top losses (with Grad-CAM) for a fitted ``clf``.

    ``images`` uint8 (n, H, W, C), ``labels`` (n,) model class indices (-1 unknown),
    ``proba`` (n, K) its probabilities; ``extra`` is merged into the metrics
    (timings, data counts); the metrics carry bootstrap 95% intervals (``ci95``)
    from ``n_resamples`` stratified resamples.  ``metrics["top_losses"]`` lists the
    top losses (path, true, predicted, loss, p_true), highest first.
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
        top = _top_losses(y, p, n_top)
        if len(top):
            pos = np.flatnonzero(known)[top]
            pred = predict_from_proba(proba[pos], clf.threshold_)
            p_true = proba[pos, labels[pos]]
            losses = item_losses(p_true)
            result.top_losses = pos
            result.top_loss_titles = [
                f"{classes[labels[i]]} / {classes[c]}\n{loss:.2f} / {pt:.3f}"
                for i, c, loss, pt in zip(pos, pred, losses, p_true)
            ]
            metrics["top_losses"] = [
                {"path": paths[i], "true": classes[labels[i]], "predicted": classes[c], "loss": float(loss),
                 "p_true": float(pt)}
                for i, c, loss, pt in zip(pos, pred, losses, p_true)
            ]  # fmt: skip
            result.top_loss_tiles, result.top_loss_gradcam = _top_loss_tiles(clf, images, pos, pred)
    if manifest is not None:
        metrics["n_skipped"] = int((manifest["status"] == "skipped").sum())
    metrics.update({"threshold": clf.threshold_, "threshold_info": clf.threshold_info_, **(extra or {})})
    return result


def gather(images: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``images[positions]`` read in ascending order (fast on a memory map), in the given order."""
    positions = np.asarray(positions)
    return np.asarray(images[np.sort(positions)])[np.argsort(np.argsort(positions))]


def item_losses(p_true: np.ndarray, eps: float = 1e-15) -> np.ndarray:
    """Each item's cross-entropy, ``-log p(true class)`` (p clipped at ``eps``)."""
    return -np.log(np.clip(np.asarray(p_true, dtype=np.float64), eps, 1.0))


def _top_losses(y: np.ndarray, proba: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` items with the highest loss (lowest probability on their
    true class), highest first; ties keep the items' order."""
    p_true = proba[np.arange(len(y)), y]
    return np.argsort(p_true, kind="stable")[:n]


def _top_loss_tiles(clf, images: np.ndarray, pos: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, bool]:
    """The images at ``pos`` (RGB) with the Grad-CAM of their predicted class over them;
    plain where there is no Grad-CAM (no convolutional layer, or it failed)."""
    from pixsort.classify.gradcam import grad_cam, overlay

    imgs = gather(images, pos)
    plain = np.stack([img if img.shape[-1] == 3 else np.repeat(img, 3, -1) for img in imgs])
    if clf.network_.gradcam_layer is None:
        return plain, False
    try:
        maps, _ = grad_cam(clf.network_, imgs, classes=pred)
    except Exception:  # an explanation must never cost the evaluation
        return plain, False
    return np.stack([overlay(img, heat) for img, heat in zip(imgs, maps)]), True


__all__ = ["Evaluation", "evaluate", "gather", "item_losses", "predictions_frame", "with_skipped"]
