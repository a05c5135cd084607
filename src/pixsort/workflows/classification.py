"""Train, evaluate and apply image classifiers: from a data source to a saved model
and its validation report, and back again.

* :func:`train_classifier` - open a labelled source, hold out validation (the
  source's own if usable, else a stratified seeded split of train that keeps each
  patient and each set of copies on one side, :func:`pixsort.data.default_groups`),
  decode, fit, save ``<out>/model`` with its ``MODEL_CARD.md``, write the validation
  evaluation (metrics.json, predictions.csv, plots, report.html) into ``<out>``.
  With ``val_data`` (an external labelled set, e.g. other patients or another site)
  the model is selected and its threshold chosen on that set; the carved split is
  still evaluated (``<out>/carved``) and both sit side by side in the report, with a
  warning when their 95% intervals do not overlap.  With ``lr="auto"`` the
  learning-rate range test goes into metrics.json and the report.  A ``test`` split
  is never read.
* :func:`evaluate_classifier` - a saved model on a labelled source.
* :func:`predict_images` - a saved model on any source; unreadable files are
  reported in the CSV, never fatal.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from pixsort.base.modelfile import model_folder
from pixsort.base.runtime import cpu_description
from pixsort.classify.estimator import ImageClassifier
from pixsort.classify.evaluation import Evaluation, evaluate, predictions_frame, with_skipped
from pixsort.classify.metrics import disagreements
from pixsort.classify.networks import DEFAULT_MODEL
from pixsort.data import (
    Grouping,
    NoUsableImages,
    SourceError,
    carve_validation,
    dedupe,
    default_groups,
    has_usable_validation,
    load_images,
    open_dataset,
)
from pixsort.data.exclude import apply_exclusions
from pixsort.report.classification import write_evaluation
from pixsort.report.files import check_writable, write_csv
from pixsort.report.model_card import write_model_card

CARVED, EXTERNAL = "carved", "external"  # the names of the validation sets
_SET_KEYS = (  # what metrics.json's validation_sets and the model card keep of each set's evaluation
    "split", "data", "n_images", "n_labelled", "n_skipped", "n", "accuracy", "balanced_accuracy", "macro_f1",
    "sensitivity", "specificity", "ppv", "npv", "roc_auc", "pr_auc", "log_loss", "ece", "brier", "threshold",
    "confusion_matrix", "class_names", "per_class", "ci95", "ci_method",
)  # fmt: skip


@dataclass
class TrainOutcome:
    classifier: ImageClassifier
    model_dir: Path
    evaluation: Evaluation  # on the selection set (external when given, else carved)
    decode_seconds: float
    fit_seconds: float
    validation: object = None  # DecodedImages of the carved validation split
    validation_sets: dict[str, Evaluation] = field(default_factory=dict)  # "carved", "external"
    warnings: list[str] = field(default_factory=list)  # the two validations disagree
    grouping: Grouping | None = None
    model_card: Path | None = None


def _native_size(dataset) -> tuple[int, int] | None:
    if dataset.store is not None and dataset.store.refs:
        key, i = dataset.store.refs[0]
        return tuple(int(s) for s in dataset.store.arrays[key][i].shape[:2])
    return None


def _grouping(dataset, groups: bool, group_pattern: str | None, cache_dir, workers, progress) -> Grouping:
    if has_usable_validation(dataset):
        return Grouping(None, "none", note="the source's own validation split is used (nothing carved)")
    if not groups:
        return Grouping(None, "none", note="grouping turned off (--no-groups): a stratified split of single images")
    return default_groups(dataset, pattern=group_pattern, cache_dir=cache_dir, workers=workers, progress=progress)


def _external_set(val_data, class_names: list[str]):
    """The labelled, non-test items of the external set, checked against the training classes."""
    external = open_dataset(val_data)
    if not external.has_labels:
        raise SourceError(f"--val-data {val_data} has no labels: it needs class folders or a label column")
    unknown = sorted(set(external.class_names) - set(class_names))
    if unknown:
        raise SourceError(
            f"--val-data {val_data} has classes the training data lacks: {unknown} (training: {class_names})"
        )
    return external.subset(np.flatnonzero((external.splits != "test") & (external.labels >= 0)))


def _set_metrics(evaluation: Evaluation) -> dict:
    return {k: evaluation.metrics[k] for k in _SET_KEYS if k in evaluation.metrics}


def validation_warnings(sets: dict[str, dict]) -> list[str]:
    """One line per metric whose 95% intervals on the carved and the external validation
    do not overlap (balanced accuracy, ROC-AUC)."""
    if CARVED not in sets or EXTERNAL not in sets:
        return []
    lines = []
    for d in disagreements(sets[CARVED], sets[EXTERNAL]):
        name = {"roc_auc": "ROC-AUC", "balanced_accuracy": "balanced accuracy"}.get(d["metric"], d["metric"])
        lines.append(
            f"carved and external validation disagree on {name}: carved {d['a']:.3f} "
            f"[{d['a_ci95'][0]:.3f}, {d['a_ci95'][1]:.3f}] vs external {d['b']:.3f} "
            f"[{d['b_ci95'][0]:.3f}, {d['b_ci95'][1]:.3f}] (the 95% intervals do not overlap); a split carved "
            "from the training data does not see the shift to other patients or another site"
        )
    return lines


def _counts(labels: np.ndarray, class_names: list[str]) -> dict[str, int]:
    counts = np.bincount(np.asarray(labels)[np.asarray(labels) >= 0], minlength=len(class_names))
    return {name: int(c) for name, c in zip(class_names, counts)}


def train_classifier(
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    model: str = DEFAULT_MODEL,
    *,
    validation_fraction: float = 0.15,
    group_pattern: str | None = None,
    groups: bool = True,
    val_data: str | os.PathLike | None = None,
    exclude: str | os.PathLike | None = None,
    relabel: bool = False,
    dedupe_copies: bool = False,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
    **params,
) -> TrainOutcome:
    """Train ``model`` on the labelled images of ``data``; see the module docstring.

    ``params`` go to :class:`ImageClassifier` (epochs, balance, target_sensitivity...).
    The carved validation split keeps groups on one side: patients (from
    ``group_pattern``, a regex over file names, or else recognised Kaggle chest X-ray
    names) and copies (byte-identical or near-identical images); ``groups=False``
    turns that off.  ``val_data``: an external labelled set for model selection
    (best epoch, early stopping) and the threshold; never trained on.

    ``exclude``: a CSV of an audit (``label_issues.csv``, ``duplicates.csv``, or
    ``audit.csv:COLUMN``; :mod:`pixsort.data.exclude`) whose images are dropped, or with
    ``relabel`` given their ``suggested_label``.  ``dedupe_copies``: keep one image of each
    set of byte-identical or near-identical copies (the copies of the grouping), so no
    copy sits on both sides of the carved split and none is counted twice.
    """
    if relabel and exclude is None:
        raise ValueError("--relabel takes the suggested labels of --exclude CSV: give the CSV")
    if group_pattern is not None and not groups:
        raise ValueError(
            "a group pattern and no grouping contradict each other: give one of --group-pattern, --no-groups"
        )
    out = Path(out_dir)
    params.setdefault("checkpoint_dir", out / "checkpoint")
    clf = ImageClassifier(model, validation_fraction=validation_fraction, progress=progress, **params)
    clf.check_params()
    dataset = open_dataset(data, exclude=[out])
    if not dataset.has_labels:
        raise SourceError(f"{data} has no labels: training needs class folders, labelled arrays or a label column")
    external = _external_set(val_data, dataset.class_names) if val_data is not None else None
    exclusion = None
    if exclude is not None:
        dataset, exclusion = apply_exclusions(dataset, exclude, relabel)
    grouping = _grouping(dataset, groups, group_pattern, cache_dir, workers, progress)
    n_deduped = 0
    if dedupe_copies:
        copies = grouping.copies
        if copies is None:  # no grouping was computed (own val split, --no-groups): the copies alone
            copies = default_groups(
                dataset, patients=False, cache_dir=cache_dir, workers=workers, progress=progress
            ).copies
        before = len(dataset)
        dataset, kept = dedupe(dataset, copies)
        if grouping.groups is not None:
            grouping.groups = grouping.groups[kept]
        n_deduped = before - len(dataset)
    dataset = carve_validation(dataset, validation_fraction, random_state=clf.random_state, groups=grouping.groups)
    keep = (dataset.splits != "test") & (dataset.labels >= 0)  # the test split is never read
    dataset = dataset.subset(np.flatnonzero(keep))
    settings = clf.plan_decode_settings(_native_size(dataset))
    t0 = time.perf_counter()
    decoded = load_images(dataset, settings, cache_dir=cache_dir, workers=workers, progress=progress)
    ext = None
    if external is not None:
        ext = load_images(external, settings, cache_dir=cache_dir, workers=workers, progress=progress)
    decode_seconds = time.perf_counter() - t0
    train, val = decoded.select(decoded.splits == "train"), decoded.select(decoded.splits == "val")
    if len(val) == 0 or len(train) == 0:
        raise SourceError(f"{data}: need usable images in both train and validation (got {len(train)} / {len(val)})")
    classes = decoded.class_names
    if ext is not None:
        ext_labels = _labels_in_order(ext, classes)
        clf.fit(train.images, train.labels, ext.images, ext_labels, classes=classes, decode_settings=settings)
    else:
        clf.fit(train.images, train.labels, val.images, val.labels, classes=classes, decode_settings=settings)

    # each validation set evaluated at the threshold chosen on the selection set
    sets = {}
    carved_proba = clf.val_proba_ if ext is None else clf.predict_proba(val.images)
    carved_extra = {"split": "validation", "data": str(data)}
    sets[CARVED] = evaluate(clf, val.images, val.labels, val.paths, carved_proba, manifest=decoded.manifest,
                            extra=carved_extra)  # fmt: skip
    if ext is not None:
        sets[EXTERNAL] = evaluate(clf, ext.images, ext_labels, ext.paths, clf.val_proba_, manifest=ext.manifest,
                                  extra={"split": "external", "data": str(val_data)})  # fmt: skip
    selection = EXTERNAL if ext is not None else CARVED
    set_metrics = {name: _set_metrics(ev) for name, ev in sets.items()}
    warnings = validation_warnings(set_metrics)
    grouping_info = {**grouping.to_dict(), "description": grouping.describe()}
    counts = {"train": _counts(train.labels, classes), "carved validation": _counts(val.labels, classes)}
    if ext is not None:
        counts["external validation"] = _counts(ext_labels, classes)
    clf.provenance_ = {
        "data": str(data),
        "val_data": None if val_data is None else str(val_data),
        "classes": classes,
        "counts": counts,
        "n_skipped": int((decoded.manifest["status"] == "skipped").sum()),
        "validation_fraction": validation_fraction,
        "grouping": grouping_info,
        "exclusion": None if exclusion is None else exclusion.to_dict(),
        "n_deduped": n_deduped,
        "selection_set": selection,
        "validation_sets": set_metrics,
        "validation_warnings": warnings,
        "decode_seconds": decode_seconds,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu_description(),
        "torch": _torch_version(),
    }
    model_dir = clf.save(out / "model")
    main = sets[selection]
    main.metrics.update(
        {
            "model_dir": str(model_dir),
            "decode_seconds": decode_seconds,
            "fit_seconds": clf.fit_seconds_,
            "n_train": len(train),
            "n_val": len(val),
            "decode": settings.to_dict(),
            "training": clf.training_,
            "grouping": grouping_info,
            "exclusion": None if exclusion is None else exclusion.to_dict(),
            "n_deduped": n_deduped,
            "selection_set": selection,
            "validation_sets": set_metrics,
            "validation_warnings": warnings,
        }
    )
    if clf.lr_finder_ is not None:
        main.metrics["lr_finder"] = clf.lr_finder_
    if ext is not None:
        main.metrics["n_external"] = len(ext)
        write_evaluation(sets[CARVED], clf, val.images, out / CARVED, title=f"{model} on {data}: carved validation")
    images = ext.images if ext is not None else val.images
    name = f"external validation ({val_data})" if ext is not None else "validation"
    write_evaluation(
        main, clf, images, out, title=f"{model} on {data}: {name}", history=clf.history_, lr_finder=clf.lr_finder_
    )
    skipped = decoded.manifest[decoded.manifest["status"] == "skipped"]
    if len(skipped):
        write_csv(skipped, out / "skipped.csv")
    card = write_model_card(model_dir, clf)
    return TrainOutcome(clf, model_dir, main, decode_seconds, clf.fit_seconds_, val, sets, warnings, grouping, card)


def _torch_version() -> str:
    import torch

    return torch.__version__


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
    dataset = open_dataset(data, exclude=[out_dir])
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
    if out_csv is not None:
        check_writable(out_csv)  # before any prediction is computed
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
    return _labels_in_order(decoded, clf.classes_)


def _labels_in_order(decoded, classes: list[str]) -> np.ndarray:
    """Dataset label indices -> indices into ``classes`` (-1 stays unknown)."""
    lookup = {name: classes.index(name) for name in decoded.class_names if name in classes}
    return np.array([lookup.get(decoded.class_names[i], -1) if i >= 0 else -1 for i in decoded.labels], dtype=np.int64)
