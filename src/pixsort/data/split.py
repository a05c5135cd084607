"""Deterministic, stratified, group-aware train/validation splits, and the groups
(patients, copies) a carved validation split keeps whole (:func:`default_groups`)."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from pixsort.data.similar import DHASH_BITS, DHASH_SETTINGS, NEAR_COPY_DISTANCE
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
    regex = re.compile(pattern)
    ids = []
    for path in dataset.paths:
        name = os.path.basename(path)
        match = regex.search(name)
        ids.append(match.group(0) if match else name)
    return np.array(ids, dtype=object)


# -- default groups: patients where the file names show them, and copies -----------------

KAGGLE_PATIENT_PATTERN = r"(NORMAL2-IM-\d+|IM-\d+|person\d+)"
"""Patient ids in Kaggle chest X-ray file names (``person1430_bacteria_3695.jpeg``,
``IM-0115-0001.jpeg``, ``NORMAL2-IM-0123-0001.jpeg``).  ``NORMAL2-IM-`` comes before
``IM-``: ``NORMAL2-IM-0123`` and ``IM-0123`` are different patients."""
PATTERN_SHARE = 0.8  # the pattern is used when at least this share of the names match


@dataclass
class Grouping:
    """What :func:`default_groups` found.

    Attributes
    ----------
    groups : ndarray of int64 (n,) or None
        A group id per dataset item (None: no grouping); items outside the pool
        (test split, unlabelled) each have their own.
    method : str
        ``patients+copies``, ``copies`` or ``none``.
    pattern : str or None
        The regular expression that gave patient ids, if one did.
    pattern_source : str
        ``kaggle`` (recognised in the names), ``user`` (``--group-pattern``) or ``""``.
    """

    groups: np.ndarray | None
    method: str
    pattern: str | None = None
    pattern_source: str = ""
    n_items: int = 0
    n_named: int = 0  # pooled names the pattern matched
    n_patient_groups: int = 0
    n_exact_copy_groups: int = 0  # sets of >= 2 byte-identical files
    n_exact_copies: int = 0  # files beyond the first of each such set
    n_near_copy_pairs: int = 0  # pairs within near_distance bits that are not byte-identical
    n_copy_groups: int = 0  # sets of >= 2 files joined by exact or near copies
    n_copy_groups_across_patients: int = 0  # copy sets spanning more than one patient id
    n_groups: int = 0  # groups after the union
    near_distance: int = NEAR_COPY_DISTANCE
    hash_bits: int = DHASH_BITS
    n_unhashed: int = 0  # pooled files that could not be decoded for the hash
    note: str = ""  # why there is no grouping, when there is none
    copies: np.ndarray | None = None  # copy set per dataset item (-1: no copy), when copies were looked for

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("groups")
        d.pop("copies")
        return d

    def describe(self) -> str:
        """One line for reports and the model card."""
        if self.method == "none":
            return self.note or "no grouping"
        parts = []
        if self.pattern:
            who = "Kaggle chest X-ray file names" if self.pattern_source == "kaggle" else "--group-pattern"
            parts.append(f"{self.n_patient_groups} patients (ids from {who}: {self.pattern})")
        if "copies" in self.method:
            near = f"{self.hash_bits}-bit dHash within {self.near_distance} bits"
            parts.append(
                f"{self.n_copy_groups} set{'' if self.n_copy_groups == 1 else 's'} of copies "
                f"({self.n_exact_copy_groups} byte-identical, "
                f"{self.n_near_copy_pairs} near-identical pairs: {near})"
            )
        return f"{self.n_groups} groups of {self.n_items} images: " + "; ".join(parts)


def dedupe(dataset: ImageDataset, copies: np.ndarray) -> tuple[ImageDataset, np.ndarray]:
    """Keep one item of each copy set (``copies``: set id per item, -1 none; the first
    item of a set is kept): ``(the dataset of the kept items, their positions)``."""
    c = np.asarray(copies)
    keep = (c < 0) | ~pd.Series(c).duplicated().to_numpy()
    pos = np.flatnonzero(keep)
    return dataset.subset(pos), pos


def patient_pattern(dataset: ImageDataset, pool: np.ndarray | None = None, share: float = PATTERN_SHARE) -> str | None:
    """:data:`KAGGLE_PATIENT_PATTERN` when at least ``share`` of the file names of the
    ``pool`` items (default: all) match it, else None."""
    names = [os.path.basename(dataset.paths[i]) for i in (range(len(dataset)) if pool is None else pool)]
    if not names:
        return None
    regex = re.compile(KAGGLE_PATIENT_PATTERN)
    matched = sum(1 for name in names if regex.search(name))
    return KAGGLE_PATIENT_PATTERN if matched >= share * len(names) else None


def default_groups(
    dataset: ImageDataset,
    *,
    pattern: str | None = None,
    patients: bool = True,
    copies: bool = True,
    near_distance: int = NEAR_COPY_DISTANCE,
    cache_dir=None,
    workers: int | None = None,
    progress: bool = False,
) -> Grouping:
    """The groups a validation split carved from ``dataset`` should keep whole.

    The pool is what :func:`carve_validation` splits and training reads: the labelled
    items outside ``test``.  Within it:

    * patients: ids from ``pattern`` (a regex over file names), or, when ``pattern`` is
      None and ``patients`` is True, from :data:`KAGGLE_PATIENT_PATTERN` if at least
      80% of the names match it; a name that does not match is its own patient;
    * copies (``copies``): byte-identical files (the content hash) and near-identical
      ones (:func:`pixsort.data.similar.dhash` within ``near_distance`` bits), decoded
      at 17 x 16 through the decoded-image cache (``cache_dir``);
    * the groups are the union of both (an image and its copy stay with the copy's
      patient, so whole patients may merge).
    """
    from pixsort.data.load import NoUsableImages, load_images
    from pixsort.data.similar import dhash, label_pairs, near_pairs, union_groups

    n = len(dataset)
    pool = np.flatnonzero((dataset.splits != "test") & (dataset.labels >= 0))
    if pattern is None and patients:
        pattern, source = patient_pattern(dataset, pool), "kaggle"
    else:
        source = "user" if pattern is not None else ""
    if pattern is None and not copies:
        return Grouping(None, "none", n_items=len(pool))
    m = len(pool)
    links = []
    named = n_patients = 0
    patient_ids = None
    if pattern is not None:
        regex = re.compile(pattern)
        matches = [regex.search(os.path.basename(dataset.paths[i])) for i in pool]
        named = sum(1 for match in matches if match)
        patient_ids = [match.group(0) if match else f"\0{k}" for k, match in enumerate(matches)]
        links.append(label_pairs(patient_ids))
        n_patients = len(set(patient_ids))

    exact_groups = exact_copies = near_count = unhashed = 0
    copy_links = []
    if copies and m:
        sub = dataset.subset(pool)
        try:
            decoded = load_images(sub, DHASH_SETTINGS, cache_dir=cache_dir, workers=workers, progress=progress)
            manifest, hashed, pixels = decoded.manifest, decoded.index, decoded.images
        except NoUsableImages as exc:
            manifest, hashed, pixels = exc.manifest, np.zeros(0, np.int64), None
        content = manifest["content_hash"].to_numpy(dtype=object)
        exact = label_pairs(content)
        sizes = pd.Series(content[content != ""]).value_counts()
        exact_groups, exact_copies = int((sizes > 1).sum()), int((sizes[sizes > 1] - 1).sum())
        copy_links.append(exact)
        unhashed = m - len(hashed)
        if len(hashed) > 1:
            i, j = near_pairs(dhash(np.asarray(pixels)), near_distance)
            i, j = hashed[i], hashed[j]
            near = content[i] != content[j]
            near_count = int(near.sum())
            copy_links.append((i[near], j[near]))
    copy_sets = union_groups(m, *copy_links) if copy_links else np.arange(m)
    set_sizes = np.bincount(copy_sets, minlength=m) if m else np.zeros(0, np.int64)
    n_copy_groups = int((set_sizes > 1).sum())
    across = 0
    if patient_ids is not None and n_copy_groups:
        frame = pd.DataFrame({"set": copy_sets, "patient": patient_ids})
        across = int((frame.groupby("set")["patient"].nunique() > 1).sum())

    copies_of = np.full(n, -1, dtype=np.int64)
    if m:
        copies_of[pool] = np.where(set_sizes[copy_sets] > 1, copy_sets, -1)
    pooled = union_groups(m, *links, *copy_links)
    groups = np.arange(n, dtype=np.int64) + (int(pooled.max()) + 1 if m else 0)  # the rest: one each
    groups[pool] = pooled
    return Grouping(
        groups,
        "patients+copies" if pattern is not None and copies else ("patients" if pattern is not None else "copies"),
        pattern=pattern,
        pattern_source=source if pattern is not None else "",
        n_items=m,
        n_named=named,
        n_patient_groups=n_patients,
        n_exact_copy_groups=exact_groups,
        n_exact_copies=exact_copies,
        n_near_copy_pairs=near_count,
        n_copy_groups=n_copy_groups,
        n_copy_groups_across_patients=across,
        n_groups=int(len(np.unique(pooled))),
        near_distance=int(near_distance),
        n_unhashed=int(unhashed),
        copies=copies_of if copies else None,
    )
