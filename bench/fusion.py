"""Fusing the offline backbones: k-means quality of Lite0, Lite1, Lite2 alone and their
concatenations, through the default clustering pipeline, on the same images.

    flock /tmp/pixsort-heavy.lock python bench/fusion.py --per-class 200 --work /tmp/pixsort-fusion

Each backbone's embeddings (mirror view included, as ``pixsort cluster`` computes them)
come from ``pixsort embed`` into one shared cache (so a rerun, or a larger ``--per-class``
over the same images, is warm).  Each combination then goes through what
``ImageClusterer`` does after the features: L2 per layer block (every backbone's layers
are blocks of their own), PCA to 90 % of the variance with whitening, neighbour smoothing
(min(20, n / 20) neighbours, 10 steps) and k-means at the true k, scored by Hungarian
ACC and NMI.  The single-backbone rows are the default pipeline itself (a check: the
Lite1 row equals ``pixsort cluster --k K``).

Sets: ``cifar`` (the shared CIFAR-10 sample, ``--per-class`` images per class drawn with
a seed; 0 = all 10,000) and ``pneumonia`` (PneumoniaMNIST train+val, 5,232 images).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def cifar_subset(per_class: int, folder: Path, seed: int = 0) -> tuple[Path, int]:
    """A folder of links to ``per_class`` seeded CIFAR-sample images per class (0: all)."""
    root = DATA / "cifar10_sample" / "train"
    if per_class == 0:
        return root, 10
    marker = folder / f".complete-{per_class}-{seed}"
    if not marker.exists():
        rng = np.random.default_rng(seed)
        for cls in sorted(p for p in root.iterdir() if p.is_dir()):
            files = sorted(cls.glob("*.jpg"))
            (folder / cls.name).mkdir(parents=True, exist_ok=True)
            for i in np.sort(rng.choice(len(files), size=min(per_class, len(files)), replace=False)):
                link = folder / cls.name / files[i].name
                if not link.exists():
                    os.symlink(files[i], link)
        marker.write_text("ok")
    return folder, 10


def embed(data: Path, backbone: str, work: Path, cache: Path) -> tuple[np.ndarray, list[str], list, float]:
    """``pixsort embed`` of ``data`` with ``backbone``: vectors, content hashes, labels, seconds."""
    from pixsort.features.store import read_embedding_set

    store = work / f"store-{data.name}-{backbone}"
    t = time.perf_counter()
    if not (store / "store.json").exists():
        cmd = [sys.executable, "-m", "pixsort", "embed", str(data), "--out", str(store)]
        cmd += ["--features", backbone, "--cache-dir", str(cache)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t
    emb = read_embedding_set(store)
    items = emb.items[emb.items["status"] == "loaded"].sort_values("row")
    return np.asarray(emb.vectors), items["content_hash"].tolist(), items["label"].tolist(), seconds


def score(blocks: list[np.ndarray], widths: list[int], labels, k: int, seed: int = 0) -> dict:
    from pixsort.cluster.images.methods import partition
    from pixsort.cluster.images.smooth import NeighbourSmoothing
    from pixsort.cluster.metrics import clustering_scores
    from pixsort.features.reduce import EmbeddingReducer

    t = time.perf_counter()
    raw = np.concatenate(blocks, axis=1)
    Z = EmbeddingReducer(0.9, whiten=True, block_sizes=widths).fit_transform(raw)
    n_neighbors = min(20, len(Z) // 20)
    Z = NeighbourSmoothing(n_neighbors, 10).fit_transform(Z)
    part = partition(Z, "kmeans", k, seed)
    names = sorted(set(labels))
    y = np.array([names.index(v) for v in labels])
    s = clustering_scores(y, part.labels)
    return {"acc": round(s["accuracy"], 4), "nmi": round(s["nmi"], 4), "dim": int(Z.shape[1]),
            "fit_s": round(time.perf_counter() - t, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["cifar", "pneumonia"])
    ap.add_argument("--per-class", type=int, default=200, help="CIFAR images per class (0: all 10,000)")
    ap.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    ap.add_argument("--work", type=Path, default=Path("/tmp/pixsort-fusion"))
    args = ap.parse_args(argv)
    from pixsort.base.runtime import cpu_description, tune_cpu
    from pixsort.features import PretrainedExtractor

    tune_cpu()
    args.work.mkdir(parents=True, exist_ok=True)
    cache = args.work / "cache"
    results = {"cpu": cpu_description(), "rows": []}
    for set_name in args.sets:
        if set_name == "cifar":
            data, k = cifar_subset(args.per_class, args.work / f"cifar-{args.per_class}")
        else:
            data, k = DATA / "pneumoniamnist" / "pneumoniamnist_trainval.npz", 2
        per = {}
        for b in args.backbones:
            vectors, keys, labels, seconds = embed(data, b, args.work, cache)
            per[b] = (dict(zip(keys, vectors)), labels, keys, seconds)
            print(f"{set_name}: {b} embedded {len(keys)} images in {seconds:.0f} s", flush=True)
        keys = per[args.backbones[0]][2]
        labels = per[args.backbones[0]][1]
        widths = {b: list(PretrainedExtractor(b, progress=False).feature_blocks) for b in args.backbones}
        for r in range(1, len(args.backbones) + 1):
            for combo in itertools.combinations(args.backbones, r):
                blocks = [np.stack([per[b][0][key] for key in keys]) for b in combo]
                row = score(blocks, [w for b in combo for w in widths[b]], labels, k)
                row.update(set=set_name, n=len(keys), k=k, features="+".join(combo))
                results["rows"].append(row)
                print(f"{set_name} n={len(keys)} {row['features']}: ACC {row['acc']:.3f} NMI {row['nmi']:.3f} "
                      f"(d={row['dim']}, {row['fit_s']} s)", flush=True)  # fmt: skip
    out = args.work / f"fusion-{args.per_class}.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"CPU: {results['cpu']}\n")
    print("| set | n | features | ACC | NMI | PCA dims |\n|---|---|---|---|---|---|")
    for row in results["rows"]:
        print(f"| {row['set']} | {row['n']} | {row['features']} | {row['acc']:.3f} | {row['nmi']:.3f} | {row['dim']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
