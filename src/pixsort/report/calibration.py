"""What ``pixsort calibrate`` leaves in its output folder: ``calibration.json`` (the
temperature, the threshold and the metrics before and after, with 95% intervals),
``predictions.csv`` (each image's probability before and after), reliability
diagrams before and after (``plots/``) and ``report.html``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from pixsort.classify.evaluation import predictions_frame
from pixsort.report.classification import plot_reliability, sets_table
from pixsort.report.files import write_csv, write_json
from pixsort.report.html import HtmlReport


def write_calibration_report(
    out_dir: str | os.PathLike,
    *,
    clf,
    record: dict,
    paths: list[str],
    labels: np.ndarray,
    proba_before: np.ndarray,
    proba_after: np.ndarray,
    title: str,
) -> dict[str, Path]:
    """Write the calibration outputs of ``clf`` (already calibrated: its temperature and
    threshold are the new ones) into ``out_dir``; ``record`` is the calibration entry of
    ``model.json``.  Returns the written files by name."""
    out = Path(out_dir)
    plots = out / "plots"
    files: dict[str, Path] = {}
    t_before = record.get("temperature_before", 1.0)
    files["reliability_before"] = plot_reliability(
        labels, proba_before, plots / "reliability_before.png", title=f"Before: temperature {t_before:.3g}"
    )
    files["reliability_after"] = plot_reliability(
        labels, proba_after, plots / "reliability_after.png", title=f"After: temperature {record['temperature']:.3g}"
    )
    frame = predictions_frame(paths, proba_after, clf.classes_, clf.threshold_, labels)
    for i, name in enumerate(clf.classes_):
        frame[f"p_{name}_before"] = proba_before[:, i]
    files["predictions"] = write_csv(frame, out / "predictions.csv")
    files["calibration"] = write_json(record, out / "calibration.json")

    rep = HtmlReport(title, subtitle=f"model {record.get('model_dir', '')}, classes: {', '.join(clf.classes_)}")
    rep.section("Summary")
    before, after = record.get("before") or {}, record.get("after") or {}
    summary = {
        "images": record.get("n"),
        "temperature": f"{t_before:.4g} -> {record['temperature']:.4g}",
        "log loss": f"{record['nll_before']:.4f} -> {record['nll_after']:.4f}",
        "ECE": f"{before.get('ece', float('nan')):.4f} -> {after.get('ece', float('nan')):.4f}",
    }
    if clf.threshold_ is not None:
        previous = record.get("threshold_before")
        summary["threshold"] = f"{previous:.4f} -> {clf.threshold_:.4f}" if previous is not None else clf.threshold_
    rep.key_values(summary)
    rep.paragraph(
        "Temperature scaling divides the model's logits by one number T > 0 fitted to minimise the log loss on "
        "these images; the weights are not touched and no ranking changes (ROC-AUC and PR-AUC stay as they were). "
        "The threshold was then chosen again on the calibrated probabilities. Both were fitted on the images they "
        "are measured on here, so the 'after' column is optimistic; measure on other local images to be sure.",
        "note",
    )
    info = record.get("threshold_info") or {}
    if clf.threshold_ is not None:
        if info.get("method") == "sensitivity":
            how = f"the highest threshold with sensitivity >= {info.get('target_sensitivity')}"
        else:
            how = "Youden's J (sensitivity + specificity - 1)"
        rep.paragraph(
            f"Decision: '{clf.classes_[1]}' when its calibrated probability is >= {clf.threshold_:.4f}, chosen by "
            f"{how} on these images.",
            "note",
        )
    rep.section("Metrics before and after")
    rep.table(
        sets_table({"before calibration": before, "after calibration": after}),
        caption="Before: the model as it was (its temperature and threshold); after: calibrated, threshold re-chosen",
    )
    rep.section("Reliability")
    for key, caption in (
        ("reliability_before", "Before calibration"),
        ("reliability_after", "After calibration"),
    ):
        rep.image(os.path.relpath(files[key], out), caption=caption)
    counts = record.get("class_counts") or {}
    if counts:
        rep.section("Images")
        rep.table(pd.DataFrame([counts], index=["images"]), caption=f"Labelled images of {record.get('data')}")
    rep.paragraph("Per-image probabilities: predictions.csv; every number: calibration.json.", "note")
    files["report"] = rep.write(out / "report.html")
    return files


__all__ = ["write_calibration_report"]
