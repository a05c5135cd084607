"""Train, evaluate and apply image classifiers: from a data source to a saved model
and its validation report, and back again.

* :func:`train_classifier` - open a labelled source, hold out validation (the
  source's own if usable, else a stratified seeded split of train, optionally
  grouped by patient), decode, fit, save ``<out>/model``, write the validation
  evaluation (metrics.json, predictions.csv, plots, report.html) into ``<out>``.
  A ``test`` split is never read.
* :func:`evaluate_classifier` - a saved model on a labelled source.
* :func:`predict_images` - a saved model on any source; unreadable files are
  reported in the CSV, never fatal.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pixsort.base.modelfile import model_folder
from pixsort.classify.estimator import ImageClassifier
from pixsort.classify.evaluation import Evaluation, evaluate, predictions_frame, with_skipped
from pixsort.data import NoUsableImages, SourceError, carve_validation, load_images, open_dataset
from pixsort.data.split import groups_from_pattern
from pixsort.report.classification import write_evaluation
from pixsort.report.files import write_csv


@dataclass
class TrainOutcome:
    classifier: ImageClassifier
    model_dir: Path
    evaluation: Evaluation
    decode_seconds: float
    fit_seconds: float
    validation: object = None  # DecodedImages of the validation split


def _native_size(dataset) -> tuple[int, int] | None:
    if dataset.store is not None and dataset.store.refs:
        key, i = dataset.store.refs[0]
        return tuple(int(s) for s in dataset.store.arrays[key][i].shape[:2])
    return None


def train_classifier(
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    model: str = "seed-cnn",
    *,
    validation_fraction: float = 0.15,
    group_pattern: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
    **params,
) -> TrainOutcome:
    """Train ``model`` on the labelled images of ``data``; see the module docstring.

    ``params`` go to :class:`ImageClassifier` (epochs, balance, target_sensitivity...).
    ``group_pattern`` (a regex over file names, e.g. a patient id) keeps each group
    on one side of the validation split.
    """
    out = Path(out_dir)
    params.setdefault("checkpoint_dir", out / "checkpoint")
    clf = ImageClassifier(model, validation_fraction=validation_fraction, progress=progress, **params)
    clf.check_params()
    dataset = open_dataset(data)
    if not dataset.has_labels:
        raise SourceError(f"{data} has no labels: training needs class folders, labelled arrays or a label column")
    groups = groups_from_pattern(dataset, group_pattern) if group_pattern else None
    dataset = carve_validation(dataset, validation_fraction, random_state=clf.random_state, groups=groups)
    keep = (dataset.splits != "test") & (dataset.labels >= 0)  # the test split is never read
    dataset = dataset.subset(np.flatnonzero(keep))
    settings = clf.plan_decode_settings(_native_size(dataset))
    t0 = time.perf_counter()
    decoded = load_images(dataset, settings, cache_dir=cache_dir, workers=workers, progress=progress)
    decode_seconds = time.perf_counter() - t0
    train, val = decoded.select(decoded.splits == "train"), decoded.select(decoded.splits == "val")
    if len(val) == 0 or len(train) == 0:
        raise SourceError(f"{data}: need usable images in both train and validation (got {len(train)} / {len(val)})")
    clf.fit(train.images, train.labels, val.images, val.labels, classes=decoded.class_names, decode_settings=settings)
    model_dir = clf.save(out / "model")
    extra = {
        "split": "validation",
        "model_dir": str(model_dir),
        "decode_seconds": decode_seconds,
        "fit_seconds": clf.fit_seconds_,
        "n_train": len(train),
        "n_val": len(val),
        "decode": settings.to_dict(),
        "training": clf.training_,
    }
    manifest = decoded.manifest
    evaluation = evaluate(clf, val.images, val.labels, val.paths, clf.val_proba_, manifest=manifest, extra=extra)
    write_evaluation(evaluation, clf, val.images, out, title=f"{model} on {data}: validation", history=clf.history_)
    skipped = manifest[manifest["status"] == "skipped"]
    if len(skipped):
        write_csv(skipped, out / "skipped.csv")
    return TrainOutcome(clf, model_dir, evaluation, decode_seconds, clf.fit_seconds_, val)


def _load(model: str | os.PathLike | ImageClassifier, device: str | None = None) -> ImageClassifier:
    """A saved (or given) classifier, on ``device`` when one is named."""
    if isinstance(model, ImageClassifier):
        if device is not None:
            model.set_params(device=device).check_params()
        return model
    return ImageClassifier.load(model_folder(model), device=device or "auto")


def evaluate_classifier(
    model: str | os.PathLike | ImageClassifier,
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    split: str = "auto",
    tta: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
    device: str | None = None,
) -> Evaluation:
    """Evaluate a saved model on the labelled images of ``data``.

    ``split``: ``auto`` (``test`` if the source has one, else every item), ``all``,
    or a split name (``train``, ``val``, ``test``).  ``device`` (``auto``, ``cpu``,
    ``cuda``, ``mps``): where the model runs (default ``auto``).
    """
    clf = _load(model, device)
    if tta is not None:
        clf.tta = tta
    dataset = open_dataset(data)
    if split == "auto":
        split = "test" if (dataset.splits == "test").any() else "all"
    if split != "all":
        if not (dataset.splits == split).any():
            raise SourceError(f"{data} has no {split!r} split (splits: {sorted(set(dataset.splits) - {''})})")
        dataset = dataset.split(split)
    _check_classes(dataset, clf)
    decoded = load_images(dataset, clf.decode_settings, cache_dir=cache_dir, workers=workers, progress=progress)
    labels = _labels_in_model_order(decoded, clf)
    t0 = time.perf_counter()
    proba = clf.predict_proba(decoded.images)
    seconds = time.perf_counter() - t0
    extra = {
        "split": split,
        "data": str(data),
        "inference_seconds": seconds,
        "images_per_second": len(decoded) / seconds if seconds > 0 else None,
    }
    evaluation = evaluate(clf, decoded.images, labels, decoded.paths, proba, manifest=decoded.manifest, extra=extra)
    return write_evaluation(evaluation, clf, decoded.images, out_dir, title=f"Evaluation on {data} ({split})")


def predict_images(
    model: str | os.PathLike | ImageClassifier,
    images: str | os.PathLike,
    out_csv: str | os.PathLike | None = None,
    *,
    tta: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
    device: str | None = None,
) -> pd.DataFrame:
    """Predict every image of a source (file, folder, CSV, arrays).

    Returns (and writes to ``out_csv``) one row per item: ``path``, ``status``
    (``loaded`` / ``skipped``), ``predicted``, ``confidence``, ``p_<class>``,
    ``reason`` (why an item was skipped), and ``true`` / ``correct`` where the
    source carries labels the model knows.  ``device``: as for :func:`evaluate_classifier`.
    """
    clf = _load(model, device)
    if tta is not None:
        clf.tta = tta
    dataset = open_dataset(images)
    try:
        decoded = load_images(dataset, clf.decode_settings, cache_dir=cache_dir, workers=workers, progress=progress)
    except NoUsableImages as exc:  # every item is reported as skipped
        frame = with_skipped(
            predictions_frame([], np.zeros((0, len(clf.classes_))), clf.classes_, clf.threshold_), exc.manifest
        )
    else:
        labels = None
        if dataset.has_labels and set(dataset.class_names) <= set(clf.classes_):
            labels = _labels_in_model_order(decoded, clf)
        proba = clf.predict_proba(decoded.images)
        frame = with_skipped(
            predictions_frame(decoded.paths, proba, clf.classes_, clf.threshold_, labels), decoded.manifest
        )
    if out_csv is not None:
        write_csv(frame, out_csv)
    return frame


def _check_classes(dataset, clf: ImageClassifier) -> None:
    if not dataset.has_labels:
        raise SourceError(
            "evaluation needs labels (class folders, labelled arrays or a label column); "
            "use predict for unlabelled images"
        )
    unknown = sorted(set(dataset.class_names) - set(clf.classes_))
    if unknown:
        raise SourceError(f"the data has classes the model does not know: {unknown} (model: {clf.classes_})")


def _labels_in_model_order(decoded, clf: ImageClassifier) -> np.ndarray:
    """Dataset label indices -> the model's class indices (-1 stays unknown)."""
    lookup = {name: clf.classes_.index(name) for name in decoded.class_names if name in clf.classes_}
    return np.array([lookup.get(decoded.class_names[i], -1) if i >= 0 else -1 for i in decoded.labels], dtype=np.int64)
