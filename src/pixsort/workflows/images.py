"""Cluster the pictures of a source, and place new pictures in a saved clustering."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from pixsort.base.engines import check_engine, ray_session
from pixsort.base.modelfile import model_folder
from pixsort.cluster.images import ClusterAssignment, ImageClusterer
from pixsort.cluster.images.ray_assign import assign_with_ray
from pixsort.cluster.images.views import view_coordinates
from pixsort.data import DecodedImages, NoUsableImages, load_images, open_dataset
from pixsort.data.lazy import LazyImages
from pixsort.data.tables import read_text_table
from pixsort.features.reduce import embed_2d
from pixsort.features.store import EmbeddingSet, read_embedding_set
from pixsort.report.image_clusters import (
    ClusterOutputs,
    cluster_map_page,
    write_assignments,
    write_cluster_outputs,
)
from pixsort.workflows.embeddings import embed_images

N_RECONSTRUCTIONS = 10  # autoencoder reconstructions shown in the report


@dataclass
class ClusterRun:
    """What :func:`cluster_images` did: the fitted clusterer, the decoded images, the outputs."""

    clusterer: ImageClusterer
    decoded: DecodedImages | np.ndarray
    outputs: ClusterOutputs

    @property
    def metrics(self) -> dict:
        return self.outputs.metrics


def cluster_images(
    data,
    out: str | os.PathLike,
    *,
    labels: np.ndarray | None = None,
    view: str = "tsne",
    copy_to_folders: str = "none",
    score: bool = True,
    title: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    embeddings: str | os.PathLike | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    **params,
) -> ClusterRun:
    """Cluster the images of ``data`` and write every output into ``out``.

    ``data`` is a source path (folder, .npz, .npy, CSV), decoded images
    (:class:`~pixsort.data.DecodedImages`) or a uint8 array (n, H, W, C) with optional
    known ``labels`` (n,) for scoring.

    ``params`` go to :class:`~pixsort.cluster.images.ImageClusterer` (features, method,
    n_clusters, k_min, k_max, head, smoothing, image_size, random_state ...); they are
    checked before anything is decoded.  ``view`` is the 2-D view of the report
    (tsne, umap, pca); ``copy_to_folders`` (none, copy, link) also places the files in
    one folder per cluster.  The model is saved in ``out/model`` for ``assign``.

    ``embeddings``: an embedding set folder (``pixsort embed``) to cluster instead of
    ``data`` (pass ``data=None``): no image is decoded except those the report shows,
    and the features are the set's.

    ``engine="ray"``: the images of the source path ``data`` are embedded by a Ray Data
    pipeline (:func:`~pixsort.workflows.embed_images` with the Ray engine, on the cluster
    at ``ray_address``) into the embedding set ``out/embeddings``, and the clustering is
    fitted here from that set.
    """
    check_engine(engine, ray_address)
    if engine == "ray":
        embeddings = _embed_with_ray(data, out, embeddings, labels, params, cache_dir, progress, ray_address)
        data = None
    if embeddings is not None:
        data = read_embedding_set(embeddings)
        given = {k for k in ("features", "layers", "tta", "image_size") if params.get(k) is not None}
        if given:
            raise ValueError(f"--embeddings sets the features; do not also give {', '.join(sorted(given))}")
        made = data.feature_settings
        params.update(features=made["name"], layers=made["layers"], tta=made["tta"])
    clusterer = ImageClusterer(cache_dir=cache_dir, progress=progress, **params)
    clusterer.check_params()
    decoded = data
    if isinstance(data, EmbeddingSet):
        decoded = None
    elif isinstance(data, (str, os.PathLike)):
        dataset = open_dataset(data, exclude=[out])  # a second run must not read the first one's output
        decoded = load_images(dataset, clusterer.decode_settings, cache_dir=cache_dir, progress=progress)
    clusterer.fit(data if decoded is None else decoded, labels)
    if decoded is None:
        decoded = LazyImages(clusterer.train_paths_, clusterer.decode_settings_)
    seed = clusterer.random_state
    layout = getattr(clusterer, "layout_", None)
    if view == "tsne" and layout is not None:  # tsne-kmeans partitioned this very layout: show it
        coordinates = np.arange(len(layout)), layout
    else:
        coordinates = view_coordinates(clusterer.embeddings_, view, seed)
    clusterer.map_positions_ = map_layout(clusterer.embeddings_, coordinates)
    reconstructions = None
    if clusterer.feature_spec_.is_autoencoder:
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(decoded), size=min(N_RECONSTRUCTIONS, len(decoded)), replace=False))
        reconstructions = clusterer.extractor_.reconstruct(np.asarray(getattr(decoded, "images", decoded)[pick]))
    model_dir = clusterer.save(Path(out) / "model")
    outputs = write_cluster_outputs(
        clusterer,
        decoded,
        out,
        view=coordinates,
        view_name=view,
        title=title,
        copy_to_folders=copy_to_folders,
        model_dir=model_dir,
        score=score,
        reconstructions=reconstructions,
        map_positions=clusterer.map_positions_,
    )
    return ClusterRun(clusterer, decoded, outputs)


def _embed_with_ray(data, out, embeddings, labels, params: dict, cache_dir, progress: bool, ray_address) -> Path:
    """The embedding set ``out/embeddings`` of source ``data``, written by the Ray engine
    with the feature settings of ``params``; those the set records (features, layers,
    tta, image_size) leave ``params``, which then cluster the set."""
    if embeddings is not None:
        raise ValueError("--engine ray embeds images; an embedding set (--embeddings) is embedded already")
    if not isinstance(data, (str, os.PathLike)):
        raise ValueError("the Ray engine reads a source path (folder, .npz, .npy, CSV), not images in memory")
    if labels is not None:
        raise ValueError("the Ray engine takes the labels from the source (class folders, label columns)")
    planner = ImageClusterer(cache_dir=cache_dir, **params)
    planner.check_params()
    made = embed_images(
        data,
        Path(out) / "embeddings",
        **{name: getattr(planner, name) for name in EMBED_PARAMS},
        cache_dir=cache_dir,
        progress=progress,
        engine="ray",
        ray_address=ray_address,
        exclude=[out],
    )
    for name in SET_PARAMS:
        params.pop(name, None)
    return made.embeddings.folder


# the clusterer's parameters that decide its embeddings (``pixsort embed`` takes them too),
# and those of them an embedding set records
EMBED_PARAMS = ("features", "layers", "tta", "image_size", "batch_size", "runtime", "device", "precision")
SET_PARAMS = ("features", "layers", "tta", "image_size")


def map_layout(embeddings: np.ndarray, view: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The 2-D position of every image for the map (n, 2): the report's view where it
    covers every image, else the first two principal components (a t-SNE of a sample
    cannot place the rest)."""
    idx, xy = view
    if len(idx) == len(embeddings):
        out = np.empty((len(embeddings), 2), dtype=np.float32)
        out[idx] = xy
        return out
    return embed_2d(embeddings, method="pca")


