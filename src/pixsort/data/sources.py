"""Find the images of a source and their labels: one entry point, one dataset type.

Sources understood by :func:`open_dataset`:

(a) a folder of class folders, searched recursively, optionally below split folders
    ``train/ val/ test/`` (the Kaggle chest X-ray layout);
(b) a flat folder of unlabeled images (files directly in the root are unlabeled);
(c) ``.npz`` files with MedMNIST keys (``train_images``, ``train_labels``, ...) and
    ``.npy`` arrays such as ``trainX.npy`` (N, H, W[, C]) with an optional labels file;
(d) a CSV with a path column and optional label and split columns.

Discovery reads no pixels.  Every regular file found becomes an item, so a file that
later fails to decode is reported in the manifest rather than silently ignored.
"""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
PATH_COLUMNS = ("path", "filepath", "file_path", "file", "filename", "image", "image_path", "img")
LABEL_COLUMNS = ("label", "class", "target", "category", "y")
SPLIT_COLUMNS = ("split", "subset", "fold")
UNLABELED = -1


class SourceError(Exception):
    """The source cannot be used at all (missing path, nothing in it, bad CSV)."""


@dataclass
class ArrayStore:
    """Images kept in arrays: item i lives at ``arrays[key][index]``."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    refs: list[tuple[str, int]] = field(default_factory=list)  # per item: (key, index)


@dataclass
class ImageDataset:
    """The items of one source, before decoding.

    Attributes
    ----------
    root : Path
        What the user named.
    kind : str
        ``folders``, ``flat``, ``arrays`` or ``csv``.
    paths : list of str, length N
        A display path per item (a file path, or ``file.npz:train_images[12]``).
    labels : ndarray of int64, shape (N,)
        Index into ``class_names``; ``-1`` where an item has no label.
    class_names : list of str
    splits : ndarray of object, shape (N,)
        ``train``, ``val``, ``test`` or ``""`` (no split given).
    """

    root: Path
    kind: str
    paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    splits: np.ndarray
    store: ArrayStore | None = None
    # path -> (reason, detail) for items discovery already found unusable (an unreadable folder)
    notes: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def has_labels(self) -> bool:
        return bool((self.labels >= 0).any())

    def label_names(self) -> list[str]:
        return [self.class_names[i] if i >= 0 else "" for i in self.labels]

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageDataset:
        """A dataset of the given items, in the given order."""
        idx = np.asarray(indices, dtype=np.int64)
        store = None
        if self.store is not None:
            store = ArrayStore(self.store.arrays, [self.store.refs[i] for i in idx])
        return ImageDataset(
            root=self.root,
            kind=self.kind,
            paths=[self.paths[i] for i in idx],
            labels=self.labels[idx].copy(),
            class_names=list(self.class_names),
            splits=self.splits[idx].copy(),
            store=store,
            notes=self.notes,
        )

    def split(self, name: str) -> ImageDataset:
        return self.subset(np.flatnonzero(self.splits == name))

    def counts(self) -> pd.DataFrame:
        """Items per split and class (a pivot table, ``unlabeled`` for no label)."""
        frame = pd.DataFrame(
            {
                "split": [s or "(none)" for s in self.splits],
                "class": [n or "(unlabeled)" for n in self.label_names()],
            }
        )
        return frame.groupby(["split", "class"]).size().unstack(fill_value=0)


def open_dataset(
    path: str | os.PathLike,
    *,
    labels: str | os.PathLike | np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    path_column: str | None = None,
    label_column: str | None = None,
    split_column: str | None = None,
    exclude: Sequence[str | os.PathLike] = (),
) -> ImageDataset:
    """Discover the items of a source (no pixels are read).

    Parameters
    ----------
    path : folder, ``.npz``, ``.npy``, ``.csv`` or a single image file
    labels : for ``.npy`` sources, a labels ``.npy`` file or array (N,) or (N, 1);
        found automatically beside ``trainX.npy`` as ``trainy.npy`` / ``trainY.npy``.
    class_names : names for integer labels of array sources (default ``"0"``, ``"1"``...).
    path_column, label_column, split_column : CSV columns (detected by name if omitted).
    exclude : folders never searched (a run's output folder inside its input, so a second
        run does not read the first one's images).

    Raises
    ------
    SourceError
        The path does not exist, or it holds no file at all.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise SourceError(f"path does not exist: {root}")
    suffix = root.suffix.lower()
    if root.is_dir():
        try:
            entries = list(root.iterdir())
        except OSError as exc:
            raise SourceError(f"cannot list {root}: {exc.strerror or exc}") from None
        arrays = sorted(p for p in entries if p.suffix.lower() in (".npz", ".npy") and p.is_file())
        others = [p for p in entries if p.suffix.lower() not in (".npz", ".npy", ".md", ".txt")]
        if arrays and not others:
            return _from_arrays(root, arrays, labels, class_names)
        return _from_folder(root, _real(root, exclude))
    if suffix in (".npz", ".npy"):
        return _from_arrays(root, [root], labels, class_names)
    if suffix in (".csv", ".tsv"):
        return _from_csv(root, path_column, label_column, split_column)
    # a single image file: a dataset of one unlabeled item
    return _make(root.parent, "flat", [str(root)], [None], [""])


# -- folders ---------------------------------------------------------------------------


def _walk_files(folder: Path, notes: dict[str, tuple[str, str]], exclude: tuple[Path, ...] = ()) -> list[Path]:
    """Every non-folder entry below ``folder`` (FIFOs, broken links too: the decoder names
    them); a folder that cannot be listed becomes an entry noted ``unreadable``."""
    files = []

    def unreadable(exc: OSError) -> None:
        where = Path(exc.filename or folder)
        notes[str(where)] = ("unreadable", f"folder cannot be listed ({exc.strerror or exc})")
        files.append(where)

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not _excluded(Path(dirpath) / d, exclude))
        for name in sorted(filenames):
            files.append(Path(dirpath) / name)
    return files


