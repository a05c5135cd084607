"""Choosing k without labels: which criterion finds the true number of classes?

    flock /tmp/pixsort-heavy.lock python bench/k_choice.py --cache-dir /tmp/kchoice-cache \
        [--sets cifar10k,cifar2k,uneven4,uneven7,digits,pneumonia] [--out results.jsonl]

For every set with known classes, the default pipeline (``ImageClusterer()``:
EfficientNet-Lite1, PCA + whitening, neighbour smoothing, k-means; the digits with the
``pixsort demo`` features) makes the clustering space Z and one k-means partition per
candidate k (three restarts, as ``select_k`` fits them).  Every criterion of
:mod:`pixsort.cluster.images.criteria` then scores the candidates on Z (the space the
partition is made in) and on its seeded 4,000-point sample, and each rule picks a k:

``silhouette``        argmax of the silhouette in Z (the default before this bench)
``umap_silhouette``   argmax of the silhouette in a 2-D UMAP layout of the sample
``stability_argmax``  argmax of the mean ARI of subsample pairs
``stability_edge``    the largest k whose stability is within ``--stable-tol`` of the best
``stability``         among those stable k, the one with the highest silhouette (the
                      package's ``stability`` rule, ``select.choose_k``)
``eigengap``          argmax of lambda_{k+1} - lambda_k of the sample's k-NN Laplacian

The ACC / NMI are those of the partition the package would return at the chosen k
(k-means, ten restarts).  A criterion whose scores all lie within its flat spread is
said to be flat.  Seconds are each criterion's own cost on Z (the embedding and the
candidate partitions are shared and timed apart).

Sets (all train images, no test split): the CIFAR-10 sample (10,000, 10 classes), 200
per class of it (2,000), two uneven draws from it (4 classes 1000/600/300/150; 7
classes 1000/700/500/350/250/150/100; seeded), scikit-learn's digits (1,797, 10
classes, pixels as in the demo, k in 2..12), PneumoniaMNIST train (4,708, 2 classes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("PIXSORT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
SETS = ("cifar10k", "cifar2k", "uneven4", "uneven7", "digits", "pneumonia")
UNEVEN = {"uneven4": (1000, 600, 300, 150), "uneven7": (1000, 700, 500, 350, 250, 150, 100)}
RULES = ("silhouette", "umap_silhouette", "stability_argmax", "stability_edge", "stability", "eigengap")


def load_set(name: str, decode, cache_dir: Path, seed: int = 0):
    """Decoded images (with their labels) of one set, decoded as ``decode`` says."""
    from pixsort.data import load_images, open_dataset

    if name == "digits":
        from pixsort.workflows.demo import write_digits

        root = write_digits(cache_dir / "digits")
        return load_images(open_dataset(root), decode, cache_dir=cache_dir, progress=False)
    if name == "pneumonia":
        ds = open_dataset(DATA / "pneumoniamnist" / "pneumoniamnist_trainval.npz")
        dec = load_images(ds, decode, cache_dir=cache_dir, progress=False)
        return dec.select(dec.splits == "train")
    dec = load_images(open_dataset(DATA / "cifar10_sample" / "train"), decode, cache_dir=cache_dir, progress=False)
    if name == "cifar10k":
        return dec
    rng = np.random.default_rng(seed)
    labels = np.asarray(dec.labels)
    if name == "cifar2k":
        keep = np.concatenate([rng.choice(np.flatnonzero(labels == c), 200, replace=False) for c in range(10)])
    else:
        sizes = UNEVEN[name]
        classes = rng.choice(10, len(sizes), replace=False)
        keep = np.concatenate(
            [rng.choice(np.flatnonzero(labels == c), s, replace=False) for c, s in zip(classes, sizes)]
        )
    return dec.select(np.sort(keep))


def run_set(name: str, cache_dir: Path, seed: int, stable_tol: float) -> dict:
    from pixsort.cluster.images import ImageClusterer
    from pixsort.cluster.images.criteria import Eigengap, Stability, UmapSilhouette
    from pixsort.cluster.images.methods import partition
    from pixsort.cluster.images.select import FLAT_SPREADS, choose_k, score_partition
    from pixsort.cluster.metrics import clustering_scores
    from pixsort.cluster.select import best_k

    params = {"features": "pixels", "image_size": 16, "k_max": 12} if name == "digits" else {}
    cl = ImageClusterer(cache_dir=cache_dir, progress=False, random_state=seed, k_criterion="silhouette", **params)
    t = time.perf_counter()
    data = load_set(name, cl.decode_settings, cache_dir, seed)
    t_decode = time.perf_counter() - t
    y = np.asarray(data.labels)
    true_k = len(np.unique(y[y >= 0]))
    t = time.perf_counter()
    cl.fit(data)
    t_fit = time.perf_counter() - t
    Z, sel = cl.embeddings_, cl.selection_
    cands = sel.candidates
    ks = [c.k for c in cands]
    sample = sel.sample_index

    curves, seconds = {}, {}
    t = time.perf_counter()
    curves["silhouette"] = [score_partition(Z, c.partition, sample, c.k).silhouette for c in cands]
    seconds["silhouette"] = time.perf_counter() - t
    t = time.perf_counter()
    umap_score = UmapSilhouette(Z, sample, seed)
    curves["umap_silhouette"] = [umap_score(c.k, c.partition) for c in cands]
    seconds["umap_silhouette"] = time.perf_counter() - t
    t = time.perf_counter()
    stab = Stability(Z, sample, seed)
    curves["stability"] = [stab(k) for k in ks]
    seconds["stability"] = time.perf_counter() - t
    t = time.perf_counter()
    gap = Eigengap(Z, sample, max(ks), seed)
    curves["eigengap"] = [gap(k) for k in ks]
    seconds["eigengap"] = time.perf_counter() - t

    chosen = {r: best_k(ks, curves[r]) for r in ("silhouette", "umap_silhouette", "eigengap")}
    chosen["stability_argmax"] = best_k(ks, curves["stability"])
    chosen["stability_edge"] = choose_k(ks, curves["stability"], "stability", stable_tol)
    chosen["stability"] = choose_k(ks, curves["stability"], "stability", stable_tol, curves["silhouette"])
    seconds["stability_argmax"] = seconds["stability_edge"] = seconds["stability"]

    fits: dict[int, dict] = {}

    def quality(k: int) -> dict:
        if k not in fits:
            labels = partition(Z, "kmeans", k, seed).labels  # what the package returns at k
            fits[k] = clustering_scores(y, labels)
        return fits[k]

    rows = []
    for rule in RULES:
        base = "stability" if rule.startswith("stability") else rule
        scores = np.asarray(curves[base], dtype=float)
        finite = scores[np.isfinite(scores)]
        flat = len(finite) > 2 and finite.max() - finite.min() < FLAT_SPREADS[base]
        k = chosen[rule]
        q = quality(k)
        rows.append(
            {
                "set": name,
                "n": len(Z),
                "true_k": true_k,
                "rule": rule,
                "k": k,
                "within_1": abs(k - true_k) <= 1,
                "flat": bool(flat),
                "accuracy": round(q["accuracy"], 4),
                "nmi": round(q["nmi"], 4),
                "seconds": round(seconds[rule], 2),
            }
        )
    at_truth = quality(true_k)
    return {
        "set": name,
        "n": len(Z),
        "dims": int(Z.shape[1]),
        "true_k": true_k,
        "ks": ks,
        "curves": {r: [round(float(v), 4) for v in c] for r, c in curves.items()},
        "rows": rows,
        "at_true_k": {"accuracy": round(at_truth["accuracy"], 4), "nmi": round(at_truth["nmi"], 4)},
        "seconds_decode": round(t_decode, 1),
        "seconds_fit": round(t_fit, 1),
        "fit_timings": {k: round(v, 2) for k, v in cl.timings_.items()},
    }


def print_result(res: dict) -> None:
    print(f"\n## {res['set']}: n = {res['n']}, true k = {res['true_k']}, Z dims = {res['dims']}, "
          f"fit {res['seconds_fit']} s; at the true k: ACC {res['at_true_k']['accuracy']:.3f} "
          f"NMI {res['at_true_k']['nmi']:.3f}")  # fmt: skip
    print("k:              " + " ".join(f"{k:>7d}" for k in res["ks"]))
    for r, c in res["curves"].items():
        print(f"{r:<16}" + " ".join(f"{v:7.3f}" for v in c))
    print("| rule | chosen k | true k | within 1 | ACC | NMI | seconds | note |")
    print("|---|---|---|---|---|---|---|---|")
    for row in res["rows"]:
        note = "curve is flat: no k is clearly better" if row["flat"] else ""
        print(f"| {row['rule']} | {row['k']} | {row['true_k']} | {'yes' if row['within_1'] else 'no'} | "
              f"{row['accuracy']:.3f} | {row['nmi']:.3f} | {row['seconds']:.1f} | {note} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/kchoice-cache"))
    ap.add_argument("--out", type=Path, default=None, help="append one JSON line per set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stable-tol", type=float, default=0.02, help="tolerance of the stability rule")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--summary-of", type=Path, default=None, help="print the tables of a saved --out file only")
    args = ap.parse_args()
    if args.summary_of:
        results = [json.loads(line) for line in args.summary_of.read_text().splitlines() if line.strip()]
        for res in results:
            print_result(res)
        summarize(results)
        return
    from pixsort.base.runtime import cpu_description, tune_cpu

    tune_cpu(args.threads)
    cpu = cpu_description()
    flags = ", ".join(cpu["flags"]) or "no listed flags"
    load = Path("/proc/loadavg").read_text().strip()
    print(f"CPU: {cpu['model']} ({flags}), {cpu['cores']} cores; load at start: {load}")
    results = []
    for name in args.sets.split(","):
        try:
            res = run_set(name, args.cache_dir, args.seed, args.stable_tol)
        except Exception:  # one broken set must not lose the others' results
            print(f"\n## {name}: FAILED\n{traceback.format_exc()}", flush=True)
            continue
        res["load"] = Path("/proc/loadavg").read_text().strip()
        print_result(res)
        sys.stdout.flush()
        results.append(res)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(res) + "\n")
    summarize(results)


def summarize(results: list[dict]) -> None:
    print("\n## Summary: sets where the rule chose within 1 of the true k")
    rules = list(dict.fromkeys(r["rule"] for res in results for r in res["rows"]))
    for rule in rules:
        hits = [r["set"] for res in results for r in res["rows"] if r["rule"] == rule and r["within_1"]]
        print(f"{rule:<16} {len(hits)}/{len(results)}  {', '.join(hits)}")
    for res in results:
        if not any(r["within_1"] for r in res["rows"]):
            flat = [r["rule"] for r in res["rows"] if r["flat"]]
            print(
                f"{res['set']}: no criterion came within 1 of the true k = {res['true_k']}"
                + (f"; flat curve (no k clearly better) by {', '.join(flat)}" if flat else "")
                + "; chose "
                + ", ".join(f"{r['rule']} {r['k']}" for r in res["rows"])
            )


if __name__ == "__main__":
    main()
