"""The items of a dataset as a Ray Data pipeline: the list of items, read and decoded by
Ray tasks with pixsort's own decoder (:func:`pixsort.data.load.decode_item`: the same
allow-list, the same skip reasons as :func:`~pixsort.data.load_images`), then mapped by
a callable class on an actor pool (each actor loads its model once).

The Ray engine of ``embed``, ``cluster`` and ``assign`` is built on :func:`map_images`;
the caller's class returns its own columns beside the item columns, and
:class:`ItemRecords` turns the item columns back into the manifest ``load_images``
gives.  Needs the ``pixsort[ray]`` extra (:func:`pixsort.base.engines.import_ray`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pandas as pd

from pixsort.base.engines import import_ray
from pixsort.data.cache import CacheEntry
from pixsort.data.decode import DecodeSettings
from pixsort.data.load import (
    NoUsableImages,
    _no_images_message,
    decode_array_item,
    decode_item,
    file_key,
    item_manifest,
)
from pixsort.data.sources import ImageDataset

# what each decoded row carries besides its pixels (``image``), as decode_item's entry says
ITEM_COLUMNS = ("index", "key", "loaded", "reason", "detail", "width", "height", "mode", "format")
IMAGE_COLUMN = "image"
PIXELS_COLUMN = "pixels"  # whether ``image`` holds the decoded pixels (False: skipped, or not needed)
BLOCK_ITEMS = 64  # items per read-and-decode task: small enough to stream, large enough to amortise a task


def _to_bytes(text: str) -> bytes:
    """Text as Arrow carries it whole: file names that are not UTF-8 hold surrogates, which
    Arrow strings cannot; bytes keep them (:func:`_to_text` reverses it)."""
    return text.encode("utf-8", "surrogateescape")


def _to_text(value) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _item_rows(dataset: ImageDataset) -> list[dict]:
    """One row per item: its position, its path and what discovery noted about it (or,
    for array sources, the array itself)."""
    if dataset.store is not None:
        return [
            {"index": i, "array": np.asarray(dataset.store.arrays[name][pos])}
            for i, (name, pos) in enumerate(dataset.store.refs)
        ]
    rows = []
    for i, path in enumerate(dataset.paths):
        reason, detail = dataset.notes.get(path, ("", ""))
        rows.append({"index": i, "path": _to_bytes(path), "note_reason": reason, "note_detail": _to_bytes(detail)})
    return rows


def _decode_batch(batch: dict[str, np.ndarray], settings: dict, known=None) -> dict[str, np.ndarray]:
    """Ray task: decode the items of ``batch`` (``index``, ``path``, notes or arrays).

    ``known``: a callable taking the batch's content keys and returning a bool mask of
    those whose pixels are not needed (their results are stored already): such files are
    hashed and their headers read, not decoded (``pixels`` False)."""
    decode = DecodeSettings.from_dict(settings)
    n = len(batch["index"])
    images = np.zeros((n, *decode.shape), dtype=np.uint8)
    keys, entries, pixels = [], [], np.zeros(n, dtype=bool)
    paths = [] if "array" in batch else [_to_text(p) for p in batch["path"]]
    file_keys = [file_key(p) for p in paths]
    stored = np.zeros(n, dtype=bool)
    if known is not None and paths:
        present = [j for j, k in enumerate(file_keys) if k is not None]
        if present:
            stored[present] = np.asarray(known([file_keys[j] for j in present]), dtype=bool)
    for j in range(n):
        if "array" in batch:
            key, image, entry = decode_array_item(batch["array"][j], decode)
        else:
            reason = str(batch["note_reason"][j])
            note = (reason, _to_text(batch["note_detail"][j])) if reason else None
            key, image, entry = decode_item(paths[j], decode, note, key=file_keys[j], pixels=not stored[j])
        if image is not None:
            images[j] = image
            pixels[j] = True
        keys.append(key or "")
        entries.append(entry)
    return {
        "index": np.asarray(batch["index"], dtype=np.int64),
        "key": np.array(keys, dtype=object),
        "loaded": np.array([e.row >= 0 for e in entries], dtype=bool),
        "reason": np.array([e.reason for e in entries], dtype=object),
        "detail": np.array([_to_bytes(e.detail) for e in entries], dtype=object),
        "width": np.array([e.width for e in entries], dtype=np.int64),
        "height": np.array([e.height for e in entries], dtype=np.int64),
        "mode": np.array([e.mode for e in entries], dtype=object),
        "format": np.array([e.format for e in entries], dtype=object),
        PIXELS_COLUMN: pixels,
        IMAGE_COLUMN: images,
    }


def decoded_images(dataset: ImageDataset, settings: DecodeSettings, known=None):
    """A Ray Dataset of every item of ``dataset`` decoded with ``settings``, in item
    order: :data:`ITEM_COLUMNS`, ``pixels`` and ``image`` (uint8 ``settings.shape``, zeros
    where the item is skipped or, by ``known``, its pixels are not needed: see
    :func:`_decode_batch`)."""
    ray = import_ray()
    rows = _item_rows(dataset)
    blocks = max(1, math.ceil(len(rows) / BLOCK_ITEMS))
    return ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        _decode_batch,
        batch_size=None,
        batch_format="numpy",
        fn_kwargs={"settings": settings.to_dict(), "known": known},
    )


def map_images(
    dataset: ImageDataset,
    settings: DecodeSettings,
    actor_class: type,
    *,
    constructor_kwargs: dict | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    cpus_per_worker: float = 1,
    gpus_per_worker: float | None = None,
    known=None,
):
    """:func:`decoded_images` (``known``: as there) mapped by ``actor_class`` (a callable class: constructed
    once per actor with ``constructor_kwargs``, called on numpy batches of
    ``batch_size`` rows) on an autoscaling actor pool of 1 to ``workers`` actors
    (default: the cluster's GPUs / ``gpus_per_worker`` with GPUs, else its CPUs /
    ``cpus_per_worker``: Ray Data fuses the decoding into the actors' tasks, so they do all
    the work).  An actor that dies is restarted and its batch retried (Ray Data's actor
    pools: ``max_restarts=-1``, ``max_task_retries=-1``)."""
    ray = import_ray()
    if workers is None:
        resources = ray.cluster_resources()
        if gpus_per_worker:
            workers = int(resources.get("GPU", 0) // gpus_per_worker)
        else:
            workers = int(resources.get("CPU", 1) // cpus_per_worker)
    workers = max(1, int(workers))
    return decoded_images(dataset, settings, known).map_batches(
        actor_class,
        batch_size=int(batch_size),
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers),
        fn_constructor_kwargs=constructor_kwargs or {},
        num_cpus=cpus_per_worker,
        num_gpus=gpus_per_worker or None,
    )


def item_columns(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The :data:`ITEM_COLUMNS` of ``batch`` (what an actor passes on beside its results)."""
    return {name: batch[name] for name in ITEM_COLUMNS}