def _real(root: Path, exclude: Sequence[str | os.PathLike]) -> tuple[Path, ...]:
    base = Path(os.path.realpath(root))
    folders = (Path(os.path.realpath(Path(e).expanduser())) for e in exclude)
    return tuple(f for f in folders if f != base)  # excluding the source itself would leave nothing


def _excluded(path: Path, exclude: tuple[Path, ...]) -> bool:
    return bool(exclude) and Path(os.path.realpath(path)) in exclude


def _list(folder: Path, notes: dict[str, tuple[str, str]], exclude: tuple[Path, ...] = ()) -> list[Path] | None:
    try:
        return sorted(p for p in folder.iterdir() if not _excluded(p, exclude))
    except OSError as exc:
        notes[str(folder)] = ("unreadable", f"folder cannot be listed ({exc.strerror or exc})")
        return None


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a symlink loop: an entry the decoder will name
        return False


def _from_folder(root: Path, exclude: tuple[Path, ...] = ()) -> ImageDataset:
    paths: list[str] = []
    label_of: list[str | None] = []
    split_of: list[str] = []
    notes: dict[str, tuple[str, str]] = {}

    def add(path: Path, label: str | None, split: str) -> None:
        paths.append(str(path))
        label_of.append(label)
        split_of.append(split)

    def add_tree(folder: Path, label: str, split: str) -> None:
        for f in _walk_files(folder, notes, exclude):
            add(f, label, split)

    def add_class_tree(base: Path, split: str) -> None:
        entries = _list(base, notes, exclude)
        if entries is None:
            add(base, None, split)
            return
        for entry in entries:
            if _is_dir(entry):
                add_tree(entry, entry.name, split)
            else:  # regular files, and FIFOs, sockets, broken links: skipped by name later
                add(entry, None, split)

    children = _list(root, notes, exclude)
    if children is None:
        raise SourceError(f"cannot list {root}: {notes[str(root)][1]}")
    split_dirs = [c for c in children if _is_dir(c) and c.name.lower() in SPLIT_ALIASES]
    if split_dirs:
        for child in children:
            if child in split_dirs:
                add_class_tree(child, SPLIT_ALIASES[child.name.lower()])
            elif _is_dir(child):
                add_tree(child, child.name, "")
            else:
                add(child, None, "")
    else:
        add_class_tree(root, "")
    if not paths:
        raise SourceError(f"no files found in {root}")
    kind = "folders" if any(label is not None for label in label_of) else "flat"
    dataset = _make(root, kind, paths, label_of, split_of)
    dataset.notes = notes
    return dataset


# -- arrays ----------------------------------------------------------------------------

_NPY_IMAGES = re.compile(r"^(?P<split>[a-z]*?)[_-]?(x|images?|imgs?|data)$", re.IGNORECASE)


