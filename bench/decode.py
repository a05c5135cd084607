"""Decode throughput: naive Pillow against pixsort's loader (a script, not a test).

    python bench/decode.py [--data ../shared/data/chest_xray_fullres] [--size 128] [--repeat 3]

Naive Pillow is what most notebooks do: ``Image.open(p).convert("RGB").resize((s, s))``.
pixsort decodes with JPEG draft mode, converts once, and writes to a memory-mapped
cache; the cache is disabled here (``use_cache=False``) so both sides decode every file.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pixsort.data import DecodeSettings, load_images, open_dataset
from pixsort.runtime import available_cores


def naive(paths: list[str], size: int) -> np.ndarray:
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            out[i] = np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    return out


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(here.parent / "shared" / "data" / "chest_xray_fullres"))
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    dataset = open_dataset(args.data)
    paths = dataset.paths
    settings = DecodeSettings(size=args.size, channels="RGB", resize="squash")
    megapixels = 0.0
    for p in paths:
        with Image.open(p) as im:
            megapixels += im.width * im.height / 1e6
    print(f"{len(paths)} files, {megapixels:.0f} megapixels, target {args.size}x{args.size}, "
          f"{available_cores()} cores, best of {args.repeat}")

    t_naive = best_of(lambda: naive(paths, args.size), args.repeat)
    t_single = best_of(lambda: load_images(dataset, settings, use_cache=False, workers=0, progress=False), args.repeat)
    workers = available_cores()
    t_workers = best_of(lambda: load_images(dataset, settings, use_cache=False, workers=workers, progress=False), args.repeat)

    n = len(paths)
    rows = [("naive Pillow (1 process)", t_naive), ("pixsort loader (1 process)", t_single),
            (f"pixsort loader ({workers} workers)", t_workers)]
    for name, t in rows:
        print(f"{name:32s} {n / t:8.1f} images/s  ({t:.2f} s)  x{t_naive / t:.2f} vs naive")

    # quality check: the draft decode must look like the full decode
    fast = load_images(dataset, settings, use_cache=False, workers=0, progress=False).images.astype(np.int16)
    full = naive(paths, args.size).astype(np.int16)
    print(f"mean absolute difference to the naive result: {np.abs(fast - full).mean():.2f} grey levels")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
