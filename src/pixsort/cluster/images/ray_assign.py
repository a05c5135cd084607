"""The Ray engine of ``assign``: new images placed in a fitted clustering in parallel,
as a Ray Data pipeline (the items read and decoded by Ray tasks with pixsort's decoder,
then :meth:`ImageClusterer.assign` on an actor pool; each actor loads the model once)."""

from __future__ import annotations

import os
from dataclasses import fields

import numpy as np
import pandas as pd

from pixsort.base.engines import import_ray
from pixsort.base.runtime import tune_cpu
from pixsort.data import ImageDataset
from pixsort.data.ray_source import IMAGE_COLUMN, ItemRecords, item_columns, iter_batches, map_images

from .estimator import ClusterAssignment, ImageClusterer

_FIELDS = [f.name for f in fields(ClusterAssignment)]
_DTYPES = {
    "clusters": np.int64,
    "distances": np.float32,
    "neighbor_distances": np.float32,
    "neighbor_indices": np.int64,
}


def _widths(model: ImageClusterer, n_neighbors: int) -> tuple[int, int]:
    """Clusters and neighbours per image that :meth:`ImageClusterer.assign` returns."""
    m = 0 if n_neighbors <= 0 else max(1, min(int(n_neighbors), len(model.embeddings_)))
    return len(model.cluster_centers_), m


class AssignBatches:
    """Ray Data callable class: :meth:`ImageClusterer.assign` on the loaded rows of each batch.

    Parameters
    ----------
    model : ImageClusterer or path
        A fitted clusterer, or the folder it was saved in (loaded once per actor).
    n_neighbors : int
        Nearest training images per image (0: none).
    threads : int
        torch threads of this actor (its CPUs).
    """

    def __init__(self, model, n_neighbors: int, threads: int = 1):
        tune_cpu(threads=max(1, int(threads)))
        self.model = ImageClusterer.load(model) if isinstance(model, (str, os.PathLike)) else model
        self.n_neighbors = int(n_neighbors)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        loaded = np.asarray(batch["loaded"], dtype=bool)
        n = len(loaded)
        k, m = _widths(self.model, self.n_neighbors)
        out = {
            "clusters": np.full(n, -1, dtype=np.int64),
            "distances": np.zeros((n, k), dtype=np.float32),
            "neighbor_distances": np.zeros((n, m), dtype=np.float32),
            "neighbor_indices": np.full((n, m), -1, dtype=np.int64),
        }
        if loaded.any():
            placed = self.model.assign(batch[IMAGE_COLUMN][loaded], n_neighbors=self.n_neighbors)
            for name in _FIELDS:
                out[name][loaded] = getattr(placed, name)
        if m == 0:  # no neighbour columns: a tensor column of width 0 is not worth the edge case
            del out["neighbor_distances"], out["neighbor_indices"]
        return {**item_columns(batch), **out}


def assign_with_ray(
    dataset: ImageDataset,
    model: ImageClusterer,
    *,
    n_neighbors: int = 3,
    batch_size: int = 64,
    workers: int | None = None,
    cpus_per_worker: float = 1,
    gpus_per_worker: float | None = None,
) -> tuple[pd.DataFrame, np.ndarray, ClusterAssignment]:
    """Place every usable item of ``dataset`` in the clusters of the fitted ``model`` on
    the connected Ray cluster (:func:`pixsort.base.engines.ray_session`), decoded with
    ``model.decode_settings``.

    Returns the manifest of every item (as ``load_images`` gives it), the positions
    (int64, n) of the loaded items in the dataset and their :class:`ClusterAssignment`
    (rows in the same order); :class:`~pixsort.data.NoUsableImages` when none loads.
    """
    import_ray()
    k, m = _widths(model, n_neighbors)
    ds = map_images(
        dataset,
        model.decode_settings,
        AssignBatches,
        constructor_kwargs={"model": model, "n_neighbors": n_neighbors, "threads": max(1, int(cpus_per_worker))},
        batch_size=batch_size,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
    )
    records = ItemRecords(dataset)
    positions: list[np.ndarray] = []
    parts: dict[str, list[np.ndarray]] = {name: [] for name in _FIELDS}
    for batch in iter_batches(ds):
        records.add(batch)
        loaded = np.asarray(batch["loaded"], dtype=bool)
        positions.append(np.asarray(batch["index"], dtype=np.int64)[loaded])
        for name in _FIELDS:
            if name in batch:
                parts[name].append(np.asarray(batch[name])[loaded])
    manifest = records.manifest()
    index = np.flatnonzero(manifest["status"].to_numpy() == "loaded").astype(np.int64)
    order = np.argsort(np.concatenate(positions), kind="stable")  # item order, however the batches came
    n = len(index)
    shapes = {"clusters": (n,), "distances": (n, k), "neighbor_distances": (n, m), "neighbor_indices": (n, m)}
    placed = ClusterAssignment(
        *(
            np.concatenate(parts[name])[order] if parts[name] else np.zeros(shapes[name], dtype=_DTYPES[name])
            for name in _FIELDS
        )
    )
    return manifest, index, placed


__all__ = ["AssignBatches", "assign_with_ray"]
