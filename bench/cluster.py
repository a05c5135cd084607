"""Clustering benchmark: scores, cold/warm wall time and peak memory per extractor and method.

    python bench/cluster.py --out /tmp/pixsort-bench-cluster [--sets cifar,pneumonia] \
        [--features efficientnet_lite0,pixels,autoencoder] [--methods kmeans,agglomerative,hdbscan,scan]

For every (data set, feature extractor) pair, one child process (so that its peak
memory is its own):

1. ``cold``: ``ImageClusterer(features=F, n_clusters=K).fit(path)`` with an empty
   cache folder: decoding, embedding (with test-time flips), reduction, smoothing,
   k-means.  The default settings otherwise.
2. ``warm``: the same fit again, now reading decoded images and embeddings from the
   cache: the time to re-cluster.
3. ``auto``: the same with k chosen by silhouette over 2..10 (warm).
   (The autoencoder is trained on the images at every fit, so it gets the cold run only.)
4. every other method of ``--methods`` with k fixed (warm), ``scan`` being k-means
   followed by the nearest-neighbour clustering head; and ``nosmooth``, the default
   without neighbour smoothing, to show what smoothing adds.

Each row of ``OUT/results.jsonl`` holds ACC (Hungarian), NMI, ARI, the k found, wall
seconds of ``fit`` and the child's peak RSS.  Data sets:

``cifar``      ``../shared/data/cifar10_sample`` (10,000 images, 10 classes), K = 10.
``pneumonia``  PneumoniaMNIST train+val (``pneumoniamnist_trainval.npz``), K = 2.

Run it alone on the machine: the timings are only honest with the cores to itself.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {
    "cifar": (DATA / "cifar10_sample", 10),
    "pneumonia": (DATA / "pneumoniamnist" / "pneumoniamnist_trainval.npz", 2),
}
METHODS = ("kmeans", "agglomerative", "hdbscan", "spectral", "scan", "nosmooth")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_child(set_name: str, features: str, methods: list[str], cache: Path, threads: int | None) -> list[dict]:
    """Runs in the child process: cold, warm, auto and the other methods."""
    from pixsort.base.runtime import tune_cpu
    from pixsort.cluster.images import ImageClusterer

    tune_cpu(threads)
    path, k = SETS[set_name]
    rows = []

    def fit(tag: str, **params) -> None:
        started = time.perf_counter()
        cl = ImageClusterer(features=features, cache_dir=cache, progress=False, **params).fit(path)
        seconds = time.perf_counter() - started
        s = cl.score()
        rows.append(
            {
                "set": set_name,
                "features": features,
                "run": tag,
                "params": params,
                "n_images": len(cl.labels_),
                "k": cl.n_clusters_,
                "accuracy": round(s["accuracy"], 4),
                "nmi": round(s["nmi"], 4),
                "ari": round(s["ari"], 4),
                "silhouette": round(cl.scores_["silhouette"], 4),
                "seconds": round(seconds, 1),
                "timings": {n: round(v, 1) for n, v in cl.timings_.items()},
                "peak_rss_mb": round(_peak_rss_mb()),
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    fit("cold", n_clusters=k)
    if features == "autoencoder":
        return rows  # trained afresh on every fit (nothing to warm): one run is its figure
    fit("warm", n_clusters=k)
    fit("auto", k_min=2, k_max=10)
    for method in methods:
        if method == "kmeans":
            continue
        if method == "scan":
            fit("scan", n_clusters=k, head="scan")
        elif method == "nosmooth":
            fit("nosmooth", n_clusters=k, smoothing=0)
        elif method == "hdbscan":
            fit("hdbscan", method="hdbscan")
        else:
            fit(method, n_clusters=k, method=method)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/pixsort-bench-cluster"))
    ap.add_argument("--sets", default="cifar,pneumonia")
    ap.add_argument("--features", default="efficientnet_lite0,pixels,autoencoder")
    ap.add_argument("--methods", default="kmeans,agglomerative,hdbscan,scan,nosmooth")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: available cores)")
    ap.add_argument("--keep-cache", action="store_true", help="do not empty the cache before the cold run")
    ap.add_argument("--child", nargs=3, metavar=("SET", "FEATURES", "CACHE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")

    if args.child:
        set_name, features, cache = args.child
        run_child(set_name, features, methods, Path(cache), args.threads)
        return

    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    for set_name in args.sets.split(","):
        for features in args.features.split(","):
            cache = args.out / "cache" / f"{set_name}-{features.replace(':', '_')}"
            if cache.exists() and not args.keep_cache:
                shutil.rmtree(cache)  # a cold run starts from nothing
            cmd = [sys.executable, __file__, "--methods", ",".join(methods), "--child", set_name, features, str(cache)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{set_name}/{features} failed (exit {proc.returncode})")
            with results.open("a") as f:
                for line in proc.stdout.splitlines():
                    if line.startswith("{"):
                        print(line, flush=True)
                        f.write(line + "\n")
    print(f"results: {results}")


if __name__ == "__main__":
    main()