def _from_arrays(
    root: Path,
    files: list[Path],
    labels: str | os.PathLike | np.ndarray | None,
    class_names: Sequence[str] | None,
) -> ImageDataset:
    store = ArrayStore()
    paths: list[str] = []
    label_values: list[int | None] = []
    split_of: list[str] = []

    def add(key: str, images: np.ndarray, split: str, y: np.ndarray | None) -> None:
        if images.ndim not in (3, 4):
            raise SourceError(f"{key}: expected images shaped (N, H, W[, C]), got {images.shape}")
        if y is not None:
            y = np.asarray(y).reshape(len(y), -1)
            if y.shape[0] != images.shape[0] or y.shape[1] != 1:
                raise SourceError(f"{key}: labels shaped {y.shape} do not match {images.shape[0]} images")
            y = y[:, 0]
        store.arrays[key] = images
        for i in range(images.shape[0]):
            store.refs.append((key, i))
            paths.append(f"{key}[{i}]")
            label_values.append(None if y is None else int(y[i]))
            split_of.append(split)

    for file in files:
        try:
            if file.suffix.lower() == ".npz":
                with np.load(file, allow_pickle=False) as npz:
                    keys = list(npz.keys())
                    image_keys = [k for k in keys if k.endswith("_images") or k in ("images", "x", "X")]
                    if not image_keys:
                        raise SourceError(f"{file}: no image arrays (keys: {', '.join(keys)})")
                    for k in image_keys:
                        prefix = k[: -len("_images")] if k.endswith("_images") else ""
                        label_key = (
                            f"{prefix}_labels" if prefix else next((c for c in ("labels", "y", "Y") if c in keys), None)
                        )
                        y = npz[label_key] if label_key in keys else None
                        add(f"{file}:{k}", npz[k], SPLIT_ALIASES.get(prefix.lower(), ""), y)
            else:
                stem_match = _NPY_IMAGES.match(file.stem)
                if file.stem.lower().endswith(("y", "labels", "label")) and len(files) > 1:
                    continue  # a labels file beside its images
                images = np.load(file, mmap_mode="r", allow_pickle=False)
                y = None
                if isinstance(labels, np.ndarray):
                    y = labels
                elif labels is not None:
                    y = np.load(labels, allow_pickle=False)
                else:
                    y = _find_npy_labels(file)
                split = SPLIT_ALIASES.get(stem_match.group("split").lower(), "") if stem_match else ""
                add(str(file), images, split, y)
        except SourceError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
            # pickled object arrays (refused: loading them runs code), truncated or corrupt files
            why = "holds pickled objects, which pixsort never loads" if "pickle" in str(exc) else str(exc)
            raise SourceError(f"cannot read {file}: {why}") from None

    if not paths:
        raise SourceError(f"no image arrays found in {root}")
    numeric = sorted({v for v in label_values if v is not None})
    names = list(class_names) if class_names else [str(v) for v in range(max(numeric) + 1)] if numeric else []
    if numeric and (numeric[0] < 0 or numeric[-1] >= len(names)):
        raise SourceError(f"labels range {numeric[0]}..{numeric[-1]} does not fit {len(names)} class names")
    label_arr = np.array([UNLABELED if v is None else v for v in label_values], dtype=np.int64)
    return ImageDataset(root, "arrays", paths, label_arr, names, np.array(split_of, dtype=object), store)


def _find_npy_labels(images_file: Path) -> np.ndarray | None:
    stem = images_file.stem
    candidates = []
    for suffix in ("X", "x", "_images", "images", "_x", "_X"):
        if stem.endswith(suffix):
            base = stem[: -len(suffix)]
            candidates += [base + s for s in ("y", "Y", "_y", "_Y", "_labels", "labels")]
    for name in candidates:
        f = images_file.with_name(name + ".npy")
        if f.exists():
            return np.load(f, allow_pickle=False)
    return None


# -- csv -------------------------------------------------------------------------------


def _from_csv(root: Path, path_column: str | None, label_column: str | None, split_column: str | None) -> ImageDataset:
    try:
        frame = pd.read_csv(root, sep=None, engine="python", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise SourceError(f"cannot read CSV {root}: {exc}") from None
    columns = {c.lower().strip(): c for c in frame.columns}

    def pick(explicit: str | None, candidates: tuple[str, ...], what: str, required: bool) -> str | None:
        if explicit:
            if explicit not in frame.columns:
                raise SourceError(f"{root}: no column {explicit!r} for {what} (columns: {', '.join(frame.columns)})")
            return explicit
        found = next((columns[c] for c in candidates if c in columns), None)
        if found is None and required:
            raise SourceError(
                f"{root}: cannot tell which column holds the image paths; name it with --path-column "
                f"(columns: {', '.join(frame.columns)})"
            )
        return found

    pcol = pick(path_column, PATH_COLUMNS, "paths", True)
    lcol = pick(label_column, LABEL_COLUMNS, "labels", False)
    scol = pick(split_column, SPLIT_COLUMNS, "splits", False)
    if frame.empty:
        raise SourceError(f"{root}: the CSV has no rows")
    base = root.parent
    paths = [str(p if Path(p).is_absolute() else base / p) for p in frame[pcol].str.strip()]
    label_of = [v.strip() or None for v in frame[lcol]] if lcol else [None] * len(paths)
    split_of = [SPLIT_ALIASES.get(v.strip().lower(), "") for v in frame[scol]] if scol else [""] * len(paths)
    return _make(root, "csv", paths, label_of, split_of)


# -- shared ----------------------------------------------------------------------------


def _make(root: Path, kind: str, paths: list[str], label_of: list[str | None], split_of: list[str]) -> ImageDataset:
    names = sorted({label for label in label_of if label is not None})
    lookup = {n: i for i, n in enumerate(names)}
    labels = np.array([lookup[v] if v is not None else UNLABELED for v in label_of], dtype=np.int64)
    return ImageDataset(root, kind, paths, labels, names, np.array(split_of, dtype=object))
