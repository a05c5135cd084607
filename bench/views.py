"""More test-time views of each image than the default (whole image + its mirror): a centre
crop of 0.875 of the side and a 192 px input, each with its mirror, alone and averaged with
the default embedding, through the default stages at the true k (``fusion.stages``): the
whole set with seeds 0-2 and class-stratified 2,000-image draws 0-3.

    flock /tmp/pixsort-heavy.lock python bench/views.py STORE --cache /tmp/views

STORE is ``pixsort embed DATA --out STORE`` with the default features (its paths are decoded
again for the extra views, whose embeddings are kept in ``--cache``).  Train images only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fusion import stages
from params_n import stratified
from pixsort.base.runtime import cpu_description
from pixsort.features import PretrainedExtractor
from pixsort.features.extract import extractor_from_config
from pixsort.features.store import read_embedding_set

VIEWS = {"crop 0.875": {"crop_pct": 0.875}, "input 192": {"input_size": 192}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", type=Path)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/views"))
    args = ap.parse_args(argv)
    store = read_embedding_set(args.store)
    y, base = np.asarray(store.labels), np.asarray(store.vectors)
    default = extractor_from_config(store.extractor_config)
    args.cache.mkdir(parents=True, exist_ok=True)
    images = None
    extra = {}
    for name, settings in VIEWS.items():
        file = args.cache / f"{name.replace(' ', '-')}.npy"
        if not file.exists():
            if images is None:
                images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in store.paths])
            t0 = time.perf_counter()
            extractor = PretrainedExtractor(default.backbone, layers=default.layers, progress=False, **settings)
            both = extractor.transform(images) + extractor.transform(np.ascontiguousarray(images[:, :, ::-1]))
            np.save(file, both / 2)
            print(f"{name}: {2 * len(images)} forwards in {time.perf_counter() - t0:.0f} s", flush=True)
        extra[name] = np.load(file)
    variants = {"default (whole + mirror)": base}
    for name, vectors in extra.items():
        variants[f"{name} + mirror"] = vectors
        variants[f"mean(default, {name})"] = (base + vectors) / 2
    variants["mean(default, all)"] = (base + sum(extra.values())) / (1 + len(extra))
    blocks, k = list(default.feature_blocks), len(np.unique(y))
    print(f"CPU: {cpu_description()}\n\n| views | ACC {len(y)} (seeds 0-2) | ACC 2,000 (draws 0-3) |\n|---|---|---|")
    for name, raw in variants.items():
        whole = [stages(raw, blocks, y, k, seed) for seed in range(3)]
        small = [stages(raw[pick], blocks, y[pick], k, d) for d in range(4) for pick in [stratified(y, 2000, d)]]
        print(f"| {name} | {np.mean(whole):.3f} ({' '.join(f'{a:.3f}' for a in whole)}) | "
              f"{np.mean(small):.3f} ({' '.join(f'{a:.3f}' for a in small)}) |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