def iter_batches(ds) -> Iterator[dict[str, np.ndarray]]:
    """The batches of a Ray Dataset as numpy columns, in item order."""
    yield from ds.iter_batches(batch_format="numpy", batch_size=None)


class ItemRecords:
    """The item columns of the batches of a pipeline, gathered into the manifest
    :func:`~pixsort.data.load_images` gives for the same dataset."""

    def __init__(self, dataset: ImageDataset):
        self.dataset = dataset
        self._keys: list[str | None] = [None] * len(dataset)
        self._entries: list[CacheEntry | None] = [None] * len(dataset)

    def add(self, batch: dict[str, np.ndarray]) -> None:
        for j, i in enumerate(batch["index"].tolist()):
            key = str(batch["key"][j])
            self._keys[i] = key or None
            self._entries[i] = CacheEntry(
                0 if batch["loaded"][j] else -1,
                str(batch["reason"][j]),
                _to_text(batch["detail"][j]),
                int(batch["width"][j]),
                int(batch["height"][j]),
                str(batch["mode"][j]),
                str(batch["format"][j]),
            )

    @property
    def missing(self) -> list[int]:
        """Items no batch has reported (none after a complete run)."""
        return [i for i, e in enumerate(self._entries) if e is None]

    def manifest(self) -> pd.DataFrame:
        """One row per item, as ``load_images`` gives it (:class:`NoUsableImages` when
        every item was skipped, as there)."""
        missing = self.missing
        if missing:
            raise RuntimeError(f"the Ray pipeline returned no result for {len(missing)} of {len(self.dataset)} items")
        manifest = item_manifest(self.dataset, self._keys, self._entries)
        if not (manifest["status"] == "loaded").any():
            raise NoUsableImages(_no_images_message(self.dataset, manifest), manifest)
        return manifest

    @property
    def keys(self) -> list[str | None]:
        return list(self._keys)


__all__ = [
    "IMAGE_COLUMN",
    "ITEM_COLUMNS",
    "PIXELS_COLUMN",
    "ItemRecords",
    "decoded_images",
    "item_columns",
    "iter_batches",
    "map_images",
]
