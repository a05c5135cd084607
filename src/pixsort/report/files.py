"""Writing tables and JSON into an output folder: one writer for each, used by every report."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from pixsort.base.jsonio import dumps


def write_csv(frame: pd.DataFrame, path: str | os.PathLike, index: bool = False) -> Path:
    """``frame`` as CSV at ``path`` (folder created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=index)
    return path


def write_json(value, path: str | os.PathLike) -> Path:
    """``value`` as indented JSON (numpy values made plain) at ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(value), encoding="utf-8")
    return path


__all__ = ["write_csv", "write_json"]
