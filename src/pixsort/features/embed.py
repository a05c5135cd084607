"""``PretrainedExtractor``: images -> pooled embeddings of a pretrained backbone."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from pixsort.base.progress import progress, want_progress
from pixsort.base.runtime import PRECISIONS, native_bf16, tune_cpu

from .backbones import Backbone, create_backbone, get_pretrained_cfg, resolve_layers
from .backbones.efficientnet_lite import FEATURE_NAMES as LITE_FEATURE_NAMES
from .backbones.efficientnet_lite import VARIANTS as LITE_VARIANTS
from .base import ImageExtractor
from .names import is_timm
from .preprocess import normalize_size, to_float_batch

__all__ = ["PretrainedExtractor"]

# Bump when preprocessing changes in a way that changes embeddings: it is part
# of extractor_id, so old cache entries stop matching.
PREPROCESS_VERSION = 2


# Measured for EfficientNet-Lite0 at 224 px on this project's 2-core Xeon (AMX +
# AVX512-BF16), BatchNorm folded; single-threaded CPU time per image, min of 4
# interleaved rounds (robust to the other jobs sharing the machine):
#
#                          batch 32    batch 64
#   fp32, NCHW              39.6 ms     47.5 ms
#   fp32, channels_last     23.2 ms     24.8 ms
#   bf16, NCHW              25.9 ms     31.1 ms
#   bf16, channels_last     10.4 ms     12.6 ms   (autocast: 10.0 / 12.8 ms)
#   (BatchNorm not folded: fp32 cl 31.2 / 37.7 ms, bf16 cl 17.6 / 17.1 ms)
#
# Wall clock with both threads (best of 3, machine busy with other jobs, so
# absolute numbers are low) ranks them the same: batch 64: bf16 cl 40.1 img/s,
# bf16 autocast cl 36.2, fp32 cl 27.0, fp32 NCHW 20.0, bf16 NCHW 19.5.
#
# So channels_last always, and bf16 where the CPU has native bf16 (2-2.4x);
# casting the weights equals autocast in speed and output, and is simpler.
# bf16 embeddings differ from fp32 by 3-8 % (relative L2), cosine >= 0.989.
# Without native bf16 oneDNN emulates bf16 (on AVX512) or cannot run it fast at all
# (AVX2 only), so "auto" picks fp32 there.  The bf16-vs-fp32 ratio on such a CPU has
# not been measured yet: the sessions that ran these benchmarks had AMX.


def _resolve_dtype(precision: str) -> torch.dtype:
    if precision == "auto":
        return torch.bfloat16 if native_bf16() else torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float32


def _resolve_channels_last(setting) -> bool:
    return True if setting == "auto" else bool(setting)


@dataclass(frozen=True)
class _Plan:
    """Settings resolved for this machine; the part of them that changes the
    output (dtype) also goes into ``extractor_id``."""

    dtype: torch.dtype
    channels_last: bool
    size: tuple[int, int]


class PretrainedExtractor(ImageExtractor):
    """Embed images with a pretrained backbone (global-average-pooled features).

    Parameters
    ----------
    backbone : str
        A name from ``pixsort.features.backbones.list_backbones()`` or
        ``"timm:<model_name>"``.
    layers : None, int, str or sequence of str
        Feature maps to pool and concatenate: ``None`` = the classifier's input
        (1280-d for EfficientNet-Lite); ``k`` = the last ``k`` maps; or names
        such as ``("stage6", "stage7", "head")``.
    batch_size : int
        Images per forward pass.
    precision : {"auto", "fp32", "bf16"}
        Compute precision.  ``"auto"``: bfloat16 on CPUs with native bf16
        (AMX / AVX512-BF16, 2-2.4x faster), else float32; measurements above
        ``_resolve_dtype``.  Output is float32 either way; bf16 embeddings
        differ from float32 ones by 3-8 % (cosine >= 0.989), so the resolved
        dtype is part of ``extractor_id``.
    channels_last : {"auto", True, False}
        Memory format of activations; ``"auto"`` = True (1.6-2.5x faster
        here).  Does not change the output.
    input_size : None, int or (h, w)
        Network input size; ``None`` = the weights' native size (224 for Lite0).
    crop_pct : None or float in (0, 1]
        ``None`` resizes whole images (aspect squashed); a float centre-crops a
        square of that fraction of the shorter side first (ImageNet evaluation
        style, ``pretrained_cfg.crop_pct``).
    weights_path : path, optional
        Local weights file replacing the default pretrained weights.
    progress : {"auto", True, False}
        Progress bar on stderr; ``"auto"`` shows it for runs of 512+ images.

    Attributes
    ----------
    backbone_ : Backbone
        The loaded network (built on first use, not pickled).
    """

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        layers=None,
        batch_size: int = 64,
        precision: str = "auto",
        channels_last="auto",
        input_size=None,
        crop_pct: float | None = None,
        weights_path: str | os.PathLike | None = None,
        progress="auto",
    ):
        self.backbone = backbone
        self.layers = layers
        self.batch_size = batch_size
        self.precision = precision
        self.channels_last = channels_last
        self.input_size = input_size
        self.crop_pct = crop_pct
        self.weights_path = weights_path
        self.progress = progress

    # -------------------------------------------------------------- validation
    def _validate_params(self) -> None:
        if not isinstance(self.backbone, str):
            raise TypeError(f"backbone must be a string, got {type(self.backbone).__name__}")
        if not is_timm(self.backbone):
            get_pretrained_cfg(self.backbone)  # ValueError listing the known names
            if self.backbone in LITE_VARIANTS:  # layer names known without building the network
                resolve_layers(self.layers, LITE_FEATURE_NAMES)
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, (int, np.integer))
            or self.batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.channels_last not in ("auto", True, False):
            raise ValueError(f"channels_last must be 'auto', True or False, got {self.channels_last!r}")
        size = normalize_size(self.input_size, "input_size")
        if size is not None and min(size) < 16:
            raise ValueError(f"input_size must be at least 16 px, got {self.input_size!r}")
        if self.crop_pct is not None and not (isinstance(self.crop_pct, (int, float)) and 0 < self.crop_pct <= 1):
            raise ValueError(f"crop_pct must be None or a number in (0, 1], got {self.crop_pct!r}")
        if self.weights_path is not None and not isinstance(self.weights_path, (str, os.PathLike)):
            raise TypeError(f"weights_path must be a path, got {type(self.weights_path).__name__}")
        if self.progress not in ("auto", True, False):
            raise ValueError(f"progress must be 'auto', True or False, got {self.progress!r}")

    # ------------------------------------------------------------------ model
    def _net_key(self) -> tuple:
        wp = None if self.weights_path is None else os.fspath(self.weights_path)
        layers = self.layers if not isinstance(self.layers, list) else tuple(self.layers)
        return (self.backbone, wp, layers, self.precision, self.channels_last, normalize_size(self.input_size))

    def _prepared(self) -> tuple[Backbone, _Plan]:
        """The backbone ready for inference and the resolved plan, built once per settings."""
        key = self._net_key()
        if getattr(self, "_cached_key", None) != key:
            self._validate_params()
            tune_cpu()
            net = create_backbone(self.backbone, weights_path=self.weights_path, layers=self.layers)
            net.prepare_for_inference()
            dtype = _resolve_dtype(self.precision)
            channels_last = _resolve_channels_last(self.channels_last)
            if channels_last:
                net = net.to(memory_format=torch.channels_last)
            if dtype != torch.float32:
                net = net.to(dtype)
            size = normalize_size(self.input_size) or tuple(net.pretrained_cfg.input_size[1:])
            self._cached_net, self._cached_plan, self._cached_key = net, _Plan(dtype, channels_last, size), key
        return self._cached_net, self._cached_plan

    @property
    def backbone_(self) -> Backbone:
        return self._prepared()[0]

    @property
    def n_features_out(self) -> int:
        """Width ``D`` of ``transform`` output (loads the backbone)."""
        return self._prepared()[0].feature_dim

    @property
    def feature_blocks(self) -> list[int]:
        """Widths of the pooled layers concatenated in ``transform`` output, in order."""
        net = self._prepared()[0]
        return [int(net.feature_dims[name]) for name in net.layers]

    @property
    def extractor_id(self) -> str:
        net, plan = self._prepared()
        dtype = {torch.float32: "fp32", torch.bfloat16: "bf16"}[plan.dtype]
        crop = "none" if self.crop_pct is None else f"{float(self.crop_pct):g}"
        return (
            f"PretrainedExtractor/{net.name}/weights={net.weights_id}/layers={'+'.join(net.layers)}"
            f"/input={plan.size[0]}x{plan.size[1]}/crop={crop}/{dtype}/pre{PREPROCESS_VERSION}"
        )

    def __getstate__(self):
        state = super().__getstate__()
        for name in ("_cached_net", "_cached_plan", "_cached_key"):
            state.pop(name, None)  # the network is rebuilt from the parameters
        return state

    # -------------------------------------------------------------- transform
    def _extract(self, images: np.ndarray) -> np.ndarray:
        net, plan = self._prepared()
        cfg = net.pretrained_cfg
        n, bs = len(images), int(self.batch_size)
        out = np.empty((n, net.feature_dim), dtype=np.float32)
        show = want_progress(self.progress, n)
        with torch.inference_mode(), progress(f"embedding ({net.name})", n, show) as bar:
            for start in range(0, n, bs):
                batch = images[start : start + bs]
                x = to_float_batch(
                    batch,
                    plan.size,
                    cfg.mean,
                    cfg.std,
                    interpolation=cfg.interpolation,
                    crop_pct=self.crop_pct,
                    channels_last=plan.channels_last,
                    dtype=plan.dtype,
                )
                out[start : start + len(batch)] = net.forward_features(x).float().numpy()
                bar.advance(len(batch))
        return out
