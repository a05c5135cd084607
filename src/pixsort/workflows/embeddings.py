"""Embed the pictures of a source into an embedding set, as a step of its own
(``pixsort embed``), so that embedding and clustering can run on different machines
and at different times."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pixsort.base.engines import check_engine, ray_session
from pixsort.cluster.images import ImageClusterer
from pixsort.data import DecodedImages, load_images, open_dataset
from pixsort.data.lazy import ImageRows
from pixsort.features.extract import build_extractor, extract_features
from pixsort.features.ray_embed import embed_with_ray
from pixsort.features.store import EmbeddingSet, read_embedding_set
from pixsort.report.embeddings import EmbeddingSetWriter
from pixsort.report.files import check_writable_folder

CHUNK_ROWS = 4096  # images embedded and written per step: memory stays at one chunk


@dataclass
class EmbedRun:
    """What :func:`embed_images` wrote: the set (re-read from disk) and, with the local
    engine, the decoded images (None with the Ray engine: its workers decoded them)."""

    embeddings: EmbeddingSet
    decoded: DecodedImages | None


def embed_images(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    features: str = "efficientnet_lite1",
    layers="auto",
    tta: bool = False,
    image_size: int | None = None,
    batch_size: int = 64,
    runtime: str = "auto",
    device: str = "auto",
    precision: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    engine: str = "local",
    ray_address: str | None = None,
    ray_workers: int | None = None,
    exclude: Sequence[str | os.PathLike] = (),
) -> EmbedRun:
    """Embed every usable image of ``data`` (folder, .npz, .npy, CSV) into the embedding
    set folder ``out`` (see :mod:`pixsort.features.store`).

    Features are those :class:`~pixsort.cluster.images.ImageClusterer` would compute
    with the same ``features``, ``layers``, ``tta`` and ``image_size`` (the defaults are
    its defaults; ``runtime``, ``device`` and ``precision`` as there), through the same
    content-keyed cache: a later ``cluster`` of the same images reuses them, and
    ``cluster --embeddings out`` needs no images at all.

    ``engine``: ``"local"`` (this process) or ``"ray"``: a Ray Data pipeline on the
    cluster at ``ray_address`` (default ``$RAY_ADDRESS`` or a new local Ray) with up to
    ``ray_workers`` embedding actors (:func:`pixsort.features.ray_embed.embed_with_ray`;
    one GPU each with ``device="cuda"``), writing into the same cache, which must then
    be a folder every machine of the cluster shares.  Both engines write the same set.
    ``exclude``: folders of ``data`` not to read besides ``out`` (another run's output).
    """
    check_engine(engine, ray_address)
    planner = ImageClusterer(
        features=features,
        layers=layers,
        tta=tta,
        image_size=image_size,
        batch_size=batch_size,
        runtime=runtime,
        device=device,
        precision=precision,
        cache_dir=cache_dir,
    )
    spec = planner.check_params()
    if spec.is_autoencoder:
        raise ValueError("autoencoder features are learned while clustering; embed a backbone or pixels")
    check_writable_folder(out)
    dataset = open_dataset(data, exclude=[out, *exclude])
    settings = planner.decode_settings
    decoded = None
    if engine == "ray":
        extractor = build_extractor(spec, progress=progress, size=settings.size)
        with ray_session(ray_address, progress=progress):
            made = embed_with_ray(
                dataset,
                spec,
                extractor,
                settings,
                cache_dir,
                batch_size=batch_size,
                workers=ray_workers,
                gpus_per_worker=1 if device == "cuda" else None,
            )
        manifest, index, vectors = made.manifest, made.index, made.vectors
    else:
        decoded = load_images(dataset, settings, cache_dir=cache_dir, progress=progress)
        settings = decoded.settings
        extractor = build_extractor(spec, progress=progress, size=settings.size)
        manifest, index = decoded.manifest, decoded.index

        def vectors(start: int, stop: int) -> np.ndarray:
            images = decoded.images
            # a lazy set stays lazy (a slice would make every pixel at full size)
            part = images.take(np.arange(start, stop)) if isinstance(images, ImageRows) else images[start:stop]
            return extract_features(extractor, spec, part, decoded.keys[start:stop], cache_dir, settings)

    n = len(index)
    writer = None
    for start in range(0, n, CHUNK_ROWS):
        rows = vectors(start, min(start + CHUNK_ROWS, n))
        if writer is None:
            writer = EmbeddingSetWriter(out, n, rows.shape[1])
        writer.write(rows)
    row_of = np.full(len(dataset), -1, dtype=np.int64)
    row_of[index] = np.arange(n)
    items = manifest.copy()
    items.insert(0, "row", pd.Series(row_of).where(row_of >= 0).astype("Int64"))  # empty when skipped
    meta = {
        "source": str(Path(data).resolve()),
        "class_names": list(dataset.class_names),
        "features": {"name": spec.name, "layers": spec.layers, "tta": spec.tta},
        "extractor": extractor.to_config(),
        "extractor_id": extractor.extractor_id,
        "decode": settings.to_dict(),
    }
    writer.close(items, meta)
    return EmbedRun(read_embedding_set(out, verify=False), decoded)


__all__ = ["EmbedRun", "embed_images"]
