"""ONNX plumbing shared by the export and the training loop: a torch module to an ONNX
file (``torch.onnx.export(dynamo=True)``, a dynamic batch axis, quietly), an ONNX
Runtime CPU session, and the frozen part of a network run by ONNX Runtime.

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

import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pixsort.base.runtime import available_cores
from pixsort.classify.networks import ClassifierNet

EXPORTER = "torch.onnx.export(dynamo=True)"
INSTALL_HINT = "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'pixsort[export]'"
# below this many images the export costs more than ONNX Runtime saves (break-even ~700)
FROZEN_MIN_IMAGES = 1024
FROZEN_RTOL = FROZEN_ATOL = 1e-3


def onnx_available() -> bool:
    """Whether onnx, onnxscript and onnxruntime import (the ``export`` extra)."""
    try:
        require_onnx()
    except ImportError:
        return False
    return True


def require_onnx() -> None:
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError as exc:
            raise ImportError(f"{INSTALL_HINT} ({exc})") from exc


def export_module(
    module: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike,
    input_name: str,
    output_name: str,
    opset: int | None = None,
) -> None:
    """``module(example)`` as the ONNX file ``path``: the batch axis dynamic, weights inside
    the file, the exporter's warnings (torchvision ops, its internals) silenced.  Errors
    come back as RuntimeError with the exporter's first line."""
    require_onnx()
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=True,
                input_names=[input_name],
                output_names=[output_name],
                dynamic_shapes={next(iter(_forward_args(module))): {0: batch}},
                opset_version=opset,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # the exporter's own errors are long; keep the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RuntimeError(f"torch.onnx.export failed: {type(exc).__name__}: {first}") from exc
    finally:
        onnx_logger.setLevel(level)


def _forward_args(module: nn.Module) -> list[str]:
    import inspect

    return [p for p in inspect.signature(module.forward).parameters if p != "self"]


def make_session(path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime CPU session on ``path`` with ``threads`` intra-op threads (default:
    the available cores) and one inter-op thread."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or available_cores())
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


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


__all__ = [
    "EXPORTER",
    "FROZEN_MIN_IMAGES",
    "FrozenRunner",
    "export_module",
    "frozen_runner",
    "make_session",
    "onnx_available",
    "require_onnx",
]
