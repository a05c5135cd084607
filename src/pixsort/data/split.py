"""Deterministic, stratified, group-aware train/validation splits."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from pixsort.data.sources import ImageDataset

MIN_VAL_ITEMS = 50
MIN_VAL_PER_CLASS = 5


def has_usable_validation(dataset: ImageDataset) -> bool:
    """True when the source's own ``val`` split is big enough to select models on.

    The Kaggle chest X-ray val split (16 images) is not: metrics on it move by 6%
    per image.  We want at least ``MIN_VAL_ITEMS`` items and, for labelled data,
    ``MIN_VAL_PER_CLASS`` of every class present in train.
    """
    val = dataset.splits == "val"
    if val.sum() < MIN_VAL_ITEMS:
        return False
    if not dataset.has_labels:
        return True
    train_classes = np.unique(dataset.labels[(dataset.splits == "train") & (dataset.labels >= 0)])
    val_counts = np.bincount(dataset.labels[val & (dataset.labels >= 0)], minlength=len(dataset.class_names))
    return bool(all(val_counts[c] >= MIN_VAL_PER_CLASS for c in train_classes))


def holdout(
    labels: np.ndarray | None,
    fraction: float,
    random_state: int = 0,
    groups: np.ndarray | list | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted positions ``(train, val)`` of a seeded, stratified, group-aware holdout.

    The one holdout of the package: :func:`carve_validation` uses it for sources and
    ``ImageClassifier.fit`` for arrays.

    Parameters
    ----------
    labels : ndarray of int, shape (n,), or None
        Class per item (``-1`` unknown).  Stratified only when every item is labelled
        and each class can give one item to each side.
    fraction : float in (0, 1)
        Share held out.
    random_state : int
    groups : array of shape (n,), optional
        One id per item (a patient, a content hash): each group stays on one side
        (``StratifiedGroupKFold`` with ``round(1 / fraction)`` folds, first fold).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    n = len(labels) if labels is not None else len(groups)
    if n < 2:
        raise ValueError("too few items to carve a validation split")
    pool = np.arange(n)
    y = np.asarray(labels, dtype=np.int64) if labels is not None else np.full(n, -1, dtype=np.int64)
    stratify = y if (y >= 0).all() and np.unique(y, return_counts=True)[1].min() >= 2 else None
    if groups is not None:
        folds = StratifiedGroupKFold(n_splits=max(2, round(1 / fraction)), shuffle=True, random_state=random_state)
        target = y if stratify is not None else np.zeros(n, dtype=np.int64)
        train, val = next(folds.split(pool, target, np.asarray(groups, dtype=object).astype(str)))
    else:
        train, val = train_test_split(pool, test_size=fraction, random_state=random_state, stratify=stratify)
    return np.sort(train), np.sort(val)


def carve_validation(
    dataset: ImageDataset,
    fraction: float = 0.15,
    random_state: int = 0,
    groups: np.ndarray | list | None = None,
) -> ImageDataset:
    """Return a copy whose ``splits`` hold a usable validation split.

    If the source has a usable ``val`` split it is kept.  Otherwise every item that
    is not ``test`` (train, a too-small val, and items with no split) is pooled and a
    stratified ``fraction`` of it becomes ``val`` (:func:`holdout`), the rest
    ``train``.  Test items are never touched.  The same seed always gives the same
    split.

    ``groups`` (one id per item: a patient id, a content hash) keeps each group on
    one side, so near-copies of a validation image never sit in train; see
    :func:`groups_from_pattern`.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    out = dataset.subset(np.arange(len(dataset)))
    if has_usable_validation(dataset):
        out.splits[out.splits == ""] = "train"
        return out
    pool = np.flatnonzero(out.splits != "test")
    pool_groups = None if groups is None else np.asarray(groups, dtype=object)[pool]
    _, val_pos = holdout(out.labels[pool], fraction, random_state, pool_groups)
    out.splits[pool] = "train"
    out.splits[pool[val_pos]] = "val"
    return out


def groups_from_pattern(dataset: ImageDataset, pattern: str) -> np.ndarray:
    """Group ids from a regular expression over file names (first match, or the name).

    For the Kaggle chest X-ray names (``person1430_bacteria_3695.jpeg``,
    ``IM-0115-0001.jpeg``), ``r"(person\\d+|IM-\\d+|NORMAL2-IM-\\d+)"`` gives patient ids.
    """
    import os
    import re

    regex = re.compile(pattern)
    ids = []
    for path in dataset.paths:
        name = os.path.basename(path)
        match = regex.search(name)
        ids.append(match.group(0) if match else name)
    return np.array(ids, dtype=object)
