"""Decode a dataset to one uint8 array, in parallel, through the content-keyed cache.

Memory stays bounded by the output: workers decode one file at a time (JPEG draft
mode keeps even that small) and the parent streams results to the memory-mapped
cache in batches; the full-size images are never held together.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pixsort.base.progress import progress as progress_bar
from pixsort.data.cache import CacheEntry, ContentHasher, DecodedStore, default_cache_dir, hash_array
from pixsort.data.decode import (
    DecodeSettings,
    SkipImage,
    decode_array,
    decode_image,
    fit_to_settings,
    read_header,
)
from pixsort.data.lazy import ImageRows
from pixsort.data.processes import map_in_processes
from pixsort.data.sources import ImageDataset

MANIFEST_COLUMNS = ["path", "label", "split", "status", "reason", "width", "height", "mode", "content_hash"]
_WRITE_BATCH = 256
_PARALLEL_MIN = 64  # below this, worker start-up costs more than it saves
_BAR_MIN = 200  # a bar for fewer files would only flicker
# Skip reasons that the same bytes always give: only these are remembered in the cache.
# Anything else (out_of_memory, read_error, decode_error) may pass on a rerun, so is retried.
PERMANENT_REASONS = frozenset(
    {"empty", "not_an_image", "truncated", "too_many_pixels", "bad_aspect_ratio", "unsupported_format", "bad_array"}
)


class NoUsableImages(Exception):
    """Every item of a source was skipped; the manifest says why."""

    def __init__(self, message: str, manifest: pd.DataFrame):
        super().__init__(message)
        self.manifest = manifest


@dataclass
class DecodedImages:
    """The usable images of a dataset, decoded, plus the manifest of every item.

    Attributes
    ----------
    images : ndarray of uint8, shape (n, H, W, C), or PackedImages
        A read-only memmap into the cache, or (where some images are stored at their
        own, smaller size) a :class:`~pixsort.data.lazy.PackedImages` indexed the
        same way; ``np.asarray`` makes an array of it.
    index : ndarray of int64, shape (n,)
        Position of each image in ``dataset``.
    keys : list of str, length n
        Content hash of each image (for downstream caches such as embeddings).
    manifest : DataFrame
        One row per dataset item: path, label, split, status (``loaded`` or
        ``skipped``), reason, width, height, mode, content_hash.
    """

    images: np.ndarray
    index: np.ndarray
    keys: list[str]
    dataset: ImageDataset
    manifest: pd.DataFrame
    settings: DecodeSettings

    def __len__(self) -> int:
        return len(self.index)

    @property
    def labels(self) -> np.ndarray:
        return self.dataset.labels[self.index]

    @property
    def splits(self) -> np.ndarray:
        return self.dataset.splits[self.index]

    @property
    def paths(self) -> list[str]:
        return [self.dataset.paths[i] for i in self.index]

    @property
    def class_names(self) -> list[str]:
        return self.dataset.class_names

    @property
    def skipped(self) -> pd.DataFrame:
        return self.manifest[self.manifest["status"] == "skipped"]

    def select(self, mask_or_indices: np.ndarray) -> DecodedImages:
        """A subset by boolean mask or positions (e.g. ``decoded.select(decoded.splits == "val")``)."""
        pos = np.asarray(mask_or_indices)
        if pos.dtype == bool:
            pos = np.flatnonzero(pos)
        lazy = isinstance(self.images, ImageRows)  # lazy image sets stay lazy
        return DecodedImages(
            images=self.images.take(pos) if lazy else self.images[pos],
            index=self.index[pos],
            keys=[self.keys[i] for i in pos],
            dataset=self.dataset,
            manifest=self.manifest,
            settings=self.settings,
        )


def load_images(
    dataset: ImageDataset,
    settings: DecodeSettings | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    workers: int | None = None,
    progress: bool = True,
    **settings_kwargs,
) -> DecodedImages:
    """Decode every item of ``dataset`` with ``settings`` (or keyword settings).

    Parameters
    ----------
    dataset : ImageDataset from :func:`pixsort.data.open_dataset`
    settings : DecodeSettings; or pass ``size=``, ``channels=``, ``resize=`` ... directly
    cache_dir : where decoded arrays are cached (default :func:`default_cache_dir`)
    use_cache : False decodes everything in memory and writes nothing
    workers : decoding processes (default: the available cores; 0 = in this process)
    progress : show a progress bar while decoding

    Raises
    ------
    NoUsableImages
        When no item could be decoded (its ``manifest`` lists why).
    """
    if settings is None:
        settings = DecodeSettings(**settings_kwargs)
    elif settings_kwargs:
        raise TypeError("pass either settings or keyword settings, not both")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if use_cache:
        try:
            return _load(dataset, settings, root, True, workers, progress)
        except OSError as exc:  # a read-only or full cache folder: the run goes on without it
            warnings.warn(
                f"cannot write the decoded-image cache in {root} ({exc.strerror or exc}); decoding in memory",
                RuntimeWarning,
                stacklevel=2,
            )
    return _load(dataset, settings, root, False, workers, progress)


def _load(
    dataset: ImageDataset,
    settings: DecodeSettings,
    root: Path,
    use_cache: bool,
    workers: int | None,
    progress: bool,
) -> DecodedImages:
    hasher = ContentHasher(root if use_cache else None)
    keys = _content_keys(dataset, hasher)
    hasher.save()

    store = DecodedStore(root, settings) if use_cache else None
    known: dict[str, CacheEntry] = dict(store.entries) if store else {}
    memory: dict[str, np.ndarray] = {}  # decoded rows when not caching

    todo = _unique_missing(dataset, keys, known)
    pending: list[tuple[str, np.ndarray | None, CacheEntry]] = []
    for key, array, entry in _decode_all(dataset, keys, todo, settings, workers, progress):
        known[key] = entry
        if store is not None and (array is not None or entry.reason in PERMANENT_REASONS):
            pending.append((key, array, entry))
            if len(pending) >= _WRITE_BATCH:
                store.append(pending)
                pending = []
        elif array is not None:
            memory[key] = array
    if store is not None:
        store.append(pending)
        known.update(store.entries)  # rows of what was stored; transient skips stay for this run only

    # items whose file cannot even be read have no key: decode them directly for the reason
    unkeyed = {
        i: _skip_entry(dataset.paths[i], dataset.notes.get(dataset.paths[i]), settings)
        for i, k in enumerate(keys)
        if k is None
    }
    manifest = _manifest(dataset, keys, known, unkeyed)
    loaded = np.flatnonzero(manifest["status"].to_numpy() == "loaded")
    if len(loaded) == 0:
        raise NoUsableImages(_no_images_message(dataset, manifest), manifest)

    kept_keys = [keys[i] for i in loaded]
    if store is not None:
        images = store.images([known[k] for k in kept_keys])
    else:
        images = np.stack([fit_to_settings(memory[k], settings) for k in kept_keys])
    return DecodedImages(images, loaded.astype(np.int64), kept_keys, dataset, manifest, settings)


# -- steps -----------------------------------------------------------------------------


def _content_keys(dataset: ImageDataset, hasher: ContentHasher) -> list[str | None]:
    if dataset.store is not None:
        return [hash_array(dataset.store.arrays[k][i]) for k, i in dataset.store.refs]
    return [hasher.file_hash(p) for p in dataset.paths]


def _unique_missing(dataset: ImageDataset, keys: list[str | None], known: dict[str, CacheEntry]) -> list[int]:
    seen: set[str] = set()
    todo = []
    for i, key in enumerate(keys):
        if key is None or key in known or key in seen:
            continue
        seen.add(key)
        todo.append(i)
    return todo


def file_key(path: str) -> str | None:
    """The content hash :func:`load_images` keys a file by (None when it cannot be read)."""
    return ContentHasher(None).file_hash(path)


def decode_item(
    path: str,
    settings: DecodeSettings,
    note: tuple[str, str] | None = None,
    *,
    key: str | None = None,
    pixels: bool = True,
) -> tuple[str | None, np.ndarray | None, CacheEntry]:
    """One file as :func:`load_images` decodes it, without the caches: its content hash
    (None when it cannot be read), its image of ``settings.shape`` (None when skipped)
    and its entry (the skip reason and detail, or the file's size and mode).  ``note``:
    what discovery found wrong with the path (``ImageDataset.notes``).  The skip reasons
    are those of :func:`load_images` for the same bytes, so any engine reports the same.

    ``key``: the file's :func:`file_key`, when already known.  ``pixels=False`` is for a
    file whose content an earlier run decoded with these settings (its embeddings are
    stored): only the header is read, and the image is None with a loaded entry; a
    header that fails its checks is decoded in full, so the skip reason is the decoder's.
    """
    key = file_key(path) if key is None else key
    if key is None:
        return None, None, _skip_entry(path, note, settings)
    if not pixels and note is None:
        try:
            info = read_header(path, settings)
            return key, None, CacheEntry(0, "", "", info.width, info.height, info.mode, info.format)
        except (SkipImage, OSError):
            pass
    _, _, array, entry = _decode_one_file((0, key, path, settings))
    return key, None if array is None else fit_to_settings(array, settings), entry


def decode_array_item(raw: np.ndarray, settings: DecodeSettings) -> tuple[str, np.ndarray | None, CacheEntry]:
    """:func:`decode_item` for one image held in an array (an ``.npz`` / ``.npy`` item)."""
    array, entry = _decode_raw_array(np.asarray(raw), settings)
    return hash_array(raw), None if array is None else fit_to_settings(array, settings), entry


def item_manifest(dataset: ImageDataset, keys: list[str | None], entries: list[CacheEntry]) -> pd.DataFrame:
    """The manifest :func:`load_images` gives (one row per item of ``dataset``) from each
    item's content key and entry, as :func:`decode_item` returns them."""
    known = {k: e for k, e in zip(keys, entries) if k is not None}
    unkeyed = {i: e for i, (k, e) in enumerate(zip(keys, entries)) if k is None}
    return _manifest(dataset, keys, known, unkeyed)


def _decode_one_file(job: tuple[int, str, str, DecodeSettings]) -> tuple[int, str, np.ndarray | None, CacheEntry]:
    i, key, path, settings = job
    try:
        array, info = decode_image(path, settings, keep_small=True)
    except SkipImage as skip:
        return i, key, None, CacheEntry(-1, skip.reason, skip.detail)
    except MemoryError:
        return i, key, None, CacheEntry(-1, "out_of_memory", "ran out of memory while decoding (retried next run)")
    except OSError as exc:  # the disk or the network share, not the bytes: retried next run
        return i, key, None, CacheEntry(-1, "read_error", f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a decoder bug must cost one file, not the run
        return i, key, None, CacheEntry(-1, "decode_error", f"{type(exc).__name__}: {exc}")
    return i, key, array, CacheEntry(0, "", "", info.width, info.height, info.mode, info.format)


def _decode_array_item(dataset: ImageDataset, i: int, settings: DecodeSettings) -> tuple[np.ndarray | None, CacheEntry]:
    assert dataset.store is not None
    name, pos = dataset.store.refs[i]
    return _decode_raw_array(np.asarray(dataset.store.arrays[name][pos]), settings)


def _decode_raw_array(raw: np.ndarray, settings: DecodeSettings) -> tuple[np.ndarray | None, CacheEntry]:
    h, w = raw.shape[:2]
    mode = "L" if raw.ndim == 2 or raw.shape[-1] == 1 else "RGB"
    try:
        return decode_array(raw, settings, keep_small=True), CacheEntry(0, "", "", w, h, mode, f"array:{raw.dtype}")
    except SkipImage as skip:
        return None, CacheEntry(-1, skip.reason, skip.detail)


def _decode_all(
    dataset: ImageDataset,
    keys: list[str | None],
    todo: list[int],
    settings: DecodeSettings,
    workers: int | None,
    progress: bool,
) -> Iterator[tuple[str, np.ndarray | None, CacheEntry]]:
    """Yield (content key, decoded array or None, entry) for each item in ``todo``."""
    if not todo:
        return
    if dataset.store is not None:
        with progress_bar("Converting arrays", len(todo), bool(progress) and len(todo) >= _BAR_MIN) as bar:
            for i in todo:
                array, entry = _decode_array_item(dataset, i, settings)
                bar.advance()
                yield keys[i], array, entry
        return
    jobs = [(i, keys[i], dataset.paths[i], settings) for i in todo]
    with progress_bar("Decoding images", len(jobs), bool(progress) and len(jobs) >= _BAR_MIN) as bar:
        for _, key, array, entry in map_in_processes(_decode_one_file, jobs, workers, _PARALLEL_MIN):
            bar.advance()
            yield key, array, entry


def _skip_entry(path: str, noted: tuple[str, str] | None, settings: DecodeSettings) -> CacheEntry:
    if noted is not None:
        return CacheEntry(-1, *noted)
    try:
        decode_image(path, settings)
    except SkipImage as skip:
        return CacheEntry(-1, skip.reason, skip.detail)
    except Exception as exc:
        return CacheEntry(-1, "decode_error", str(exc))
    return CacheEntry(-1, "unreadable", "file could not be read")


def _manifest(
    dataset: ImageDataset, keys: list[str | None], known: dict[str, CacheEntry], unkeyed: dict[int, CacheEntry]
) -> pd.DataFrame:
    rows = []
    names = dataset.label_names()
    for i, key in enumerate(keys):
        entry = unkeyed.get(i) if key is None else known.get(key)
        if entry is None:
            entry = CacheEntry(-1, "decode_error", "no decode result")
        loaded = entry.row >= 0
        reason = "" if loaded else (f"{entry.reason}: {entry.detail}" if entry.detail else entry.reason)
        rows.append(
            (
                dataset.paths[i],
                names[i],
                dataset.splits[i],
                "loaded" if loaded else "skipped",
                reason,
                entry.width or None,
                entry.height or None,
                entry.mode,
                key or "",
            )
        )
    frame = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    return frame.astype({"width": "Int64", "height": "Int64"})


def _no_images_message(dataset: ImageDataset, manifest: pd.DataFrame) -> str:
    reasons = manifest["reason"].str.split(":").str[0].value_counts()
    summary = ", ".join(f"{n} {r}" for r, n in reasons.items())
    return f"no usable image in {dataset.root} ({len(manifest)} files: {summary})"
