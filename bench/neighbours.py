"""Neighbour engines on real embeddings: time and recall@k of ``hnsw`` against exact
``flat`` search, and the clustering accuracy of the default stages with each engine's
smoothing graph, on embedding sets with known labels.

    flock /tmp/pixsort-heavy.lock python bench/neighbours.py STORE [STORE ...] [--seeds 3]

Each STORE is an embedding set (``pixsort embed DATA --out STORE``); its vectors are
reduced as ``ImageClusterer.fit`` reduces them (L2 per layer, PCA 90%, whitening) and
searched for the smoothing's neighbour count.  A set grown by ``bench/scale_fit.py`` gives
the time at larger n (its accuracy is no quality figure).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from pixsort.base.runtime import cpu_description
from pixsort.cluster.images import neighbours, smooth
from pixsort.cluster.images.estimator import smoothing_neighbours
from pixsort.cluster.images.methods import kmeans
from pixsort.cluster.metrics import clustering_scores
from pixsort.features.extract import extractor_from_config
from pixsort.features.reduce import EmbeddingReducer
from pixsort.features.store import read_embedding_set


def reduced(path: Path) -> tuple[np.ndarray, np.ndarray]:
    store = read_embedding_set(path)
    blocks = list(extractor_from_config(store.extractor_config).feature_blocks)
    Z = EmbeddingReducer(0.9, block_sizes=blocks if len(blocks) > 1 else None).fit_transform(np.asarray(store.vectors))
    return np.ascontiguousarray(Z, dtype=np.float32), np.asarray(store.labels)


def smoothing_accuracy(Z: np.ndarray, y: np.ndarray, method: str, seeds: int) -> list[float]:
    real = smooth.NeighbourSearch
    smooth.NeighbourSearch = lambda ref: real(ref, method=method)  # the fit's graph from this engine
    try:
        S = smooth.NeighbourSmoothing(smoothing_neighbours(20, len(Z)), 10).fit_transform(Z)
    finally:
        smooth.NeighbourSearch = real
    k = len(np.unique(y[y >= 0]))
    return [clustering_scores(y, kmeans(S, k, random_state=seed).labels)["accuracy"] for seed in range(seeds)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stores", type=Path, nargs="+")
    ap.add_argument("--seeds", type=int, default=3, help="k-means seeds per engine (0: time and recall only)")
    args = ap.parse_args(argv)
    print(f"CPU: {cpu_description()}\n")
    print("| set | n | d | engine | build + search s | recall@k | ACC by seed |")
    print("|---|---|---|---|---|---|---|")
    for path in args.stores:
        Z, y = reduced(path)
        k = smoothing_neighbours(20, len(Z))
        exact = None
        for method in ("flat", "hnsw"):
            t0 = time.perf_counter()
            _, idx = neighbours.NeighbourSearch(Z, method=method).search(Z, k, exclude_self=True)
            secs = time.perf_counter() - t0
            exact = idx if exact is None else exact
            recall = neighbours.recall_at_k(idx, exact)
            accs = smoothing_accuracy(Z, y, method, args.seeds) if args.seeds else []
            print(f"| {path.name} | {len(Z)} | {Z.shape[1]} | {method} | {secs:.1f} | {recall:.3f} | "
                  f"{' '.join(f'{a:.3f}' for a in accs)} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
