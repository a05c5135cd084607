"""Audit the pictures of a source before training on them (``pixsort audit``): exact and
near duplicates and the leaks they make across splits (and into a held-out folder),
outliers, image-quality flags, likely label errors and the class balance.

The embeddings are those of clustering (:class:`~pixsort.cluster.images.ImageClusterer`'s
features, decode settings and content-keyed cache): an audit after ``pixsort cluster`` or
``pixsort embed`` of the same images computes no embedding.  The pixel measurements
(quality statistics, difference hashes, the map's thumbnails) are made in one read of the
decoded images and kept in the same cache (:mod:`pixsort.auditing.measures`): a second
audit of the same images makes no pixel (each file is only looked up by size and mtime).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixsort.auditing import ImageAuditor, quality_table
from pixsort.auditing.duplicates import HASH_CROP, HASH_DISTANCE, NEAR_SIMILARITY, centred_unit
from pixsort.auditing.measures import PixelMeasures, measure_pixels
from pixsort.base.runtime import cpu_description
from pixsort.cluster.images import ImageClusterer
from pixsort.data import DecodedImages, default_cache_dir, load_images, open_dataset
from pixsort.features.extract import build_extractor, extract_features
from pixsort.features.reduce import embed_2d
from pixsort.report.audit import AuditOutputs, write_audit_outputs
from pixsort.report.files import check_writable_folder, write_json
from pixsort.report.map import TILE, tile_pixels

LABELS_FROM = ("folders", "none")
HASH_SOURCE = {
    "rule": (
        "near-copy when the 256-bit dHash of one image (whole) is within hash_distance bits of the other's "
        "whole or centre (hash_crop of each side) hash, or the embeddings' cosine >= near_threshold"
    ),
    "measured": "bench/audit.py, 5,216 chest X-rays (Kaggle train) + 100 planted copies, 240 x 240 decode",
    "copy_bits_min_median_95pct_max": {
        "resized_60pct": [0, 1, 3, 4],
        "reencoded_q50": [0, 2, 5, 7],
        "cropped_5pct": [0, 2, 6, 6],
    },
    "cropped_5pct_whole_hash_only_bits_range": [17, 47],
    "nearest_distinct_bits_min_0.1pct_1pct_median": [11, 13, 16, 31],
    "nearest_distinct_within_bits": {"10": 0, "11": 4, "12": 5},
    "chosen": "9 bits: all planted copies within 7, no distinct X-ray within 10",
}


@dataclass
class AuditRun:
    """What :func:`audit_images` found and wrote.

    ``outputs.table`` is audit.csv (one row per input item, ``x``/``y`` the 2-D layout);
    ``positions`` (n, 2) and ``rows`` (n,) give the layout of the audited images and
    their rows in that table, for a map of them."""

    outputs: AuditOutputs
    auditor: ImageAuditor
    decoded: DecodedImages
    embeddings: np.ndarray
    positions: np.ndarray
    rows: np.ndarray

    @property
    def summary(self) -> dict:
        return self.outputs.summary


def _measure(decoded: DecodedImages, cache_dir, progress) -> PixelMeasures:
    """Quality statistics, pixel hashes and map thumbnails of every image, each image read
    once (a packed decode resizes its rows on every read), from the measurement cache
    where it knows them."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return measure_pixels(
        decoded.images, decoded.keys, decoded.settings, lambda im: tile_pixels(im, TILE), TILE, root, progress
    )


def _embed(decoded: DecodedImages, planner: ImageClusterer, spec, cache_dir, progress) -> np.ndarray:
    extractor = build_extractor(spec, progress=progress, size=decoded.settings.size)
    return extract_features(
        extractor, spec, decoded.images, decoded.keys, cache_dir, decoded.settings, progress=progress
    )


