"""The frozen part of a classifier in torch vs ONNX Runtime: images/s and agreement.

``partial:`` and ``probe:`` models run their frozen part (``ClassifierNet.features``:
preprocessing + the frozen backbone stages) once per training image, in
``classify.training.compute_features``.  This measures, on the same uint8 batches, the
same network object and the same threads:

* ``torch fp32``  - ``compute_features`` with ``set_precision("fp32")``;
* ``torch auto``  - ``compute_features`` with ``set_precision("auto")`` (bf16 autocast
  of the frozen part where the CPU has AVX512-BF16/AMX, else fp32);
* ``onnxruntime`` - the same ``features`` exported with ``torch.onnx.export(dynamo=True)``
  (uint8 NHWC in, float32 features out), run by an ONNX Runtime CPU session in batches
  of the same size.

The three are interleaved ``--rounds`` times (one of each per round) and the best and
median rounds reported, as wall-clock images/s and images per CPU-second of this
process (on a machine shared with other jobs, wall-clock mostly measures the
neighbours; CPU time much less so).  Agreement: cosine similarity per image (of the
flattened output) against torch fp32, and the largest absolute difference.

    python bench/onnx_features.py --model partial:efficientnet_lite0
    python bench/onnx_features.py --model probe:efficientnet_lite0 --n 256 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from pixsort.base.runtime import available_cores, native_bf16, tune_cpu
from pixsort.classify.networks import build_network, make_spec
from pixsort.classify.training import compute_features

XRAYS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "chest_xray" / "train"


def load_images(source: str, n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` uint8 RGB images (n, size, size, 3): chest X-ray JPEGs squashed to ``size``, or noise."""
    if source == "random":
        return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    from PIL import Image

    files = sorted(XRAYS.glob("*/*.jpeg"))
    if not files:
        sys.exit(f"no JPEGs under {XRAYS}; use --data random")
    files = [files[i] for i in np.random.default_rng(seed).permutation(len(files))[:n]]
    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, f in enumerate(files):
        with Image.open(f) as im:
            out[i] = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
    return out


class Features(torch.nn.Module):
    """uint8 (N, H, W, C) -> ``net.features`` (what compute_features returns)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.features(images.permute(0, 3, 1, 2).float() / 255.0)


def export_features(net, example: np.ndarray, path: Path) -> float:
    net.set_precision("fp32")
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Features(net).eval(),
            (torch.from_numpy(example[:2].copy()),),
            str(path),
            dynamo=True,
            input_names=["images"],
            output_names=["features"],
            dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1, max=1 << 20)}},
            external_data=False,
            verbose=False,
        )
    return time.perf_counter() - started


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="partial:efficientnet_lite0")
    ap.add_argument("--data", choices=("xray", "random"), default="xray")
    ap.add_argument("--n", type=int, default=256, help="images per measurement")
    ap.add_argument("--size", type=int, default=224, help="image and network input size")
    ap.add_argument("--batch-size", type=int, default=64, help="compute_features' batch (TrainConfig.eval_batch_size)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="default: the available cores")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()

    import onnxruntime as ort

    threads = args.threads or available_cores()
    tune_cpu(threads)
    torch.set_num_threads(threads)
    images = load_images(args.data, args.n, args.size)
    net = build_network(make_spec(args.model, 1, args.size), pretrained=True).eval()
    net.to(memory_format=torch.channels_last)  # as fit_network leaves it
    if not net.has_frozen_part:
        sys.exit(f"{args.model} has no frozen part")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "features.onnx"
        export_s = export_features(net, images, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

    def run_torch(precision: str, batch: np.ndarray) -> np.ndarray:
        net.set_precision(precision)
        return compute_features(net, batch, args.batch_size, channels_last=True).numpy()

    def run_onnx(batch: np.ndarray) -> np.ndarray:
        chunks = [
            session.run(["features"], {"images": batch[i : i + args.batch_size]})[0]
            for i in range(0, len(batch), args.batch_size)
        ]
        return np.concatenate(chunks)

    runs = {
        "torch fp32": lambda batch: run_torch("fp32", batch),
        "torch auto": lambda batch: run_torch("auto", batch),
        "onnxruntime": run_onnx,
    }
    for fn in runs.values():  # warm-up (lazy initialisation, kernel choice) on one batch
        fn(images[: args.batch_size])
    wall = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    outputs = {}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            out, w, c = timed(lambda fn=fn: fn(images))
            wall[name].append(w)
            cpu[name].append(c)
            outputs[name] = out

    net.set_precision("auto")
    reference = outputs["torch fp32"].reshape(len(images), -1).astype(np.float64)
    results = {}
    print(
        f"{args.model}: frozen part, {args.n} {args.data} images at {args.size} px, batch {args.batch_size}, "
        f"{threads} threads, {args.rounds} interleaved rounds; native bf16: {native_bf16()}; "
        f"onnxruntime {ort.__version__}, torch {torch.__version__}; export {export_s:.1f} s"
    )
    print(f"output {tuple(outputs['torch fp32'].shape[1:])} per image; auto precision -> {net.frozen_precision}")
    print(f"{'':<12} {'img/s best':>11} {'img/s median':>13} {'img/CPU-s best':>15} {'cos min':>9} {'max |diff|':>11}")
    for name in runs:
        got = outputs[name].reshape(len(images), -1).astype(np.float64)
        cos = (got * reference).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1) + 1e-30)
        row = {
            "images_per_s_best": args.n / min(wall[name]),
            "images_per_s_median": args.n / statistics.median(wall[name]),
            "images_per_cpu_s_best": args.n / min(cpu[name]),
            "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()),
            "max_abs_diff": float(np.abs(got - reference).max()),
        }
        results[name] = row
        print(
            f"{name:<12} {row['images_per_s_best']:>11.1f} {row['images_per_s_median']:>13.1f} "
            f"{row['images_per_cpu_s_best']:>15.1f} {row['cosine_min']:>9.6f} {row['max_abs_diff']:>11.2e}"
        )
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}))


if __name__ == "__main__":
    main()
