"""Embedding runtimes side by side on the same images, in one run: torch fp32, ONNX
Runtime fp32 and ONNX Runtime int8 (``PretrainedExtractor(runtime=, precision=)``).

For each: images/s of the embedding (mirror view included, as clustering computes it),
cosine of its embeddings to torch's, and the clustering accuracy (Hungarian ACC) and NMI
of the default ``ImageClusterer`` at the true k, so the cost of int8 is stated in the
unit users care about.  Each runtime gets its own empty cache folder (nothing is reused
between them); the ONNX exports are made before timing starts.

    flock /tmp/pixsort-heavy.lock python bench/runtime_acc.py --per-class 200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pixsort.base.runtime import cpu_description
from pixsort.cluster.images import ImageClusterer
from pixsort.cluster.metrics import clustering_scores
from pixsort.features.embed import PretrainedExtractor

CIFAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10_sample" / "train"
RUNTIMES = {"torch fp32": ("torch", "fp32"), "onnx fp32": ("onnx", "fp32"), "onnx int8": ("onnx", "int8")}


def load(per_class: int, seed: int = 0):
    classes = sorted(p.name for p in CIFAR.iterdir() if p.is_dir())
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c, name in enumerate(classes):
        files = sorted((CIFAR / name).glob("*.jpg"))
        for f in rng.permutation(len(files))[:per_class]:
            with Image.open(files[f]) as im:
                images.append(np.asarray(im.convert("RGB")))
            labels.append(c)
    return np.stack(images), np.array(labels), len(classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--backbone", default="efficientnet_lite1")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not CIFAR.is_dir():
        sys.exit(f"no CIFAR-10 sample at {CIFAR}")
    images, labels, k = load(args.per_class)
    root = Path(tempfile.mkdtemp(prefix="pixsort-runtimes-"))
    os.environ["PIXSORT_CACHE"] = str(root)  # the exports go to <root>/onnx, made before timing starts
    for runtime, precision in RUNTIMES.values():
        if runtime == "onnx":
            PretrainedExtractor(args.backbone, layers=2, runtime=runtime, precision=precision).transform(images[:2])
    probe = images[:: max(1, len(images) // 200)]
    rows, reference = {}, None
    for name, (runtime, precision) in RUNTIMES.items():
        extractor = PretrainedExtractor(args.backbone, layers=2, runtime=runtime, precision=precision, progress=False)
        plain = extractor.transform(probe)
        reference = plain if reference is None else reference
        cos = (plain * reference).sum(1) / np.linalg.norm(plain, axis=1) / np.linalg.norm(reference, axis=1)
        clusterer = ImageClusterer(
            features=args.backbone,
            runtime=runtime,
            precision=precision,
            n_clusters=k,
            cache_dir=root / name.replace(" ", "-"),  # an empty embedding cache for each runtime
            progress=False,
        )
        t0 = time.perf_counter()
        clusterer.fit(images)
        seconds = time.perf_counter() - t0
        scores = clustering_scores(labels, clusterer.labels_)
        rows[name] = {
            "fit_seconds": round(seconds, 1),
            "stage_seconds": {k: round(v, 1) for k, v in clusterer.timings_.items()},
            "embedded_images_per_s": round(2 * len(images) / clusterer.timings_.get("features", seconds), 1),
            "cosine_min": round(float(cos.min()), 4),
            "cosine_mean": round(float(cos.mean()), 4),
            "acc": round(scores["accuracy"], 4),
            "nmi": round(scores["nmi"], 4),
            "runtime_used": clusterer.extractor_.runtime_,
        }
        print(name, rows[name], flush=True)
    result = {"cpu": cpu_description(), "n_images": len(images), "backbone": args.backbone, "runtimes": rows}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
