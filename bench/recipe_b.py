"""Recipe (b) of the seed notebooks beside the default: k-means in the 2-D t-SNE layout
(``method="tsne-kmeans"``), on pretrained and on autoencoder features, with k given.

    flock /tmp/pixsort-heavy.lock python bench/recipe_b.py --cache /tmp/pixsort-recipe-b-cache

Sets: PneumoniaMNIST train+val (5,232 images of 28 px, k = 2) and 2,000 images of the
shared CIFAR-10 sample (the first 200 per class by name, k = 10).  Per (set, features,
method): ACC (Hungarian), NMI, ARI and the fit's wall seconds (embeddings warm after the
first method of a feature set).  Rows go to ``--out`` (JSON lines) and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FEATURES = ("efficientnet_lite1", "autoencoder")
METHODS = ("kmeans", "tsne-kmeans")


def cifar_subset(folder: Path, per_class: int) -> Path:
    source = DATA / "cifar10_sample" / "train"
    for cls in sorted(p.name for p in source.iterdir() if p.is_dir()):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for f in sorted((source / cls).glob("*.jpg"))[:per_class]:
            link = folder / cls / f.name
            if not link.exists():
                os.symlink(f, link)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/pixsort-recipe-b-cache"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/pixsort-recipe-b.jsonl"))
    parser.add_argument("--sets", default="pneumonia,cifar2k")
    parser.add_argument("--per-class", type=int, default=200)
    args = parser.parse_args()
    from pixsort.base.runtime import cpu_description
    from pixsort.cluster.images import ImageClusterer

    sets = {
        "pneumonia": (DATA / "pneumoniamnist" / "pneumoniamnist_trainval.npz", 2),
        "cifar2k": (cifar_subset(args.cache.parent / "pixsort-recipe-b-cifar", args.per_class), 10),
    }
    rows = []
    with args.out.open("w") as out:
        for name in args.sets.split(","):
            source, k = sets[name]
            for features in FEATURES:
                for method in METHODS:
                    t0 = time.perf_counter()
                    clusterer = ImageClusterer(
                        features=features, method=method, n_clusters=k, cache_dir=args.cache, progress=False
                    ).fit(source)
                    seconds = time.perf_counter() - t0
                    scores = clusterer.score()
                    row = {
                        "set": name,
                        "features": features,
                        "method": method,
                        "n": len(clusterer.labels_),
                        "k": k,
                        "acc": round(scores["accuracy"], 4),
                        "nmi": round(scores["nmi"], 4),
                        "ari": round(scores["ari"], 4),
                        "seconds": round(seconds, 1),
                        "timings": {s: round(v, 1) for s, v in clusterer.timings_.items()},
                        "cpu": cpu_description(),
                    }
                    rows.append(row)
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(json.dumps(row), flush=True)
    print("\n| set | features | method | ACC | NMI | ARI | fit s |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['features']} | {r['method']} | {r['acc']:.3f} | {r['nmi']:.3f} | {r['ari']:.3f} "
              f"| {r['seconds']:.0f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