def clusterer_map(clusterer: ImageClusterer, images, **options):
    """The map page of a fitted (or loaded) clusterer: its saved layout, or the first two
    principal components of its training embeddings for a model saved without one;
    ``options`` go to :func:`pixsort.report.map.build_map` (``atlas_urls``, ``links`` ...)."""
    positions = getattr(clusterer, "map_positions_", None)
    if positions is None:
        positions = embed_2d(clusterer.embeddings_, method="pca")
    return cluster_map_page(clusterer, positions, images, **options)


def assign_images(
    model: str | os.PathLike | ImageClusterer,
    source: str | os.PathLike,
    out_csv: str | os.PathLike | None = None,
    *,
    n_neighbors: int = 3,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    engine: str = "local",
    ray_address: str | None = None,
    ray_workers: int | None = None,
) -> pd.DataFrame:
    """Place the images of ``source`` (folder, file, .npz, .csv ...) in the clusters of
    a fitted ``model`` (or the folder it was saved in), decoded with its settings.

    Returns (and writes to ``out_csv``) one row per input item: path, status
    (``assigned`` or ``skipped``), reason, cluster, distance_to_centre, nearest_paths /
    nearest_distances (training images, ``;``-separated, closest first).  Broken files
    are rows, not exceptions.

    ``engine="ray"``: decoded and placed in parallel by a Ray Data pipeline on the
    cluster at ``ray_address``, up to ``ray_workers`` actors each holding the model
    (:func:`pixsort.cluster.images.ray_assign.assign_with_ray`); the same rows.
    """
    check_engine(engine, ray_address)
    clusterer = model if isinstance(model, ImageClusterer) else ImageClusterer.load(model_folder(model))
    dataset = open_dataset(source)
    try:
        if engine == "ray":
            with ray_session(ray_address, progress=progress):
                manifest, index, placed = assign_with_ray(
                    dataset,
                    clusterer,
                    n_neighbors=n_neighbors,
                    workers=ray_workers,
                    gpus_per_worker=1 if clusterer.device == "cuda" else None,
                )
            paths = [dataset.paths[i] for i in index]
        else:
            decoded = load_images(dataset, clusterer.decode_settings, cache_dir=cache_dir, progress=progress)
            manifest, paths = decoded.manifest, decoded.paths
            placed = _assign_in_chunks(clusterer, decoded.images, n_neighbors)
    except NoUsableImages as exc:
        frame = _skipped_rows(exc.manifest)
    else:
        frame = _assignment_rows(clusterer, paths, placed)
        skipped = _skipped_rows(manifest)
        if len(skipped):
            frame = pd.concat([frame, skipped], ignore_index=True)
    if out_csv is not None:
        write_assignments(frame, out_csv)
    return frame


