"""``PretrainedExtractor``: images -> pooled embeddings of a pretrained backbone."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pixsort.base.progress import progress, want_progress
from pixsort.base.runtime import DEVICES, PRECISIONS, native_bf16, select_device, tune_cpu

from .backbones import Backbone, create_backbone, get_pretrained_cfg, resolve_layers
from .backbones.efficientnet_lite import FEATURE_NAMES as LITE_FEATURE_NAMES
from .backbones.efficientnet_lite import VARIANTS as LITE_VARIANTS
from .backbones.imagenet import ClassGuesses, guess_classes
from .base import ImageExtractor
from .names import is_timm
from .preprocess import normalize_size, to_float_batch

__all__ = ["ONNX_MIN_IMAGES", "RUNTIMES", "PretrainedExtractor"]

RUNTIMES = ("auto", "torch", "onnx")
# precisions of this extractor: the package's, and int8 (ONNX Runtime only)
EXTRACTOR_PRECISIONS = (*PRECISIONS, "int8")
# below this many images to embed, "auto" does not export (the export costs ~20 s; ONNX
# Runtime saves ~1/60 s per image against torch on the AVX2 CPU of onnxgraph's note)
ONNX_MIN_IMAGES = 1024
# ONNX Runtime is taken by "auto" only where it measured this much faster than torch
ONNX_MIN_SPEEDUP = 1.1

log = logging.getLogger(__name__)

# Bump when preprocessing changes in a way that changes embeddings: it is part
# of extractor_id, so old cache entries stop matching.
PREPROCESS_VERSION = 3  # 3: images smaller than the input enlarged by torch's kernel, not Pillow's


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
# (AVX2 only), so "auto" picks fp32 there.  Measured on an AVX2-only AMD EPYC (2 cores,
# no avx512 at all), Lite1 at 240 px, batch 8, both threads: fp32 63.2 img/s, bf16
# 2.1 img/s (30x slower); bench/embed.py --n 512, best of 3: torch fp32 bare 76.3 /
# extractor 69.1 img/s, ONNX Runtime fp32 bare 88.2 / extractor 85.9 img/s.


def _resolve_dtype(precision: str, runtime: str = "auto") -> torch.dtype:
    if precision == "int8":  # the torch part stays float32: it is the reference
        return torch.float32
    if precision == "auto":  # ONNX Runtime computes float32: "auto" cannot mean bf16 there
        return torch.bfloat16 if native_bf16() and runtime != "onnx" else torch.float32
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
    device: torch.device


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
    precision : {"auto", "fp32", "bf16", "int8"}
        Compute precision.  ``"int8"``: ONNX Runtime on a statically quantized graph
        (mean cosine to float32 >= 0.99, checked at export); its own ``extractor_id``.
        ``"auto"``: bfloat16 on CPUs with native bf16 (AMX / AVX512-BF16, 2-2.4x
        faster), else float32; measurements above ``_resolve_dtype``.  Output is float32 either way; bf16 embeddings
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
    runtime : {"auto", "torch", "onnx"}
        What computes the network.  ``"onnx"``: ONNX Runtime on a graph exported once
        into ``export_dir`` and checked against torch (``features.onnxgraph``; the
        ``export`` extra).  ``"auto"``: ONNX Runtime on the CPU, in float32, where an
        export exists or at least :data:`ONNX_MIN_IMAGES` images are to be embedded, and
        where it measured :data:`ONNX_MIN_SPEEDUP` x faster than torch on this CPU model
        (measured once per CPU model, recorded beside the export); else torch.  fp32
        outputs agree with torch to cosine >= 0.999, so the runtime is not part of
        ``extractor_id``.
    device : {"auto", "cpu", "cuda", "mps"}
        Where torch computes (``base.runtime.select_device``): ``"auto"`` takes a GPU
        that torch sees.  ONNX Runtime runs on the CPU only.
    export_dir : path, optional
        Folder of ONNX exports; default ``<data cache>/onnx``.
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
        runtime: str = "auto",
        device: str = "auto",
        export_dir: str | os.PathLike | None = None,
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
        self.runtime = runtime
        self.device = device
        self.export_dir = export_dir
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
        if self.precision not in EXTRACTOR_PRECISIONS:
            raise ValueError(f"precision must be one of {EXTRACTOR_PRECISIONS}, got {self.precision!r}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.precision == "int8" and self.runtime == "torch":
            raise ValueError("precision 'int8' runs on ONNX Runtime: use runtime 'onnx' or 'auto'")
        if self.export_dir is not None and not isinstance(self.export_dir, (str, os.PathLike)):
            raise TypeError(f"export_dir must be a path, got {type(self.export_dir).__name__}")
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
        return (
            self.backbone,
            wp,
            layers,
            self.precision,
            self.channels_last,
            normalize_size(self.input_size),
            self.device,
        )

    def _prepared(self) -> tuple[Backbone, _Plan]:
        """The backbone ready for inference and the resolved plan, built once per settings."""
        key = self._net_key()
        if getattr(self, "_cached_key", None) != key:
            self._validate_params()
            tune_cpu()
            net = create_backbone(self.backbone, weights_path=self.weights_path, layers=self.layers)
            net.prepare_for_inference()
            device = select_device(self.device)
            if self.precision == "int8" and device.type != "cpu":
                raise ValueError(f"precision 'int8' runs on the CPU (ONNX Runtime), not on {device.type}")
            dtype = _resolve_dtype(self.precision, self.runtime) if device.type == "cpu" else torch.float32
            channels_last = _resolve_channels_last(self.channels_last)
            if channels_last:
                net = net.to(memory_format=torch.channels_last)
            if dtype != torch.float32:
                net = net.to(dtype)
            net = net.to(device)
            size = normalize_size(self.input_size) or tuple(net.pretrained_cfg.input_size[1:])
            self._cached_net, self._cached_plan, self._cached_key = net, _Plan(dtype, channels_last, size, device), key
            self._cached_onnx = None
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
        dtype = "int8" if self.precision == "int8" else {torch.float32: "fp32", torch.bfloat16: "bf16"}[plan.dtype]
        crop = "none" if self.crop_pct is None else f"{float(self.crop_pct):g}"
        return (
            f"PretrainedExtractor/{net.name}/weights={net.weights_id}/layers={'+'.join(net.layers)}"
            f"/input={plan.size[0]}x{plan.size[1]}/crop={crop}/{dtype}/pre{PREPROCESS_VERSION}"
        )

    def _input_size(self) -> tuple[int, int] | None:
        net, plan = self._prepared()
        plain = self.crop_pct is None and net.pretrained_cfg.interpolation == "bilinear"
        return plan.size if plain else None  # a crop or bicubic resize makes other pixels

    def imagenet_head(self) -> tuple[slice, Callable[[torch.Tensor], torch.Tensor]] | None:
        """The columns of :meth:`transform` output that hold the pooled input of the
        backbone's ImageNet-1k classifier, and that classifier (pooled ``(n, C)`` tensor ->
        logits ``(n, 1000)``); None where there is none: own weights (``weights_path``), a
        layer choice without ``head``, or a backbone whose head is not ImageNet-1k (timm
        models)."""
        net, _ = self._prepared()
        if self.weights_path is not None or net.pretrained_cfg.labels != "imagenet-1k" or "head" not in net.layers:
            return None
        start = sum(int(net.feature_dims[name]) for name in net.layers[: net.layers.index("head")])
        dtype = next(net.parameters()).dtype
        return slice(start, start + int(net.feature_dims["head"])), lambda pooled: net.classify_pooled(
            pooled.to(dtype)
        ).float()

    def class_guesses(self, features: np.ndarray, chunk: int = 4096) -> ClassGuesses | None:
        """The ImageNet class and group each row of :meth:`transform` output most likely
        shows: the backbone's own classifier head applied to the pooled ``head`` block.

        Parameters
        ----------
        features : ndarray, shape (n, n_features_out)
            This extractor's output (the mean over views, with test-time mirroring: the
            head is linear, so its logits are the mean of the views' logits).

        Returns
        -------
        ClassGuesses, or None where the output holds no ImageNet head (see
        :meth:`imagenet_head`).
        """
        head = self.imagenet_head()
        if head is None:
            return None
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.n_features_out:
            raise ValueError(f"expected features of shape (n, {self.n_features_out}), got {features.shape}")
        columns, classify = head
        return guess_classes(classify, features[:, columns], chunk)

    def __getstate__(self):
        state = super().__getstate__()
        for name in ("_cached_net", "_cached_plan", "_cached_key", "_cached_onnx"):
            state.pop(name, None)  # the network is rebuilt from the parameters
        return state

    # -------------------------------------------------------------- transform
    def _extract(self, images: np.ndarray) -> np.ndarray:
        net, plan = self._prepared()
        n, bs = len(images), int(self.batch_size)
        out = np.empty((n, net.feature_dim), dtype=np.float32)
        onnx = self._onnx_runner(images, n)
        show = want_progress(self.progress, n)
        label = f"embedding ({net.name}{', onnxruntime' if onnx is not None else ''})"
        with torch.inference_mode(), progress(label, n, show) as bar:
            for start in range(0, n, bs):
                batch = images[start : start + bs]
                x = self._float_batch(batch, channels_last=plan.channels_last and onnx is None)
                if onnx is not None:
                    out[start : start + len(batch)] = onnx(x.numpy())
                else:
                    out[start : start + len(batch)] = net.forward_features(x.to(plan.device)).float().cpu().numpy()
                bar.advance(len(batch))
        return out

    def _float_batch(self, images: np.ndarray, channels_last: bool) -> torch.Tensor:
        """uint8 ``images`` as the network's normalised input, in the plan's size and dtype."""
        net, plan = self._prepared()
        cfg = net.pretrained_cfg
        return to_float_batch(
            images,
            plan.size,
            cfg.mean,
            cfg.std,
            interpolation=cfg.interpolation,
            crop_pct=self.crop_pct,
            channels_last=channels_last,
            dtype=plan.dtype,
        )

    @property
    def runtime_(self) -> str:
        """``"onnx"`` or ``"torch"``: what computed the last batch ("torch" before any)."""
        return "onnx" if getattr(self, "_cached_onnx", None) else "torch"

    def _onnx_runner(self, images: np.ndarray, n: int):
        """The ONNX Runtime runner to use for these ``n`` images, or None for torch."""
        from pixsort.base.onnx import onnx_available

        net, plan = self._prepared()
        if self.runtime == "torch" or n == 0:
            return None
        if self._cached_onnx is not None:
            return self._cached_onnx
        forced = self.runtime == "onnx" or self.precision == "int8"
        if not forced and (plan.device.type != "cpu" or plan.dtype != torch.float32 or not onnx_available()):
            return None
        if plan.device.type != "cpu":
            raise ValueError(f"runtime 'onnx' runs on the CPU, not on {plan.device.type}: use --device cpu")
        if plan.dtype != torch.float32:
            raise ValueError("runtime 'onnx' computes float32 or int8, not bf16: use precision 'fp32' or 'auto'")
        from pixsort.data.cache import default_cache_dir

        from .onnxgraph import OnnxParityError, load_onnx_features, onnx_export_exists, record_speeds

        folder = Path(self.export_dir) if self.export_dir is not None else default_cache_dir() / "onnx"
        precision = "int8" if self.precision == "int8" else "fp32"
        if not forced and n < ONNX_MIN_IMAGES and not onnx_export_exists(net, plan.size, folder, precision):
            return None  # not worth an export
        try:
            runner = load_onnx_features(net, plan.size, folder, precision)
        except (OnnxParityError, RuntimeError, OSError) as exc:
            if forced:
                raise
            log.warning("ONNX Runtime not used (%s); torch computes the embeddings", exc)
            return None
        if not forced:
            speed = runner.speeds()
            if speed is None:
                sample = images[: min(len(images), 32)]
                x = self._float_batch(sample, channels_last=False)
                speed = record_speeds(
                    runner, net, x, x.contiguous(memory_format=torch.channels_last) if plan.channels_last else x
                )
            if speed["onnx"] < ONNX_MIN_SPEEDUP * speed["torch"]:
                log.info("torch embeds faster than ONNX Runtime on this CPU (%s)", speed)
                return None
        self._cached_onnx = runner
        return runner
