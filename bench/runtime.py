"""Effect of pixsort's start-up CPU tuning (glibc mallopt(M_MMAP_MAX, 0)) on torch work.

    python bench/runtime.py [--seconds 20]

Each configuration runs in a fresh process (the malloc setting is process-wide and can
only be applied before the allocations it should affect): a VGG-like training step at
batch 16 / 128 px (the seed CNN's shape) and a batched conv-net forward.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, os, sys, time
import torch, torch.nn as nn
from pixsort.base.runtime import tune_cpu
tune_cpu()
torch.manual_seed(0)
seconds = float(sys.argv[1])

def vgg():
    layers, c = [], 3
    for f in (32, 64, 128, 256):
        layers += [nn.Conv2d(c, f, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c = f
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(256 * 8 * 8, 1))

def rate(step, batch):
    step(); step()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step(); n += batch
    return n / (time.perf_counter() - t0)

model = vgg(); opt = torch.optim.Adam(model.parameters(), 1e-3)
x = torch.randn(16, 3, 128, 128); y = torch.rand(16, 1).round()
def train_step():
    opt.zero_grad(); loss = nn.functional.binary_cross_entropy_with_logits(model(x), y); loss.backward(); opt.step()
xb = torch.randn(64, 3, 128, 128)
def infer_step():
    with torch.inference_mode():
        model(xb)
print(json.dumps({"train": rate(train_step, 16), "infer": rate(infer_step, 64)}))
"""


def run(env_extra: dict, seconds: float) -> dict:
    env = {**os.environ, **env_extra}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(seconds)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    plain = run({"PIXSORT_NO_TUNE": "1"}, args.seconds)
    tuned = run({}, args.seconds)
    for key, label in (("train", "seed-CNN train step, batch 16, 128 px"), ("infer", "same net forward, batch 64")):
        print(
            f"{label:40s} untuned {plain[key]:7.1f} img/s   tuned {tuned[key]:7.1f} img/s   "
            f"{100 * (tuned[key] / plain[key] - 1):+.0f}%"
        )


if __name__ == "__main__":
    t = time.time()
    main()
    print(f"({time.time() - t:.0f} s)")
