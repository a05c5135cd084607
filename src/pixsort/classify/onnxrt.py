"""The frozen part of a classifier run by ONNX Runtime (the export and session
plumbing is :mod:`pixsort.base.onnx`).

Why the frozen part: ``partial:`` and ``probe:`` models compute it once per training
image (``training.compute_features``), and on the 2-core AVX512-BF16/AMX CPU this
was built on, ONNX Runtime computes ``ClassifierNet.features`` of
``partial:efficientnet_lite0`` at ~104 images per CPU-second against torch's ~27 (fp32)
and ~36 (bf16 autocast), with the same float32 output (cosine 1.000000, max |diff|
~2e-4); ``probe:`` ~84 against ~22 and ~29 (``bench/onnx_features.py``, 256 X-rays at
224 px, measured beside other work).  :func:`frozen_runner` is used only where its
output is torch's own within tolerance: a float32 frozen part on the CPU (bf16
autocast computes other numbers, and inference would disagree with the cache), enough
images to repay the export (~10 s), and a first batch that matches torch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pixsort.base.onnx import export_module, make_session, onnx_available
from pixsort.classify.networks import ClassifierNet

# below this many images the export costs more than ONNX Runtime saves (break-even ~700)
FROZEN_MIN_IMAGES = 1024
FROZEN_RTOL = FROZEN_ATOL = 1e-3

# ----------------------------------------------------------------------------- the frozen part


class _FrozenGraph(nn.Module):
    """uint8 ``(N, H, W, C)`` -> ``net.features`` (preprocessing + frozen part), float32."""

    def __init__(self, net: ClassifierNet):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.features(images.permute(0, 3, 1, 2).float() / 255.0)  # augment.to_float


class FrozenRunner:
    """``runner(uint8 batch)`` -> the frozen part's outputs as a float32 tensor, computed
    by an ONNX Runtime session."""

    name = "onnxruntime"

    def __init__(self, session):
        self.session = session

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        out = self.session.run(["features"], {"images": np.ascontiguousarray(images)})[0]
        return torch.from_numpy(out)


def frozen_runner(net: ClassifierNet, sample: np.ndarray, n_images: int) -> FrozenRunner | None:
    """An ONNX Runtime runner for ``net``'s frozen part, or None where torch should
    compute it: no frozen part, not on the CPU, a bf16 frozen part, fewer than
    :data:`FROZEN_MIN_IMAGES` images to compute, the ``export`` extra missing, an export
    that fails, or outputs on ``sample`` (uint8, a few of the images) that are not
    torch's within ``rtol = atol = 1e-3``."""
    if (
        not net.has_frozen_part
        or net.device.type != "cpu"
        or net.frozen_precision != "fp32"
        or n_images < FROZEN_MIN_IMAGES
        or len(sample) == 0
        or not onnx_available()
    ):
        return None
    sample = np.ascontiguousarray(sample[:16])
    example = np.concatenate([sample, sample])[:2] if len(sample) == 1 else sample[:2]
    was_training = net.training
    net.eval()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "frozen.onnx"
            export_module(_FrozenGraph(net), torch.from_numpy(example.copy()), path, "images", "features")
            runner = FrozenRunner(make_session(path, threads=torch.get_num_threads()))
        with torch.inference_mode():
            reference = _FrozenGraph(net)(torch.from_numpy(sample.copy())).numpy()
        got = runner(sample).numpy()
    except Exception:  # an optional speed-up: torch answers whenever it cannot
        return None
    finally:
        net.train(was_training)
    if got.shape != reference.shape or not np.allclose(got, reference, rtol=FROZEN_RTOL, atol=FROZEN_ATOL):
        return None
    return runner


__all__ = ["FROZEN_MIN_IMAGES", "FrozenRunner", "frozen_runner"]
