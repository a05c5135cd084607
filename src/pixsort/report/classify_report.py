"""The HTML report of a classifier's evaluation (training validation or a later test)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from pixsort.report.html import HtmlReport

_PLOTS = (
    ("curves", "Loss and validation metrics per epoch"),
    ("confusion", "Confusion matrix at the chosen threshold"),
    ("roc", "ROC curve; the dot is the operating point"),
    ("pr", "Precision-recall curve"),
    ("reliability", "Reliability diagram (calibration)"),
    ("worst", "The worst-predicted images (lowest probability on their true class)"),
    ("gradcam", "Grad-CAM: where the network looked, for the worst predictions"),
)


def write_classification_report(path: str | os.PathLike, *, title: str, metrics: dict, clf,
                                files: dict[str, Path], predictions: pd.DataFrame) -> Path:
    """Write ``report.html`` beside the plots in ``files`` (referenced relatively)."""
    path = Path(path)
    spec = getattr(clf, "spec_", {}) or {}
    rep = HtmlReport(title, subtitle=f"model {spec.get('model', '?')}, classes: {', '.join(clf.classes_)}")
    rep.section("Summary")
    summary = {"images": metrics.get("n_images"), "accuracy": metrics.get("accuracy"),
               "balanced accuracy": metrics.get("balanced_accuracy"), "ROC-AUC": metrics.get("roc_auc"),
               "PR-AUC": metrics.get("pr_auc"), "ECE": metrics.get("ece")}
    if "sensitivity" in metrics:
        summary.update({"sensitivity": metrics.get("sensitivity"), "specificity": metrics.get("specificity"),
                        "threshold": metrics.get("threshold")})
    if metrics.get("n_skipped"):
        summary["skipped files"] = metrics["n_skipped"]
    rep.key_values({k: ("n/a" if v is None else v) for k, v in summary.items()})
    info = metrics.get("threshold_info") or {}
    if clf.threshold_ is not None:
        how = {"sensitivity": f"the highest threshold reaching sensitivity >= {info.get('target_sensitivity')} "
                              "on the validation split",
               "youden": "Youden's J (sensitivity + specificity - 1) maximised on the validation split",
               "fixed": "a fixed value"}.get(info.get("method"), str(info.get("method")))
        rep.paragraph(f"Decision: '{clf.classes_[1]}' when its probability is >= {clf.threshold_:.4f}, chosen by {how}.",
                      "note")
    per_class = metrics.get("per_class")
    if per_class:
        rep.section("Per class")
        rep.table(pd.DataFrame(per_class).T, caption="Precision, recall (sensitivity) and F1 at the threshold")
    for key, caption in _PLOTS:
        if key in files and files[key] is not None:
            rep.image(os.path.relpath(files[key], path.parent), caption=caption)
    training = getattr(clf, "training_", None)
    if training:
        rep.section("Training")
        rep.key_values({"best epoch": training.get("best_epoch"), "stopped": training.get("stopped"),
                        "train images": training.get("n_train"), "validation images": training.get("n_val"),
                        "parameters": getattr(clf, "n_parameters_", None),
                        "fit seconds": round(float(getattr(clf, "fit_seconds_", 0) or 0), 1)})
        cfg = getattr(clf, "train_config_", {}) or {}
        shown = {k: v for k, v in cfg.items() if k != "augment"}
        rep.table(pd.DataFrame([shown]).T.rename(columns={0: "value"}).astype(str), caption="Training settings")
    if "status" in predictions and (predictions["status"] == "skipped").any():
        rep.section("Skipped files")
        rep.table(predictions.loc[predictions["status"] == "skipped", ["path", "reason"]], index=False)
    rep.paragraph("All predictions: predictions.csv; all metrics: metrics.json.", "note")
    return rep.write(path)
