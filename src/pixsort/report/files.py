"""Writing tables and JSON into an output folder: one writer for each, used by every report."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from pixsort.base.cells import FORMULA_PREFIXES, neutralise_cell
from pixsort.base.errors import OutputPathError
from pixsort.base.jsonio import dumps


def _neutralised(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(neutralise_cell)
    out.columns = out.columns.map(lambda c: neutralise_cell(c) if isinstance(c, str) else c)
    if isinstance(out.index, pd.MultiIndex):
        out.index = pd.MultiIndex.from_tuples(
            [tuple(neutralise_cell(v) for v in t) for t in out.index], names=out.index.names
        )
    elif out.index.dtype == object or pd.api.types.is_string_dtype(out.index):
        out.index = out.index.map(neutralise_cell)
    return out


def write_csv(frame: pd.DataFrame, path: str | os.PathLike, index: bool = False) -> Path:
    """``frame`` as CSV at ``path`` (folder created); returns the path.

    The one CSV writer of pixsort: text cells a spreadsheet would run as a formula
    (starting with ``= + - @``, a tab or a carriage return) get a leading ``'``.
    The file is UTF-8: bytes of a file name that are not UTF-8 (held by Python as
    surrogates) are written as ``\\udcXX`` escapes rather than failing the write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _neutralised(frame).to_csv(path, index=index, errors="backslashreplace")
    return path


def check_writable(path: str | os.PathLike) -> Path:
    """Raise :class:`OutputPathError` unless a file can be written at ``path`` (checked before
    the work whose result it will hold: a long run must not fail at its last step)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputPathError(f"{path} is a folder: give a file name (e.g. {path / 'out.csv'})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with open(path, "a"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        raise OutputPathError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def check_writable_folder(folder: str | os.PathLike) -> Path:
    """Raise :class:`OutputPathError` unless files can be written in ``folder`` (created
    if missing), checked before the work whose results it will hold."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"{folder} is a file: give a folder for the outputs")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".pixsort-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputPathError(f"cannot write in {folder}: {exc.strerror or exc}") from None
    return folder


def write_json(value, path: str | os.PathLike) -> Path:
    """``value`` as indented JSON (numpy values made plain) at ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(value), encoding="utf-8")
    return path


__all__ = ["FORMULA_PREFIXES", "check_writable", "check_writable_folder", "neutralise_cell", "write_csv", "write_json"]
