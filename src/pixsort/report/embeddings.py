"""Writing an embedding set (the folder :mod:`pixsort.features.store` reads): vectors
streamed into ``vectors.npy`` a chunk at a time, then ``items.csv`` and, last,
``store.json`` (so a set without ``store.json`` is an unfinished one)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from pixsort.data.cache import hash_file
from pixsort.features.store import ITEM_COLUMNS, STORE_FORMAT, STORE_KIND
from pixsort.report.files import write_csv, write_json


class EmbeddingSetWriter:
    """Write ``n`` vectors of width ``dim`` into ``folder`` in order, then :meth:`close`.

    Memory stays at one chunk: rows go straight into a memory-mapped ``.npy``.
    """

    def __init__(self, folder: str | os.PathLike, n: int, dim: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "store.json").unlink(missing_ok=True)  # the old set, if any, is no longer complete
        self._path = self.folder / "vectors.npy"
        self._vectors = np.lib.format.open_memmap(self._path, mode="w+", dtype=np.float32, shape=(n, dim))
        self._row = 0

    def write(self, vectors: np.ndarray) -> None:
        end = self._row + len(vectors)
        self._vectors[self._row : end] = vectors
        self._row = end

    def close(self, items: pd.DataFrame, meta: dict) -> Path:
        """Flush the vectors, write ``items.csv`` and ``store.json``; returns the folder."""
        if self._row != len(self._vectors):
            raise ValueError(f"{self._row} of {len(self._vectors)} vectors written")
        self._vectors.flush()
        del self._vectors
        write_csv(items[ITEM_COLUMNS], self.folder / "items.csv")
        n, dim = np.load(self._path, mmap_mode="r").shape
        write_json(
            {
                "kind": STORE_KIND,
                "format": STORE_FORMAT,
                "n": n,
                "dim": dim,
                "checksum": hash_file(self._path),
                **meta,
            },
            self.folder / "store.json",
        )
        return self.folder


__all__ = ["EmbeddingSetWriter"]
