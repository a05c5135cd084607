"""Uses of the offline weights beyond one backbone: concatenated Lite0/1/2 embeddings, the
ImageNet head's logits as one more block, and the SCAN-style head, against the default
stages (L2 per layer -> PCA 90% -> whitening -> neighbour smoothing -> k-means at the true
k), on seeded class-stratified subsets of embedding sets of the same images.

    flock /tmp/pixsort-heavy.lock python bench/fusion.py LITE0_STORE LITE1_STORE LITE2_STORE \
        --sizes 2000 10000 --draws 2

Each STORE is ``pixsort embed DATA --out STORE --features efficientnet_liteN`` of the same
images (rows are matched by path).  Only train images: no test split is read.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from params_n import stratified
from pixsort.base.runtime import cpu_description
from pixsort.cluster.images.estimator import smoothing_neighbours
from pixsort.cluster.images.head import ClusteringHead
from pixsort.cluster.images.methods import kmeans
from pixsort.cluster.images.smooth import NeighbourSmoothing
from pixsort.cluster.metrics import clustering_scores
from pixsort.features.extract import extractor_from_config
from pixsort.features.reduce import EmbeddingReducer
from pixsort.features.store import read_embedding_set


def aligned(paths: list[Path]) -> tuple[dict, np.ndarray]:
    """Per store: (vectors, layer widths, ImageNet logits), rows matched by path; labels."""
    stores = [read_embedding_set(p) for p in paths]
    common = sorted(set.intersection(*[set(s.paths) for s in stores]))
    out, labels = {}, None
    for store in stores:
        pos = {p: i for i, p in enumerate(store.paths)}
        rows = np.array([pos[p] for p in common])
        vectors = np.asarray(store.vectors)[rows]
        extractor = extractor_from_config(store.extractor_config)
        blocks = list(extractor.feature_blocks)
        net, _ = extractor._prepared()
        head = vectors[:, sum(blocks[:-1]) :]  # the pooled head block is the last layer
        dtype = next(net.parameters()).dtype
        with torch.inference_mode():
            logits = np.concatenate(
                [
                    net.classify_pooled(torch.from_numpy(head[s : s + 4096]).to(dtype)).float().numpy()
                    for s in range(0, len(head), 4096)
                ]  # fmt: skip
            )
        out[store.feature_settings["name"].replace("efficientnet_", "")] = (vectors, blocks, logits)
        labels = np.asarray(store.labels)[rows]
    return out, labels


def stages(raw, blocks, y, k, seed, head=False) -> float:
    Z = EmbeddingReducer(0.9, block_sizes=blocks if len(blocks) > 1 else None).fit_transform(raw)
    S = NeighbourSmoothing(smoothing_neighbours(20, len(Z)), 10).fit_transform(Z)
    labels = ClusteringHead(k, random_state=seed).fit(S).predict(S) if head else kmeans(S, k, random_state=seed).labels
    return clustering_scores(y, labels)["accuracy"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stores", type=Path, nargs="+")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--draws", type=int, default=2)
    args = ap.parse_args(argv)
    sets, y = aligned(args.stores)
    k = len(np.unique(y))
    variants = []
    for r in range(1, len(sets) + 1):
        for names in itertools.combinations(sets, r):
            variants.append(("+".join(names), names, False, False))
    for name in sets:
        variants.append((f"{name} + its logits", (name,), True, False))
        variants.append((f"{name}, SCAN head", (name,), False, True))
    print(f"CPU: {cpu_description()}\n")
    print("| features | n | dims in | ACC (mean of draws) | by draw | s per fit |")
    print("|---|---|---|---|---|---|")
    for label, names, logits, head in variants:
        raw = np.concatenate([sets[n][0] for n in names] + ([sets[names[0]][2]] if logits else []), axis=1)
        blocks = sum([sets[n][1] for n in names], []) + ([sets[names[0]][2].shape[1]] if logits else [])
        for n in args.sizes:
            accs, t0 = [], time.perf_counter()
            for draw in range(args.draws):
                pick = stratified(y, n, draw) if n < len(y) else np.arange(len(y))
                accs.append(stages(raw[pick], blocks, y[pick], k, draw, head))
                if n >= len(y):
                    break  # the whole set: one draw
            secs = (time.perf_counter() - t0) / len(accs)
            print(f"| {label} | {n} | {raw.shape[1]} | {np.mean(accs):.3f} | {' '.join(f'{a:.3f}' for a in accs)} | "
                  f"{secs:.1f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