def audit_images(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    against: str | os.PathLike | None = None,
    features: str = "efficientnet_lite1",
    labels_from: str = "folders",
    near_threshold: float | None = None,
    hash_distance: int | None = None,
    n_neighbors: int = 10,
    view: str = "pca",
    tta: bool = True,
    batch_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    random_state: int = 0,
    progress: bool = True,
) -> AuditRun:
    """Audit the images of ``data`` (folder, .npz, .npy, CSV) into the folder ``out``.

    ``against``: a held-out source (a test folder) whose near-copies in ``data`` are
    listed in leakage.csv.  ``features``/``tta``: the embeddings (clustering's backbone; unlike clustering,
    mirror-averaged by default, so a mirrored copy embeds exactly as its original and
    :data:`~pixsort.auditing.NEAR_SIMILARITY` was measured on such embeddings).
    ``labels_from``: ``folders`` (the labels the source carries: class folders, a label
    column) or ``none``.  ``near_threshold``: cosine similarity of a near-copy (default
    :data:`~pixsort.auditing.NEAR_SIMILARITY`, measured).  ``hash_distance``: bits within
    which two pixel hashes make a near-copy (default :data:`HASH_DISTANCE`, measured).  ``view``: the 2-D layout
    (pca, tsne, umap).
    """
    if labels_from not in LABELS_FROM:
        raise ValueError(f"labels_from must be one of {LABELS_FROM}, got {labels_from!r}")
    planner = ImageClusterer(features=features, tta=tta, batch_size=batch_size, cache_dir=cache_dir)
    spec = planner.check_params()
    if spec.is_autoencoder:
        raise ValueError("an audit needs fixed features (a backbone or pixels), not a learned autoencoder")
    threshold = NEAR_SIMILARITY if near_threshold is None else float(near_threshold)
    bits = HASH_DISTANCE if hash_distance is None else hash_distance
    auditor = ImageAuditor(
        near_threshold=threshold, hash_distance=bits, n_neighbors=n_neighbors, random_state=random_state
    )
    auditor.check_params()
    check_writable_folder(out)
    timings = {}
    t0 = time.perf_counter()
    dataset = open_dataset(data, exclude=[out])
    decoded = load_images(dataset, planner.decode_settings, cache_dir=cache_dir, progress=progress)
    timings["decode"] = time.perf_counter() - t0
    t = time.perf_counter()
    X = _embed(decoded, planner, spec, cache_dir, progress)
    timings["embed"] = time.perf_counter() - t
    labels = decoded.labels if labels_from == "folders" and dataset.has_labels else None
    t = time.perf_counter()
    measures = _measure(decoded, cache_dir, progress)
    statistics, pixel_hashes = measures.statistics, measures.hashes
    timings["pixels"] = time.perf_counter() - t
    auditor.fit(X, hashes=decoded.keys, labels=labels, pixel_hashes=pixel_hashes)
    timings.update(auditor.timings_)

    t = time.perf_counter()
    manifest = decoded.manifest
    if labels is None:
        manifest = manifest.assign(label="")
    native = manifest.iloc[decoded.index]
    quality = quality_table(statistics, native["width"].to_numpy(), native["height"].to_numpy())
    timings["quality"] = time.perf_counter() - t

    leaks = None
    if against is not None:
        t = time.perf_counter()
        other = load_images(open_dataset(against), planner.decode_settings, cache_dir=cache_dir, progress=progress)
        pairs = auditor.leaks(
            _embed(other, planner, spec, cache_dir, progress),
            other.keys,
            other_pixel_hashes=_measure(other, cache_dir, progress).hashes,
        )
        mine, theirs = manifest.iloc[decoded.index], other.manifest.iloc[other.index]
        leaks = pairs.assign(
            other_path=theirs["path"].to_numpy()[pairs["other"].to_numpy()],
            other_label=theirs["label"].to_numpy()[pairs["other"].to_numpy()],
            path=mine["path"].to_numpy()[pairs["row"].to_numpy()],
            split=mine["split"].to_numpy()[pairs["row"].to_numpy()],
            label=mine["label"].to_numpy()[pairs["row"].to_numpy()],
        )[["other_path", "other_label", "path", "split", "label", "similarity", "exact"]]
        timings["against"] = time.perf_counter() - t

    t = time.perf_counter()
    Z, _ = centred_unit(X, auditor.mean_)
    if view == "pca":  # the first two components, randomised: a second for 10,000 images
        from sklearn.decomposition import PCA

        positions = PCA(2, svd_solver="randomized", random_state=random_state).fit_transform(Z).astype(np.float32)
    else:
        positions = embed_2d(Z, method=view, random_state=random_state)
    timings["layout"] = time.perf_counter() - t
    summary = {
        "data": str(data),
        "against": None if against is None else str(against),
        "features": {"name": spec.name, "tta": spec.tta, "decode": decoded.settings.to_dict()},
        "labels_from": labels_from,
        "near_threshold": threshold,
        "near_threshold_source": (
            "default: no false group among the 5,216 chest X-rays of bench/audit.py (nearest distinct <= 0.883)"
            if near_threshold is None
            else "given"
        ),
        "hash_distance": int(auditor.hash_distance),
        "hash_distance_source": "default: measured (hash_source)" if hash_distance is None else "given",
        "hash_crop": HASH_CROP,
        "hash_source": HASH_SOURCE,
        "n_neighbors": n_neighbors,
        "outlier_rule": f"robust z > {auditor.outlier_z} of the mean distance to the {auditor.outlier_k} nearest",
        "view": view,
        "pixel_measures": {"measured": measures.n_measured, "from_cache": len(decoded) - measures.n_measured},
        "cpu": cpu_description(),
    }
    t = time.perf_counter()
    outputs = write_audit_outputs(
        out,
        manifest=manifest,
        index=decoded.index,
        auditor=auditor,
        quality=quality,
        positions=positions,
        class_names=decoded.class_names,
        images=decoded.images,
        summary=summary,
        leaks=leaks,
        title=f"Audit of {Path(data).name}",
        map_thumbs=measures.thumbs,
    )
    timings["report"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    outputs.summary["timings"] = {k: round(v, 3) for k, v in timings.items()}
    write_json(outputs.summary, outputs.files["summary"])
    return AuditRun(outputs, auditor, decoded, X, positions, decoded.index)


audit = audit_images  # ``pixsort.audit(...)``

__all__ = ["AuditRun", "audit", "audit_images"]
