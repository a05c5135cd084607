"""Adapting to the user's images with augmented views of them (issue 14, ``--adapt-minutes``):
five recipes on cached views, against the default stages at the true k.

    flock /tmp/pixsort-heavy.lock python bench/adapt.py --sets pneumoniamnist cifar --views 2

Each image is embedded by the default extractor (Lite1 at 240 px) as it is and in ``--views``
augmented views (random-resized crop of 0.5-1 of the area, a shift of up to 5 %, a mirror
half the time, brightness and contrast +-0.2: ``classify.augment``, seeded), kept as
``.npy`` under ``--cache``.  Then, on the whole set (seeds 0-1) and on class-stratified
2,000-image draws (0-2):

* ``default``: the default stages on the plain embedding (PCA 0.9 whitened, smoothing, k-means);
* ``mean of views``: the same on the mean of the plain and augmented embeddings;
* ``view-invariant projection``: the PCA space re-projected by the generalised
  eigenvectors of (covariance of the images' mean embeddings, covariance of the views
  about them), so directions the augmentations move are weighed down;
* ``SCAN head on views``: :class:`~pixsort.cluster.images.head.ClusteringHead` trained on
  every view, each row paired with the other views of its image and of its 10 nearest
  neighbours' (in the smoothed space); predicted on the plain embedding;
* ``self-labelling``: two rounds of a logistic regression trained on the half of each
  cluster closest to its centre (by margin), on the plain rows (and on the views).

Train images only (the shared CIFAR-10 sample's train folder, PneumoniaMNIST's train split).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from params_n import stratified
from pixsort.base.runtime import cpu_description
from pixsort.classify.augment import AugmentConfig, augment_batch, to_float, to_uint8
from pixsort.cluster.images import ImageClusterer
from pixsort.cluster.images.estimator import smoothing_neighbours
from pixsort.cluster.images.head import ClusteringHead
from pixsort.cluster.images.methods import kmeans
from pixsort.cluster.images.neighbours import NeighbourSearch
from pixsort.cluster.images.smooth import NeighbourSmoothing
from pixsort.cluster.metrics import clustering_scores
from pixsort.features.extract import build_extractor
from pixsort.features.reduce import EmbeddingReducer, l2_normalize

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
VIEW = AugmentConfig(crop_scale=0.5, shift=0.05, hflip=0.5, brightness=0.2, contrast=0.2)
SIZE = 240


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "cifar":
        paths = sorted((SHARED / "cifar10_sample" / "train").glob("*/*.jpg"))
        classes = sorted({p.parent.name for p in paths})
        images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
        return images, np.array([classes.index(p.parent.name) for p in paths])
    data = np.load(SHARED / "pneumoniamnist" / "pneumoniamnist_trainval.npz")
    return np.repeat(data["train_images"][..., None], 3, axis=3), data["train_labels"].ravel()


def embedded_views(name: str, images: np.ndarray, n_views: int, cache: Path) -> tuple[list[np.ndarray], list]:
    extractor = build_extractor(ImageClusterer(progress=False).check_params(), progress=False, size=(SIZE, SIZE))
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for v in range(n_views + 1):
        file = cache / f"{name}-view{v}.npy"
        if not file.exists():
            t0 = time.perf_counter()
            if v == 0:
                vectors = extractor.transform(images)
            else:
                gen, parts = torch.Generator().manual_seed(v), []
                for s in range(0, len(images), 256):
                    x = torch.nn.functional.interpolate(
                        to_float(images[s : s + 256]), size=(SIZE, SIZE), mode="bilinear", antialias=True
                    )
                    parts.append(extractor.transform(to_uint8(augment_batch(x, VIEW, gen))))
                vectors = np.concatenate(parts)
            np.save(file, vectors)
            print(f"{name} view {v}: {len(images)} forwards in {time.perf_counter() - t0:.0f} s", flush=True)
        out.append(np.load(file))
    return out, list(extractor.feature_blocks)


def reduced(views, blocks):
    reducer = EmbeddingReducer(0.9, block_sizes=blocks if len(blocks) > 1 else None)
    Z = reducer.fit_transform(views[0])
    return reducer, Z, [Z] + [reducer.transform(v) for v in views[1:]]


def smoothed(Z):
    smoother = NeighbourSmoothing(smoothing_neighbours(20, len(Z)), 10)
    return smoother, smoother.fit_transform(Z)


def default(views, blocks, y, k, seed):
    return kmeans(smoothed(reduced(views[:1], blocks)[1])[1], k, random_state=seed).labels


def mean_of_views(views, blocks, y, k, seed):
    return default([np.mean(views, axis=0)], blocks, y, k, seed)


def invariant(views, blocks, y, k, seed):
    _, _, Zs = reduced(views, blocks)
    M = np.mean(Zs, axis=0)
    within = sum(np.cov((z - M).T) for z in Zs) / len(Zs)
    ridge = 1e-3 * np.trace(within) / len(within)
    _, U = scipy.linalg.eigh(np.cov(M.T), within + ridge * np.eye(len(within)))
    P = l2_normalize(((M - M.mean(axis=0)) @ U[:, ::-1]).astype(np.float32))
    return kmeans(smoothed(P)[1], k, random_state=seed).labels


def head_on_views(views, blocks, y, k, seed, n_neighbors=10):
    _, Z, Zs = reduced(views, blocks)
    smoother, S = smoothed(Z)
    Ss = [S] + [smoother.transform(z) for z in Zs[1:]]
    n = len(S)
    _, near = NeighbourSearch(S).search(S, n_neighbors, exclude_self=True)
    pairs = np.concatenate([c for u in range(len(Ss)) for c in (u * n + near, u * n + np.arange(n)[:, None])], axis=1)
    head = ClusteringHead(k, random_state=seed, epochs=30).fit(np.concatenate(Ss), np.concatenate([pairs] * len(Ss)))
    return head.predict(S)


def self_labelling(views, blocks, y, k, seed, with_views=False, share=0.5, rounds=2):
    from sklearn.linear_model import LogisticRegression

    _, Z, Zs = reduced(views if with_views else views[:1], blocks)
    S = smoothed(Z)[1]
    labels = kmeans(S, k, random_state=seed).labels
    for _ in range(rounds):
        centres = np.stack([S[labels == c].mean(axis=0) if (labels == c).any() else S[0] * 0 for c in range(k)])
        top = np.sort(S @ centres.T, axis=1)[:, -2:]
        margin, keep = top[:, 1] - top[:, 0], np.zeros(len(S), dtype=bool)
        for c in range(k):
            rows = np.flatnonzero(labels == c)
            keep[rows[np.argsort(-margin[rows])[: max(1, int(share * len(rows)))]]] = True
        model = LogisticRegression(max_iter=300).fit(
            np.concatenate([z[keep] for z in Zs]), np.concatenate([labels[keep]] * len(Zs))
        )
        labels = model.classes_[np.mean([model.predict_proba(z) for z in Zs], axis=0).argmax(axis=1)]
    return labels


RECIPES = {
    "default": default,
    "mean of views": mean_of_views,
    "view-invariant projection": invariant,
    "SCAN head on views": head_on_views,
    "self-labelling": self_labelling,
    "self-labelling on views": lambda *a: self_labelling(*a, with_views=True),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["pneumoniamnist", "cifar"], choices=["pneumoniamnist", "cifar"])
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/pixsort-adapt"))
    args = ap.parse_args(argv)
    print(f"CPU: {cpu_description()}\n\n| set | recipe | ACC whole (seeds 0-1) | ACC 2,000 (draws 0-2) | s |")
    print("|---|---|---|---|---|")
    for name in args.sets:
        images, y = load(name)
        views, blocks = embedded_views(name, images, args.views, args.cache)
        k = len(np.unique(y))
        for recipe, fit in RECIPES.items():
            t0 = time.perf_counter()
            whole = [clustering_scores(y, fit(views, blocks, y, k, s))["accuracy"] for s in range(2)]
            small = []
            for draw in range(3):
                pick = stratified(y, 2000, draw)
                labels = fit([v[pick] for v in views], blocks, y[pick], k, draw)
                small.append(clustering_scores(y[pick], labels)["accuracy"])
            by_draw = " ".join(f"{a:.3f}" for a in small)
            print(f"| {name} | {recipe} | {np.mean(whole):.3f} | {np.mean(small):.3f} ({by_draw}) | "
                  f"{time.perf_counter() - t0:.0f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
