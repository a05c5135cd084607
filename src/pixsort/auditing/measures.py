"""The per-image pixel measurements of an audit, made in one read of the decoded images
and kept in the content-keyed cache, so that a second audit reads no pixel.

Per image: the quality statistics of :func:`~pixsort.auditing.quality.pixel_statistics`
(4 float64), the whole and centre difference hashes of
:func:`~pixsort.auditing.duplicates.copy_hashes` (2 x 4 uint64) and a small RGB
thumbnail for the map (``tile`` x ``tile`` x 3 uint8, made by the caller's ``thumb``
function from the same decoded image).  They are packed into one uint8 record per image
and stored by :class:`~pixsort.features.cache.EmbeddingCache` (``dtype=uint8``) under
``<cache>/audit/``, keyed by the image's content hash, in a store named after everything
that changes a record (:data:`MEASURES_VERSION`, the decode settings, the hash crop, the
statistics' grid and the thumbnail side): one shard per chunk of images computed, never
one file per image.  A record read back is the bytes that were computed, so an audit from
the cache gives the same audit.csv as one that measured everything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pixsort.auditing.duplicates import HASH_CROP, copy_hashes
from pixsort.auditing.quality import SMALL_SIDE, pixel_statistics
from pixsort.base.progress import progress as progress_bar
from pixsort.data.decode import DecodeSettings
from pixsort.features.cache import EmbeddingCache

MEASURES_VERSION = 1  # bump when the statistics, the hashes or the thumbnails change
CHUNK = 512  # images read, measured and stored (one shard) at once
STAT_COLUMNS = ["brightness", "contrast", "sharpness", "colourfulness"]
_STAT_BYTES, _HASH_BYTES = 4 * 8, 2 * 4 * 8


@dataclass
class PixelMeasures:
    """What :func:`measure_pixels` gives, one row per image.

    Attributes
    ----------
    statistics : DataFrame (n rows), columns :data:`STAT_COLUMNS` (float64)
    hashes : ndarray (n, 2, 4) uint64, whole and centre difference hashes
    thumbs : ndarray (n, tile, tile, 3) uint8, the map's thumbnails
    n_measured : int, images measured here (the rest came from the cache)
    """

    statistics: pd.DataFrame
    hashes: np.ndarray
    thumbs: np.ndarray
    n_measured: int


def measures_id(settings: DecodeSettings, tile: int) -> str:
    """The store name: everything that changes a record."""
    decode = settings.key()
    return f"audit-measures/v{MEASURES_VERSION}/decode={decode}/crop={HASH_CROP:g}/grid={SMALL_SIDE}/tile={tile}"


def pack(statistics: np.ndarray, hashes: np.ndarray, thumbs: np.ndarray) -> np.ndarray:
    """Records (n, 96 + tile * tile * 3) uint8 of float64 (n, 4), uint64 (n, 2, 4), uint8 (n, t, t, 3)."""
    n = len(statistics)
    parts = (
        np.ascontiguousarray(statistics, dtype=np.float64).reshape(n, 4).view(np.uint8),
        np.ascontiguousarray(hashes, dtype=np.uint64).reshape(n, 8).view(np.uint8),
        np.ascontiguousarray(thumbs, dtype=np.uint8).reshape(n, -1),
    )
    return np.concatenate(parts, axis=1)


def unpack(records: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inverse of :func:`pack`: (statistics (n, 4), hashes (n, 2, 4), thumbs (n, t, t, 3))."""
    r = np.ascontiguousarray(records, dtype=np.uint8)
    n = len(r)
    stats = np.ascontiguousarray(r[:, :_STAT_BYTES]).view(np.float64).reshape(n, 4)
    hashes = np.ascontiguousarray(r[:, _STAT_BYTES : _STAT_BYTES + _HASH_BYTES]).view(np.uint64).reshape(n, 2, 4)
    thumbs = r[:, _STAT_BYTES + _HASH_BYTES :].reshape(n, tile, tile, 3)
    return stats, hashes, thumbs


def record_width(tile: int) -> int:
    return _STAT_BYTES + _HASH_BYTES + tile * tile * 3


def measure_pixels(
    images,
    keys: Sequence[str] | None,
    settings: DecodeSettings,
    thumb: Callable[[np.ndarray], np.ndarray],
    tile: int,
    cache_root: str | os.PathLike | None = None,
    progress: bool = True,
) -> PixelMeasures:
    """Statistics, hashes and thumbnails of every image, read from the cache where known.

    Parameters
    ----------
    images : uint8 array-like (n, H, W, C) (an array, a memmap,
        :class:`~pixsort.data.lazy.PackedImages`): indexed only for the images measured
    keys : n content hashes (``DecodedImages.keys``), or None (no cache)
    settings : the decode settings of ``images`` (part of the store's name)
    thumb : image (H, W, C) -> uint8 (tile, tile, 3), the map's thumbnail
    cache_root : the data cache root (``<cache_root>/audit``); None: no cache
    """
    n = len(images)
    width = record_width(tile)
    records = np.zeros((n, width), np.uint8)
    found = np.zeros(n, bool)
    store = None
    if keys is not None and cache_root is not None:
        if len(keys) != n:
            raise ValueError(f"{len(keys)} keys for {n} images")
        store = EmbeddingCache(Path(cache_root) / "audit", measures_id(settings, tile), dtype=np.uint8)
        stored, found = store.lookup(list(keys), dim=width)
        if found.any():
            records[found] = stored[found]
    # the images to measure: the first image of each missing key (copies are measured once)
    first: dict[str, int] = {}
    todo = []
    for i in np.flatnonzero(~found):
        key = keys[i] if store is not None else None
        if key is None or key not in first:
            todo.append(int(i))
            if key is not None:
                first[key] = int(i)
    with progress_bar("Measuring pixels", len(todo), bool(progress) and len(todo) >= 200) as bar:
        for start in range(0, len(todo), CHUNK):
            rows = np.asarray(todo[start : start + CHUNK], dtype=np.intp)
            batch = np.asarray(images[rows])
            chunk = pack(
                pixel_statistics(batch).to_numpy(),
                copy_hashes(batch),
                np.stack([thumb(image) for image in batch]),
            )
            records[rows] = chunk
            if store is not None:
                store.put([keys[i] for i in rows], chunk)
            bar.advance(len(rows))
    if store is not None:
        for i in np.flatnonzero(~found):  # copies of an image measured above
            records[i] = records[first[keys[i]]]
    stats, hashes, thumbs = unpack(records, tile)
    return PixelMeasures(pd.DataFrame(stats, columns=STAT_COLUMNS), hashes, thumbs, len(todo))


__all__ = ["MEASURES_VERSION", "PixelMeasures", "measure_pixels", "measures_id", "pack", "unpack"]
