"""Close the loop after an audit: drop or relabel the images a CSV lists
(``pixsort train --exclude audit/label_issues.csv``).

The CSV needs a ``path`` column.  ``FILE.csv:COLUMN`` takes only the rows where that
column is true (``audit.csv:label_issue``, ``audit.csv:blurry``); a CSV with a ``keep``
column (``duplicates.csv``) takes the rows where it is false (every copy but the first
of each group).  Relabelling takes the ``suggested_label`` column.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pixsort.data.sources import ImageDataset, SourceError

TRUE = {"true", "1", "yes", "y", "t"}


@dataclass
class Exclusion:
    """What an exclusion list did: items dropped or relabelled, and listed paths not in the data."""

    source: str
    relabel: bool
    n_listed: int = 0
    n_dropped: int = 0
    n_relabelled: int = 0
    not_found: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "relabel": self.relabel,
            "n_listed": self.n_listed,
            "n_dropped": self.n_dropped,
            "n_relabelled": self.n_relabelled,
            "n_not_found": len(self.not_found),
        }


def read_exclusions(spec: str | os.PathLike) -> pd.DataFrame:
    """The rows of ``FILE.csv`` or ``FILE.csv:COLUMN`` (see the module notes) with path
    and, where the CSV has one, suggested_label."""
    text = str(spec)
    column = None
    if not Path(text).is_file() and ":" in text:
        text, column = text.rsplit(":", 1)
    if not Path(text).is_file():
        raise SourceError(f"exclusion list not found: {text}")
    frame = pd.read_csv(text, dtype=str, keep_default_na=False)
    if "path" not in frame.columns:
        raise SourceError(f"{text} has no 'path' column (columns: {', '.join(frame.columns)})")
    if column is not None:
        if column not in frame.columns:
            raise SourceError(f"{text} has no column {column!r} (columns: {', '.join(frame.columns)})")
        frame = frame[frame[column].str.strip().str.lower().isin(TRUE)]
    elif "keep" in frame.columns:
        frame = frame[~frame["keep"].str.strip().str.lower().isin(TRUE)]
    return frame.reset_index(drop=True)


def _key(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def apply_exclusions(dataset: ImageDataset, spec: str | os.PathLike, relabel: bool = False):
    """``(dataset without the listed items, or with their suggested labels; Exclusion)``."""
    rows = read_exclusions(spec)
    info = Exclusion(str(spec), relabel, n_listed=len(rows))
    where = {_key(p): i for i, p in enumerate(dataset.paths)}
    listed = [(where.get(_key(p)), p, s) for p, s in zip(rows["path"], rows.get("suggested_label", [""] * len(rows)))]
    info.not_found = [p for i, p, _ in listed if i is None]
    hits = [(i, s) for i, _, s in listed if i is not None]
    if not relabel:
        drop = np.zeros(len(dataset), bool)
        drop[[i for i, _ in hits]] = True
        info.n_dropped = int(drop.sum())
        return dataset.subset(np.flatnonzero(~drop)), info
    if "suggested_label" not in rows.columns:
        raise SourceError(f"{spec}: relabelling needs a 'suggested_label' column (label_issues.csv has one)")
    out = dataset.subset(np.arange(len(dataset)))
    for i, label in hits:
        if label not in out.class_names:
            raise SourceError(f"{spec}: suggested label {label!r} is not a class of the data ({out.class_names})")
        new = out.class_names.index(label)
        info.n_relabelled += int(out.labels[i] != new)
        out.labels[i] = new
    return out, info


__all__ = ["Exclusion", "apply_exclusions", "read_exclusions"]
