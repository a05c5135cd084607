"""Calibrate a saved classifier on labelled images of the place it is used.

:func:`calibrate_classifier` fits temperature scaling (one ``T > 0`` dividing the
logits, :func:`pixsort.classify.calibration.fit_temperature`) on the local labelled
images, chooses the decision threshold again on the calibrated probabilities (Youden's
J, or the highest threshold reaching a target sensitivity), records the temperature,
the threshold and the metrics before and after (with 95% intervals) in the model's
``model.json`` (a ``calibration`` entry), refreshes its ``MODEL_CARD.md`` and writes a
calibration report.  ``weights.safetensors`` is never touched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pixsort.base.modelfile import model_folder
from pixsort.classify.calibration import TemperatureFit, fit_temperature
from pixsort.classify.estimator import ImageClassifier
from pixsort.classify.metrics import BOOTSTRAP_RESAMPLES, classification_metrics
from pixsort.classify.threshold import choose_threshold
from pixsort.data import SourceError, load_images, open_dataset
from pixsort.report.calibration import write_calibration_report
from pixsort.report.model_card import write_model_card
from pixsort.workflows.classification import _SET_KEYS, _check_classes, _labels_in_model_order


@dataclass
class CalibrationOutcome:
    classifier: ImageClassifier  # calibrated: its temperature and threshold are the new ones
    model_dir: Path
    fit: TemperatureFit
    before: dict  # metrics of the model as it was, on the local images
    after: dict  # calibrated, threshold re-chosen
    record: dict  # the calibration entry written to model.json
    files: dict = field(default_factory=dict)
    model_card: Path | None = None


def _slim(metrics: dict) -> dict:
    return {k: metrics[k] for k in _SET_KEYS if k in metrics}


def calibrate_classifier(
    model: str | os.PathLike,
    data: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    target_sensitivity: float | None = None,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> CalibrationOutcome:
    """Calibrate the model saved at ``model`` on the labelled images of ``data``.

    Every labelled item of ``data`` outside a ``test`` split is used.  The threshold
    (two classes) is re-chosen on the calibrated probabilities: the highest one with
    sensitivity >= ``target_sensitivity`` when given, else by the model's own rule
    (its target sensitivity if it was trained with one, else Youden's J).  ``out_dir``
    (default: ``calibration`` beside the model folder) receives the report.
    """
    if target_sensitivity is not None and not 0.0 < target_sensitivity <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target_sensitivity}")
    folder = model_folder(model)
    clf = ImageClassifier.load(folder)
    out = Path(out_dir) if out_dir is not None else folder.parent / "calibration"
    dataset = open_dataset(data, exclude=[out, folder])
    _check_classes(dataset, clf)
    dataset = dataset.subset(np.flatnonzero((dataset.splits != "test") & (dataset.labels >= 0)))
    decoded = load_images(dataset, clf.decode_settings, cache_dir=cache_dir, workers=workers, progress=progress)
    y = _labels_in_model_order(decoded, clf)
    if len(np.unique(y)) < 2:
        raise SourceError(f"{data}: calibration needs labelled images of at least two classes (found {len(y)} images "
                          f"of {sorted({clf.classes_[i] for i in y})})")  # fmt: skip

    logits = clf.predict_logits(decoded.images)
    proba_before = clf.proba_from_logits(logits)
    before = classification_metrics(y, proba_before, clf.classes_, clf.threshold_, n_resamples=BOOTSTRAP_RESAMPLES)
    previous = {"threshold": clf.threshold_, "threshold_info": clf.threshold_info_, "temperature": clf.temperature_}

    fit = fit_temperature(logits, y)
    clf.temperature_ = fit.temperature
    proba_after = clf.proba_from_logits(logits)
    if len(clf.classes_) == 2:
        info = previous["threshold_info"] or {}
        target = target_sensitivity
        if target is None and info.get("method") == "sensitivity":
            target = info.get("target_sensitivity")
        choice = choose_threshold(y, proba_after[:, 1], "youden", target)
        clf.threshold_ = choice.threshold
        clf.threshold_info_ = {**choice.to_dict(), "chosen_on": f"the calibration set ({data})"}
    after = classification_metrics(y, proba_after, clf.classes_, clf.threshold_, n_resamples=BOOTSTRAP_RESAMPLES)
    # the threshold's own record: set_threshold re-chooses on these predictions from now on
    clf.val_labels_, clf.val_proba_, clf.validation_metrics_ = y, proba_after, after

    record = {
        "data": str(data),
        "site": Path(data).name,
        "n": int(len(y)),
        "class_counts": {c: int(n) for c, n in zip(clf.classes_, np.bincount(y, minlength=len(clf.classes_)))},
        "method": fit.method,
        "temperature": fit.temperature,
        "temperature_before": float(previous["temperature"]),
        "nll_before": fit.nll_before,
        "nll_after": fit.nll_after,
        "threshold": clf.threshold_,
        "threshold_info": clf.threshold_info_,
        "threshold_before": previous["threshold"],
        "threshold_info_before": previous["threshold_info"],
        "before": _slim(before),
        "after": _slim(after),
        "in_sample": True,
        "note": "the temperature and the threshold were fitted on the images 'after' is measured on",
        "model_dir": str(folder),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    clf.calibration_ = record
    clf.save(folder, weights=False)  # model.json only
    files = write_calibration_report(
        out,
        clf=clf,
        record=record,
        paths=decoded.paths,
        labels=y,
        proba_before=proba_before,
        proba_after=proba_after,
        title=f"Calibration of {folder} on {data}",
    )
    card = write_model_card(folder, clf)
    return CalibrationOutcome(clf, folder, fit, before, after, record, files, card)


__all__ = ["CalibrationOutcome", "calibrate_classifier"]
