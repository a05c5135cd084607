"""Evaluate a classifier on labelled images and write what a reader needs.

:func:`write_evaluation` produces, in one folder: ``metrics.json``,
``predictions.csv`` (one row per item, skipped ones included with their reason),
``plots/`` (confusion matrix, ROC, PR, reliability, per-epoch curves, the worst
predictions, Grad-CAM overlays) and ``report.html``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pixsort.models import json_default
from pixsort.classify import plots
from pixsort.classify.metrics import classification_metrics, predict_from_proba


@dataclass
class Evaluation:
    """Metrics, per-item predictions and the files written."""

    metrics: dict
    predictions: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)


def predictions_frame(paths: list[str], proba: np.ndarray, classes: list[str], threshold: float | None,
                      labels: np.ndarray | None = None) -> pd.DataFrame:
    """One row per image: path, predicted class, its probability, p_<class> columns,
    and the true class and correctness when labels are known (``-1`` = unknown)."""
    pred = predict_from_proba(proba, threshold)
    frame = pd.DataFrame({"path": paths, "status": "loaded", "predicted": [classes[i] for i in pred],
                          "confidence": proba[np.arange(len(pred)), pred]})
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
    out = pd.concat([frame.assign(reason=""), rows], ignore_index=True)
    return out


def write_evaluation(clf, images: np.ndarray, labels: np.ndarray, paths: list[str], out_dir: str | Path, *,
                     title: str, proba: np.ndarray | None = None, manifest: pd.DataFrame | None = None,
                     history: list[dict] | None = None, n_worst: int = 12, n_gradcam: int = 6,
                     extra: dict | None = None, report: bool = True) -> Evaluation:
    """Evaluate ``clf`` on uint8 ``images`` with integer ``labels`` and write the outputs.

    ``proba`` may be passed when already computed (e.g. validation predictions of
    training); ``extra`` is merged into ``metrics.json`` (timings, data counts).
    """
    out = Path(out_dir)
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    classes = clf.classes_
    if proba is None:
        proba = clf.predict_proba(images)
    labels = np.asarray(labels, dtype=np.int64)
    known = labels >= 0
    frame = predictions_frame(paths, proba, classes, clf.threshold_, labels if known.any() else None)
    frame = with_skipped(frame, manifest)
    files: dict[str, Path] = {}
    metrics: dict = {"n_images": int(len(labels)), "n_labelled": int(known.sum())}
    if known.any():
        y, p = labels[known], proba[known]
        metrics.update(classification_metrics(y, p, classes, clf.threshold_))
        files["confusion"] = plots.plot_confusion(metrics["confusion_matrix"], classes, plot_dir / "confusion.png")
        for key, fn in (("roc", lambda: plots.plot_roc(y, p, classes, plot_dir / "roc.png", clf.threshold_)),
                        ("pr", lambda: plots.plot_pr(y, p, classes, plot_dir / "pr.png"))):
            made = fn()
            if made is not None:
                files[key] = made
        files["reliability"] = plots.plot_reliability(y, p, plot_dir / "reliability.png")
        worst = _worst(y, p, clf.threshold_, n_worst)
        if len(worst):
            pos = np.flatnonzero(known)[worst]
            titles = [f"true {classes[labels[i]]}\np({classes[labels[i]]})={proba[i, labels[i]]:.3f}" for i in pos]
            files["worst"] = plots.image_grid(np.asarray(images[np.sort(pos)])[np.argsort(np.argsort(pos))],
                                              titles, plot_dir / "worst.png")
            made = _gradcam_grid(clf, images, pos[:n_gradcam], titles[:n_gradcam], plot_dir / "gradcam.png")
            if made is not None:
                files["gradcam"] = made
    if history:
        made = plots.plot_history(history, plot_dir / "curves.png")
        if made is not None:
            files["curves"] = made
    if manifest is not None:
        metrics["n_skipped"] = int((manifest["status"] == "skipped").sum())
    metrics.update({"threshold": clf.threshold_, "threshold_info": clf.threshold_info_, **(extra or {})})
    files["metrics"] = out / "metrics.json"
    files["metrics"].write_text(json.dumps(metrics, indent=1, default=json_default), encoding="utf-8")
    files["predictions"] = out / "predictions.csv"
    frame.to_csv(files["predictions"], index=False)
    if report:
        from pixsort.report.classify_report import write_classification_report

        files["report"] = write_classification_report(out / "report.html", title=title, metrics=metrics,
                                                       clf=clf, files=files, predictions=frame)
    return Evaluation(metrics, frame, files)


def _worst(y: np.ndarray, proba: np.ndarray, threshold: float | None, n: int) -> np.ndarray:
    """Positions of the ``n`` misclassified items with the lowest probability on their
    true class (falling back to the least confident correct ones)."""
    p_true = proba[np.arange(len(y)), y]
    wrong = predict_from_proba(proba, threshold) != y
    order = np.lexsort((p_true, ~wrong))  # wrong first, then by p(true) ascending
    return order[:n]


def _gradcam_grid(clf, images: np.ndarray, pos: np.ndarray, titles: list[str], path: Path) -> Path | None:
    from pixsort.classify.gradcam import grad_cam, overlay

    if clf.network_.gradcam_layer is None or len(pos) == 0:
        return None
    imgs = np.asarray(images[np.sort(pos)])[np.argsort(np.argsort(pos))]
    try:
        maps, explained = grad_cam(clf.network_, imgs, classes=clf.predict(imgs))  # the decision, threshold applied
    except Exception:  # an explanation must never cost the evaluation
        return None
    tiles, names = [], []
    for img, heat, c, t in zip(imgs, maps, explained, titles):
        tiles += [img if img.shape[-1] == 3 else np.repeat(img, 3, -1), overlay(img, heat)]
        names += [t, f"Grad-CAM of the decision: {clf.classes_[c]}"]
    return plots.image_grid(np.stack(tiles), names, path, cols=4)

