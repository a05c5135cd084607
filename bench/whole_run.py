"""Whole-run embedding throughput against the bare forward rate, pair by pair.

    flock /tmp/pixsort-heavy.lock python bench/whole_run.py --n 2000 --pairs 3

Each pair times, back to back:

(a) the bare backbone forward in this process: pre-made normalised float batches through
    what ``runtime="auto"`` picks on this CPU (the ONNX Runtime session, or the torch
    network in the dtype auto picks), as in ``bench/embed.py``;
(b) a whole ``pixsort embed`` of ``--n`` CIFAR-10 sample JPEGs (a class-stratified subset,
    linked into a scratch folder) in a fresh process with an empty decoded-image and
    embedding cache: start-up, listing, hashing, decoding, the views (the default one, or
    with ``--tta`` the mirror view too: 2 forwards an image), writing the set.  The ONNX
    export, made once per machine under the user cache, is reused.

The ratio of each pair is (b's forwards per second) / (a's forwards per second), with (a)
timed just before and just after (b) and averaged, so that a drift in the machine's speed
(this project's shared VMs drift by up to 25 % within minutes) reaches both sides; the
median pair is quoted.
Only train images are read.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed import CIFAR, bare_batches, bare_forward, bare_session, load_images, timed
from pixsort.base.runtime import cpu_description, tune_cpu
from pixsort.features import PretrainedExtractor


def linked_subset(folder: Path, n: int) -> int:
    """Symlink ``n`` train JPEGs (equal share per class, sorted names) into ``folder/<class>/``."""
    classes = sorted(p for p in (CIFAR / "train").iterdir() if p.is_dir())
    per = n // len(classes)
    for c in classes:
        (folder / c.name).mkdir(parents=True)
        for f in sorted(c.glob("*.jpg"))[:per]:
            (folder / c.name / f.name).symlink_to(f.resolve())
    return per * len(classes)


def bare_runner(backbone: str, batch_size: int, n: int):
    """A no-argument callable that pushes ``n`` images through the bare forward of what
    ``runtime="auto"`` embeds with here, and its name."""
    images = load_images("cifar", max(n, 1024))
    ext = PretrainedExtractor(backbone, batch_size=batch_size, progress=False)
    net, plan = ext._prepared()
    batches = bare_batches(net, plan, images, batch_size)
    runner = ext._onnx_runner(images, len(images))  # auto's own choice (exports if it must)
    if runner is not None:
        arrays = [b.float().contiguous().numpy() for b in batches]
        return (lambda: bare_session(runner, arrays, n)), "onnxruntime fp32"
    return (lambda: bare_forward(net, batches, n)), f"torch {str(plan.dtype).replace('torch.', '')}"


def whole_embed(data: Path, work: Path, batch_size: int, tta: bool) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, its last line) of one cold ``pixsort embed``."""
    cache, out = work / "cache", work / "store"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    exe = Path(sys.executable).with_name("pixsort")
    cmd = [str(exe), "embed", str(data), "--out", str(out), "--cache-dir", str(cache), "--batch-size", str(batch_size),
           "--tta" if tta else "--no-tta"]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"pixsort embed failed ({done.returncode}):\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    last = [line for line in done.stdout.splitlines() if line.strip()][-2:]
    return wall, cpu, " / ".join(last)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="efficientnet_lite1")
    ap.add_argument("--n", type=int, default=2000, help="images per whole run")
    ap.add_argument("--bare-n", type=int, default=1024, help="images per bare measurement")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--tta", action="store_true", help="embed the mirror view too (off by default, as in pixsort)")
    args = ap.parse_args(argv)
    tune_cpu()
    work = Path(tempfile.mkdtemp(prefix="pixsort-whole-"))
    try:
        n = linked_subset(work / "data", args.n)
        forward, runtime = bare_runner(args.backbone, args.batch_size, args.bare_n)
        forward()  # warm-up: kernels are set up per shape
        cpu = cpu_description()
        print(f"CPU: {cpu['model']} ({' '.join(cpu['flags'])}), {cpu['cores']} cores, "
              f"{torch.get_num_threads()} threads; {args.backbone}, {runtime}")  # fmt: skip
        views = 2 if args.tta else 1
        print(f"whole run: pixsort embed of {n} images ({views * n} forwards), cold caches\n")
        print("| pair | bare forwards/s | whole run s | whole-run forwards/s | ratio | ratio by CPU time |")
        print("|---|---|---|---|---|---|")
        ratios, cpu_ratios = [], []
        for p in range(args.pairs):
            before_wall, before_cpu = timed(forward)
            wall, cpu, last = whole_embed(work / "data", work, args.batch_size, args.tta)
            after_wall, after_cpu = timed(forward)
            bare_wall, bare_cpu = (before_wall + after_wall) / 2, (before_cpu + after_cpu) / 2
            bare, whole = args.bare_n / bare_wall, views * n / wall
            ratios.append(whole / bare)
            cpu_ratios.append((views * n / cpu) / (args.bare_n / bare_cpu))
            print(f"| {p + 1} | {bare:.1f} | {wall:.1f} | {whole:.1f} | {ratios[-1]:.3f} | {cpu_ratios[-1]:.3f} |",
                  flush=True)  # fmt: skip
        print(f"\nmedian ratio {np.median(ratios):.3f} (by CPU time {np.median(cpu_ratios):.3f}); child said: {last}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
