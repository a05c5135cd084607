"""The Ray engine of the features stage: a Ray Data pipeline (list the items, read and
decode them with pixsort's decoder, embed them on an actor pool) that writes the
embeddings into the same content-keyed store the local engine uses
(:mod:`pixsort.features.cache`), so the driver reads them from there and a later
local run finds them cached.

Each actor (:class:`EmbedBatches`) rebuilds the extractor from its config once and
embeds with :func:`~pixsort.features.extract.extract_features`, the function of the
local engine: the same preprocessing, test-time augmentation and cache keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pixsort.base.engines import import_ray
from pixsort.base.runtime import tune_cpu
from pixsort.data import DecodeSettings, ImageDataset
from pixsort.data.ray_source import (
    IMAGE_COLUMN,
    PIXELS_COLUMN,
    ItemRecords,
    item_columns,
    iter_batches,
    map_images,
)

from .extract import (
    FeatureSpec,
    embedding_cache_dir,
    extract_features,
    extractor_from_config,
    stored_features,
    stored_mask,
)


class EmbedBatches:
    """Ray Data callable class: embeds the loaded rows of each batch into the store.

    Parameters
    ----------
    spec : FeatureSpec
    config : dict
        ``ImageExtractor.to_config()`` of the driver's extractor.
    extractor_id : str
        The driver's ``extractor_id``; an actor that resolves another (a precision
        ``"auto"`` that means bf16 on its CPU, fp32 on the driver's) stops the run.
    cache_root : path or None
        The cache root (``embeddings/`` below it), shared by every worker.
    decode : dict
        ``DecodeSettings.to_dict()`` of the images.
    threads : int
        torch threads of this actor (its CPUs).
    """

    def __init__(self, spec: FeatureSpec, config: dict, extractor_id: str, cache_root, decode: dict, threads: int = 1):
        tune_cpu(threads=max(1, int(threads)))
        self.spec = spec
        self.cache_root = cache_root
        self.decode = DecodeSettings.from_dict(decode)
        self.extractor = extractor_from_config(config)  # the model is loaded once per actor
        mine = self.extractor.extractor_id
        if mine != extractor_id:
            raise RuntimeError(
                f"a Ray worker resolves the features as {mine}, the driver as {extractor_id}: "
                "give --precision fp32 or bf16 (not auto) and the same --device for machines that differ"
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # items without pixels were skipped, or are stored already (StoredKeys): nothing to embed
        todo = np.asarray(batch["loaded"], dtype=bool) & np.asarray(batch[PIXELS_COLUMN], dtype=bool)
        if todo.any():
            keys = [str(k) for k in batch["key"][todo]]
            images = batch[IMAGE_COLUMN][todo]
            extract_features(self.extractor, self.spec, images, keys, self.cache_root, self.decode, progress=False)
        return item_columns(batch)  # the vectors travel through the store, not back to the driver


@dataclass(frozen=True)
class StoredKeys:
    """Which content keys have their features in the store already (a bool mask): the
    read tasks then hash those files and read their headers, not their pixels, so a warm
    run decodes nothing.  :meth:`RayEmbedding.vectors` still checks every row is there."""

    extractor_id: str
    spec: FeatureSpec
    cache_root: str | None
    decode: dict

    def __call__(self, keys: list[str]) -> np.ndarray:
        settings = DecodeSettings.from_dict(self.decode)
        return stored_mask(self.extractor_id, self.spec, keys, self.cache_root, settings)


@dataclass
class RayEmbedding:
    """What :func:`embed_with_ray` left in the store: the manifest of every item and the
    content keys of the loaded ones (in item order)."""

    manifest: pd.DataFrame
    index: np.ndarray  # int64 (n,): position of each loaded item in the dataset
    keys: list[str]
    extractor_id: str
    spec: FeatureSpec
    cache_root: str | os.PathLike | None
    settings: DecodeSettings

    def __len__(self) -> int:
        return len(self.index)

    def vectors(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """float32 (stop - start, D): the features of loaded items ``start:stop``, read
        from the store (RuntimeError naming the folder where some are not there)."""
        keys = self.keys[start:stop]
        out, found = stored_features(self.extractor_id, self.spec, keys, self.cache_root, self.settings)
        if not found.all():
            folder = embedding_cache_dir(self.cache_root)
            raise RuntimeError(
                f"{int((~found).sum())} embeddings written by the Ray workers are not in {folder}: the cache "
                "must be writable, and on a cluster of several machines a folder they all share (--cache-dir)"
            )
        return out


def embed_with_ray(
    dataset: ImageDataset,
    spec: FeatureSpec,
    extractor,
    settings: DecodeSettings,
    cache_root: str | os.PathLike | None = None,
    *,
    batch_size: int = 64,
    workers: int | None = None,
    cpus_per_worker: float = 1,
    gpus_per_worker: float | None = None,
    actor_class: type = EmbedBatches,
) -> RayEmbedding:
    """Embed every usable item of ``dataset`` on the connected Ray cluster
    (:func:`pixsort.base.engines.ray_session`) into the embedding store under
    ``cache_root``.

    ``extractor`` is the driver's (its config goes to the actors; its
    ``extractor_id`` names the store).  ``gpus_per_worker``: GPUs each actor reserves
    (with ``device`` cuda).  ``actor_class``: :class:`EmbedBatches` or a subclass.
    """
    import_ray()
    if not (spec.is_pretrained or spec.is_pixels):
        raise ValueError("the Ray engine embeds backbones and pixels; autoencoder features are learned locally")
    extractor_id = extractor.extractor_id
    root = None if cache_root is None else str(Path(cache_root).resolve())
    ds = map_images(
        dataset,
        settings,
        actor_class,
        constructor_kwargs={
            "spec": spec,
            "config": extractor.to_config(),
            "extractor_id": extractor_id,
            "cache_root": root,
            "decode": settings.to_dict(),
            "threads": max(1, int(cpus_per_worker)),
        },
        batch_size=batch_size,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        known=StoredKeys(extractor_id, spec, root, settings.to_dict()),
    )
    records = ItemRecords(dataset)
    for batch in iter_batches(ds):
        records.add(batch)
    manifest = records.manifest()
    index = np.flatnonzero(manifest["status"].to_numpy() == "loaded").astype(np.int64)
    keys = [records.keys[i] for i in index]
    return RayEmbedding(manifest, index, keys, extractor_id, spec, root, settings)


__all__ = ["EmbedBatches", "RayEmbedding", "StoredKeys", "embed_with_ray"]
