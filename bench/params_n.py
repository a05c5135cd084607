"""Clustering settings against the size of the set: ACC of the default stages (L2 ->
PCA -> whitening -> neighbour smoothing -> k-means at the true k) on seeded, class-
stratified subsets of embedding sets, for several smoothing neighbour counts and PCA
shares, at 1k / 2k / 5k / 10k images.

    flock /tmp/pixsort-heavy.lock python bench/params_n.py STORE [STORE ...] \
        --sizes 1000 2000 5000 10000 --draws 3 > params_n.md

Each STORE is an embedding set (``pixsort embed DATA --out STORE``) with known labels,
made with the default features (Lite1, two layers, the mirror view).  The stages are the
ones ``ImageClusterer.fit`` runs (``EmbeddingReducer``, ``NeighbourSmoothing``,
``methods.kmeans``) called directly, so that one embedding per image serves every size.
``neighbours=rule`` is the rule of ``ImageClusterer`` itself (at most 20, at most 5% of
the images).  Only train images: no test split is read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from pixsort.base.runtime import cpu_description
from pixsort.cluster.images import ImageClusterer
from pixsort.cluster.images.estimator import smoothing_neighbours
from pixsort.cluster.images.methods import kmeans
from pixsort.cluster.images.smooth import NeighbourSmoothing
from pixsort.cluster.metrics import clustering_scores
from pixsort.features.extract import extractor_from_config
from pixsort.features.reduce import EmbeddingReducer
from pixsort.features.store import read_embedding_set


def stratified(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` rows with the classes in their proportions in ``labels`` (seeded)."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    take = np.floor(counts / counts.sum() * n).astype(int)
    take[: n - take.sum()] += 1
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), t, replace=False)
                                   for c, t in zip(classes, take)]))  # fmt: skip


DEFAULTS = ImageClusterer()


def run(raw, y, k: int, blocks, neighbours: int | str, share: float, seed: int) -> float:
    Z = EmbeddingReducer(share, block_sizes=blocks).fit_transform(raw)
    rule = smoothing_neighbours(DEFAULTS.smoothing_neighbors, len(Z))
    m = rule if neighbours == "rule" else min(int(neighbours), len(Z) - 1)
    if m >= 2:
        Z = NeighbourSmoothing(m, DEFAULTS.smoothing).fit_transform(Z)
    return clustering_scores(y, kmeans(Z, k, random_state=seed).labels)["accuracy"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stores", type=Path, nargs="+")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    ap.add_argument("--draws", type=int, default=3, help="seeded subsets per size")
    ap.add_argument("--neighbours", nargs="+", default=["rule", "5", "10", "20", "40"])
    ap.add_argument("--shares", type=float, nargs="+", default=[0.9])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = []
    print(f"CPU: {cpu_description()}\n")
    print("| set | n | PCA share | neighbours | ACC (mean of draws) | min | max | s per fit |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.stores:
        store = read_embedding_set(path)
        raw_all, y_all = np.asarray(store.vectors), np.asarray(store.labels)
        k = len(np.unique(y_all[y_all >= 0]))
        blocks = list(extractor_from_config(store.extractor_config).feature_blocks)
        blocks = blocks if len(blocks) > 1 else None
        for n in args.sizes:
            if n > len(y_all):
                continue
            for share in args.shares:
                for nb in args.neighbours:
                    accs, t0 = [], time.perf_counter()
                    for draw in range(args.draws):
                        pick = stratified(y_all, n, draw) if n < len(y_all) else np.arange(len(y_all))
                        accs.append(run(raw_all[pick], y_all[pick], k, blocks, nb, share, draw))
                        if n == len(y_all):
                            break  # the whole set: one draw
                    secs = (time.perf_counter() - t0) / len(accs)
                    rows.append({"set": path.name, "n": n, "share": share, "neighbours": nb, "acc": accs, "s": secs})
                    print(f"| {path.name} | {n} | {share} | {nb} | {np.mean(accs):.3f} | {min(accs):.3f} | "
                          f"{max(accs):.3f} | {secs:.1f} |", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
