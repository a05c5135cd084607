"""Deterministic, stratified train/validation splits."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

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


def carve_validation(dataset: ImageDataset, fraction: float = 0.15, seed: int = 0) -> ImageDataset:
    """Return a copy whose ``splits`` hold a usable validation split.

    If the source has a usable ``val`` split it is kept.  Otherwise every item that
    is not ``test`` (train, a too-small val, and items with no split) is pooled and a
    stratified ``fraction`` of it becomes ``val``, the rest ``train``.  Test items are
    never touched.  The same seed always gives the same split.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    out = dataset.subset(np.arange(len(dataset)))
    if has_usable_validation(dataset):
        out.splits[out.splits == ""] = "train"
        return out
    pool = np.flatnonzero(out.splits != "test")
    if len(pool) < 2:
        raise ValueError("too few items to carve a validation split")
    labels = out.labels[pool]
    stratify = labels if (labels >= 0).all() and np.bincount(labels).min(initial=0) >= 2 else None
    _, val_idx = train_test_split(pool, test_size=fraction, random_state=seed, stratify=stratify)
    out.splits[pool] = "train"
    out.splits[val_idx] = "val"
    return out
