"""Embedding throughput: bare backbone forward vs ``PretrainedExtractor.transform``.

The extractor starts from uint8 arrays and adds conversion, resizing,
normalisation and copying out; the requirement is that it keeps at least 90 %
of the bare forward throughput (pre-made float batches, inference mode, same
network object, same batch and input size, same dtype and memory format).

Run it under the shared lock so it does not overlap other benchmarks:

    flock /tmp/pixsort-heavy.lock python bench/embed.py --backbone efficientnet_lite0
    flock /tmp/pixsort-heavy.lock python bench/embed.py --data random --n 512
    flock /tmp/pixsort-heavy.lock python bench/embed.py --backbone efficientnet_lite1 --runtime onnx

With ``--runtime onnx`` the bare forward is the ONNX Runtime session itself on pre-made
float32 NCHW batches, and the extractor runs with ``runtime="onnx"`` (the export is made,
or found in ``--export-dir``, before timing starts).

The two measurements are interleaved ``--rounds`` times and the best round of
each is compared.  Besides wall-clock images/s the script reports images per
CPU-second of this process (all its threads): on a machine shared with other
jobs, wall-clock speed mostly measures the neighbours, CPU time much less so.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pixsort.base.runtime import tune_cpu
from pixsort.features import PretrainedExtractor
from pixsort.features.preprocess import to_float_batch

CIFAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10_sample"


def load_images(source: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` uint8 images (n, 32, 32, 3): CIFAR-10 sample JPEGs decoded with Pillow, or noise."""
    if source == "random":
        return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    from PIL import Image

    files = sorted(CIFAR.glob("train/*/*.jpg"))
    if not files:
        sys.exit(f"no JPEGs under {CIFAR}; use --data random")
    files = [files[i] for i in np.random.default_rng(seed).permutation(len(files))[:n]]
    out = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
    for i, f in enumerate(files):
        with Image.open(f) as im:
            out[i] = np.asarray(im.convert("RGB"))
    return out


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) spent in ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bare_batches(net, plan, images: np.ndarray, batch_size: int, count: int = 4) -> list[torch.Tensor]:
    """Up to ``count`` batches of ``images`` as the bare forward takes them: already resized,
    normalised, in the network's dtype and memory format (``plan``: the extractor's)."""
    cfg = net.pretrained_cfg
    return [
        to_float_batch(
            images[s : s + batch_size],
            plan.size,
            cfg.mean,
            cfg.std,
            interpolation=cfg.interpolation,
            channels_last=plan.channels_last,
            dtype=plan.dtype,
        )
        for s in range(0, min(len(images), count * batch_size), batch_size)
    ]


def bare_forward(net, batches: list[torch.Tensor], n: int) -> None:
    """``n`` images through ``net.forward_features``, cycling pre-made batches."""
    done, i = 0, 0
    with torch.inference_mode():
        while done < n:
            x = batches[i % len(batches)][: n - done]
            net.forward_features(x)
            done += len(x)
            i += 1


def bare_session(runner, batches: list[np.ndarray], n: int) -> None:
    """``n`` images through the ONNX Runtime ``runner``, cycling pre-made batches."""
    done, i = 0, 0
    while done < n:
        x = batches[i % len(batches)][: n - done]
        runner(x)
        done += len(x)
        i += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--data", choices=("cifar", "random"), default="cifar")
    ap.add_argument("--n", type=int, default=1024, help="images per measurement")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--input-size", type=int, default=None, help="default: the backbone's own")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    ap.add_argument("--channels-last", default="auto", choices=("auto", "true", "false"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runtime", default="torch", choices=("torch", "onnx"))
    ap.add_argument("--export-dir", default=None, help="ONNX exports (default: a temporary folder)")
    args = ap.parse_args()
    if args.runtime == "onnx" and args.export_dir is None:
        import tempfile

        args.export_dir = tempfile.mkdtemp(prefix="pixsort-onnx-")

    tune_cpu()
    images = load_images(args.data, args.n)
    cl = {"auto": "auto", "true": True, "false": False}[args.channels_last]
    ext = PretrainedExtractor(
        args.backbone,
        batch_size=args.batch_size,
        precision=args.precision,
        channels_last=cl,
        input_size=args.input_size,
        progress=False,
        runtime=args.runtime,
        export_dir=args.export_dir,
    )
    net, plan = ext._prepared()  # the very network transform() uses
    batches = bare_batches(net, plan, images, args.batch_size)
    n = len(images)
    forward = lambda: bare_forward(net, batches, n)
    if args.runtime == "onnx":
        runner = ext._onnx_runner(images, n)  # the very session transform() uses
        arrays = [b.float().contiguous().numpy() for b in batches]
        forward = lambda: bare_session(runner, arrays, n)
    print(
        f"{ext.extractor_id}\n{n} {args.data} images, batch {args.batch_size}, "
        f"runtime {args.runtime}, channels_last={plan.channels_last}, {torch.get_num_threads()} threads"
    )

    forward()  # warm-up: oneDNN / ONNX Runtime set up their kernels per shape
    ext.transform(images[: args.batch_size])
    bare_t, ext_t = [], []  # (wall, cpu) per round
    for r in range(args.rounds):
        bare_t.append(timed(forward))
        ext_t.append(timed(lambda: ext.transform(images)))
        print(
            f"  round {r + 1}: bare {n / bare_t[-1][0]:7.1f} img/s ({n / bare_t[-1][1]:6.1f} img/CPU-s)   "
            f"extractor {n / ext_t[-1][0]:7.1f} img/s ({n / ext_t[-1][1]:6.1f} img/CPU-s)",
            flush=True,
        )
    for label, k in (("wall clock", 0), ("CPU time", 1)):
        unit = "img/s" if k == 0 else "img/CPU-s"
        bare, extr = n / min(t[k] for t in bare_t), n / min(t[k] for t in ext_t)
        verdict = "meets" if extr >= 0.9 * bare else "MISSES"
        print(
            f"best, {label}: bare forward {bare:.1f} {unit}, extractor {extr:.1f} {unit}, "
            f"ratio {extr / bare:.3f} ({verdict} the 0.90 requirement)"
        )


if __name__ == "__main__":
    main()
