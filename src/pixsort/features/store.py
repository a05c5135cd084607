"""Embedding sets: the vectors of a source written by ``pixsort embed``, with the paths,
labels and provenance needed to cluster them elsewhere and later.

A set is a folder (written by :mod:`pixsort.report.embeddings`):

``vectors.npy``
    float32 ``(n, D)``, one row per usable image (memory-mapped on read).
``items.csv``
    one row per input item: ``row`` (into ``vectors.npy``, empty when skipped), path,
    label, split, status, reason, width, height, mode, content_hash.
``store.json``
    what made the vectors (extractor config and id, feature settings, decode settings),
    ``n``, ``dim``, the class names and a blake2b checksum of ``vectors.npy``.

Readable without pixsort: ``np.load("vectors.npy", mmap_mode="r")`` and
``pd.read_csv("items.csv")``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from pixsort.base.cells import restore_utf8_text
from pixsort.data.cache import hash_file
from pixsort.data.decode import DecodeSettings

STORE_KIND = "pixsort-embeddings"
STORE_FORMAT = 1
ITEM_COLUMNS = ["row", "path", "label", "split", "status", "reason", "width", "height", "mode", "content_hash"]
# FeatureSpec fields recorded with the vectors; the clusterer's own parameters must match them
FEATURE_FIELDS = ("name", "layers", "tta")


class EmbeddingSetError(ValueError):
    """A folder that is not a complete, intact embedding set."""


@dataclass
class EmbeddingSet:
    """The usable images of a source as vectors, and what is known about them.

    Attributes
    ----------
    vectors : ndarray of float32, shape (n, D)
        Read-only memmap.
    items : DataFrame
        One row per input item (skipped ones included), columns :data:`ITEM_COLUMNS`.
    meta : dict
        ``store.json``.
    folder : Path
    """

    vectors: np.ndarray
    items: pd.DataFrame
    meta: dict
    folder: Path

    def __len__(self) -> int:
        return len(self.vectors)

    @cached_property
    def used(self) -> pd.DataFrame:
        """The items with a vector, in the order of ``vectors``."""
        rows = self.items[self.items["status"] == "loaded"]
        return rows.sort_values("row", kind="stable")

    @property
    def paths(self) -> list[str]:
        return self.used["path"].astype(str).tolist()

    @property
    def keys(self) -> list[str]:
        return self.used["content_hash"].astype(str).tolist()

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("class_names") or [])

    @property
    def labels(self) -> np.ndarray:
        """int64 (n,): index into ``class_names``, -1 where unknown."""
        index = {name: i for i, name in enumerate(self.class_names)}
        return np.array([index.get(v, -1) for v in self.used["label"].fillna("").astype(str)], dtype=np.int64)

    @property
    def decode_settings(self) -> DecodeSettings:
        return DecodeSettings.from_dict(self.meta["decode"])

    @property
    def extractor_config(self) -> dict:
        return self.meta["extractor"]

    @property
    def feature_settings(self) -> dict:
        """``{"name", "layers", "tta"}`` as the vectors were made (``features=name`` for
        an :class:`~pixsort.cluster.images.ImageClusterer`)."""
        return dict(self.meta["features"])


def read_embedding_set(path: str | os.PathLike, *, verify: bool = True) -> EmbeddingSet:
    """Open the embedding set in folder ``path``; :class:`EmbeddingSetError` naming the
    problem when it is incomplete, of another kind or damaged (``verify`` checks the
    vectors' checksum: one sequential read)."""
    folder = Path(path)
    meta_path = folder / "store.json"
    if not meta_path.is_file():
        raise EmbeddingSetError(f"no embedding set at {folder} (store.json not found; write one with `pixsort embed`)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EmbeddingSetError(f"{meta_path}: not readable JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("kind") != STORE_KIND:
        raise EmbeddingSetError(f"{meta_path}: not a pixsort embedding set")
    if int(meta.get("format", 0)) > STORE_FORMAT:
        raise EmbeddingSetError(f"{meta_path}: format {meta['format']} is newer than this pixsort reads")
    missing = {"n", "dim", "checksum", "extractor", "features", "decode"} - set(meta)
    if missing:
        raise EmbeddingSetError(f"{meta_path}: missing {sorted(missing)}")
    vectors_path = folder / "vectors.npy"
    try:
        if verify and hash_file(vectors_path) != meta["checksum"]:
            raise EmbeddingSetError(f"{vectors_path}: checksum mismatch (the file changed since it was written)")
        vectors = np.load(vectors_path, mmap_mode="r", allow_pickle=False)
        items = pd.read_csv(
            folder / "items.csv", dtype={"label": str, "split": str, "reason": str}, keep_default_na=False
        )
    except (OSError, ValueError) as exc:
        raise EmbeddingSetError(f"{folder}: unreadable embedding set ({exc})") from None
    if vectors.dtype != np.float32 or vectors.shape != (int(meta["n"]), int(meta["dim"])):
        raise EmbeddingSetError(
            f"{vectors_path}: {vectors.dtype} {vectors.shape}, store.json says float32 ({meta['n']}, {meta['dim']})"
        )
    absent = set(ITEM_COLUMNS) - set(items.columns)
    if absent:
        raise EmbeddingSetError(f"{folder / 'items.csv'}: missing columns {sorted(absent)}")
    loaded = items[items["status"] == "loaded"]
    rows = pd.to_numeric(loaded["row"], errors="coerce")
    if len(loaded) != len(vectors) or sorted(rows.tolist()) != list(range(len(vectors))):
        raise EmbeddingSetError(f"{folder / 'items.csv'}: its rows do not match the {len(vectors)} vectors")
    items = items.copy()
    items["row"] = pd.to_numeric(items["row"], errors="coerce").astype("Int64")
    items["path"] = [restore_utf8_text(p) for p in items["path"].astype(str)]  # the names the files have
    return EmbeddingSet(vectors, items, meta, folder)


__all__ = [
    "EmbeddingSet",
    "EmbeddingSetError",
    "FEATURE_FIELDS",
    "ITEM_COLUMNS",
    "STORE_FORMAT",
    "STORE_KIND",
    "read_embedding_set",
]
