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

from pixsort.base.runtime import available_cores
from pixsort.data import DecodeSettings, load_images, open_dataset


def naive(paths: list[str], size: int) -> np.ndarray:
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            out[i] = np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    return out


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(here.parent / "shared" / "data" / "chest_xray_fullres"))
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    dataset = open_dataset(args.data)
    paths = dataset.paths
    settings = DecodeSettings(size=args.size, channels="RGB", resize="squash")
    megapixels = 0.0
    for p in paths:
        with Image.open(p) as im:
            megapixels += im.width * im.height / 1e6
    print(
        f"{len(paths)} files, {megapixels:.0f} megapixels, target {args.size}x{args.size}, "
        f"{available_cores()} cores, best of {args.repeat}"
    )

    workers = available_cores()
    contenders = {
        "naive Pillow (1 process)": lambda: naive(paths, args.size),
        "pixsort loader (1 process)": lambda: load_images(
            dataset, settings, use_cache=False, workers=0, progress=False
        ),
        f"pixsort loader ({workers} workers)": lambda: load_images(
            dataset, settings, use_cache=False, workers=workers, progress=False
        ),
    }
    best = {name: (float("inf"), float("inf")) for name in contenders}
    for _ in range(args.repeat):  # interleaved, so a busy spell hits every contender alike
        for name, fn in contenders.items():
            wall, cpu = timed(fn)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))

    n = len(paths)
    naive_wall, naive_cpu = best["naive Pillow (1 process)"]
    print(f"{'':32s} {'wall images/s':>14s} {'vs naive':>9s} {'CPU images/s':>13s} {'vs naive':>9s}")
    for name, (wall, cpu) in best.items():
        cpu_cols = f"{n / cpu:13.1f} {naive_cpu / cpu:8.2f}x" if "workers" not in name else f"{'(in workers)':>13s}"
        print(f"{name:32s} {n / wall:14.1f} {naive_wall / wall:8.2f}x {cpu_cols}")

    # quality check: the draft decode must look like the full decode
    fast = load_images(dataset, settings, use_cache=False, workers=0, progress=False).images.astype(np.int16)
    full = naive(paths, args.size).astype(np.int16)
    print(f"mean absolute difference to the naive result: {np.abs(fast - full).mean():.2f} grey levels")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