def _assignment_rows(clusterer: ImageClusterer, paths: list[str], placed: ClusterAssignment) -> pd.DataFrame:
    clusters = placed.clusters
    centre_dist = placed.distances[np.arange(len(clusters)), np.clip(clusters, 0, None)]
    train = clusterer.train_paths_
    frame = pd.DataFrame(
        {
            "path": paths,
            "status": "assigned",
            "reason": "",
            "cluster": clusters,
            "distance_to_centre": np.round(centre_dist, 6),
            "nearest_paths": [";".join(train[j] for j in row) for row in placed.neighbor_indices],
            "nearest_distances": [";".join(f"{d:.4f}" for d in row) for row in placed.neighbor_distances],
        }
    )
    if clusterer.cluster_names_:
        frame.insert(4, "cluster_name", [clusterer.cluster_names_[c] if c >= 0 else "" for c in clusters])
    return frame


ASSIGN_CHUNK = 4096  # images placed per step: memory stays at one chunk of pixels


def _assign_in_chunks(clusterer: ImageClusterer, images, n_neighbors: int) -> ClusterAssignment:
    parts = [
        clusterer.assign(images[s : s + ASSIGN_CHUNK], n_neighbors=n_neighbors)
        for s in range(0, len(images), ASSIGN_CHUNK)
    ]
    return ClusterAssignment(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(ClusterAssignment)))


def _skipped_rows(manifest: pd.DataFrame) -> pd.DataFrame:
    rows = manifest[manifest["status"] != "loaded"]
    return pd.DataFrame(
        {
            "path": rows["path"].astype(str).tolist(),
            "status": "skipped",
            "reason": rows["reason"].astype(str).tolist(),
            "cluster": pd.array([pd.NA] * len(rows), dtype="Int64"),
        }
    )


__all__ = ["ClusterRun", "assign_images", "cluster_images", "clusterer_map", "map_layout"]


def rename_clusters(model: str | os.PathLike, names_csv: str | os.PathLike) -> ImageClusterer:
    """Give the clusters of a saved clusterer the names in ``names_csv`` and save them
    with it (``model.json``), for ``assign``, the report and the server.

    ``names_csv`` has a ``cluster`` and a ``name`` column: a table of your own, or the
    run's ``clusters_summary.csv`` with its ``name`` column edited.  Rows with an empty
    name, and the ``noise`` row, leave a cluster's name as it was.
    """
    folder = model_folder(model)
    table = read_text_table(names_csv, missing=("",))
    missing = [c for c in ("cluster", "name") if c not in table.columns]
    if missing:
        raise ValueError(f"{names_csv}: no {' or '.join(repr(c) for c in missing)} column; columns are: "
                         f"{', '.join(map(str, table.columns[:20]))}")  # fmt: skip
    names: dict[int, str] = {}
    for row, (cluster, name) in enumerate(zip(table["cluster"], table["name"]), start=2):
        if not isinstance(name, str) or cluster == "noise":
            continue
        if not isinstance(cluster, str) or not cluster.strip().isdigit():
            raise ValueError(f"{names_csv}, line {row}: cluster {cluster!r} is not a cluster number")
        names[int(cluster)] = name
    clusterer = ImageClusterer.load(folder)
    clusterer.rename_clusters(names)
    clusterer.save(folder)
    return clusterer
