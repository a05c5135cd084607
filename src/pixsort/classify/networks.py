"""Classifier architectures by name, each a :class:`ClassifierNet`.

Every network is ``preprocess -> frozen -> trainable -> logits``:

* ``preprocess`` takes float images ``(N, C, H, W)`` in ``[0, 1]`` of any size,
  matches the channels, resizes to the network's input size (so PneumoniaMNIST's
  28x28 is upsampled inside the model) and normalises;
* ``frozen`` is a part whose weights never change (empty for the seed CNNs and for
  full fine-tuning).  Its outputs can be computed once and cached, which is what
  makes linear probes and last-blocks fine-tuning fast on a CPU;
* ``trainable`` ends in ``n_outputs`` logits: 1 for two classes (sigmoid), else one
  per class (softmax).

Names understood by :func:`parse_model_name`:

``seed-cnn``
    The published baseline: 4 VGG-like blocks (3x3 conv 32/64/128/256 + ReLU + 2x2
    max-pool), flatten, one sigmoid unit; 128x128 RGB, Adam 1e-3, 20 epochs, batch 16.
``seed-cnn-dropout``
    The second published variant: the same blocks, a fifth pooling, two dense layers
    with 40 % dropout (~823k parameters), trained on classes balanced by augmented
    copies of the minority class.
``probe:<backbone>``
    Linear classifier on the frozen pooled embedding of a pretrained backbone.
``mlp:<backbone>``
    A small MLP (one hidden layer, dropout) on the same frozen embedding.
``partial:<backbone>``
    The last ``train_blocks`` stages + head of the backbone are fine-tuned, the rest
    is frozen (its feature maps are cached).  EfficientNet-Lite only.
``finetune:<backbone>``
    The whole backbone fine-tuned with discriminative learning rates (each earlier
    stage gets a smaller rate).
``timm:<name>``
    Shorthand for ``finetune:timm:<name>`` where timm is installed.

``<backbone>`` is a name from :func:`pixsort.features.backbones.list_backbones` or
``timm:<name>``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from pixsort.base.runtime import PRECISIONS, check_precision, native_bf16
from pixsort.features.names import TIMM_PREFIX, is_timm, split_prefix

SEED_MODELS = ("seed-cnn", "seed-cnn-dropout")
TRANSFER_MODES = ("probe", "mlp", "partial", "finetune")
DEFAULT_TRAIN_BLOCKS = 2


# ----------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class Recipe:
    """Default training settings of a model family; any can be overridden by the user."""

    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "adamw"  # "adam" (the seed's, no weight decay) or "adamw"
    weight_decay: float = 1e-4
    schedule: str = "onecycle"  # "constant" | "onecycle" | "cosine"
    augment: str = "light"  # a preset of pixsort.classify.augment
    balance: str = "weights"  # "none" | "weights" | "sampler" | "oversample"
    label_smoothing: float = 0.0
    mixup: float = 0.0  # Beta alpha; 0 = off
    views: str = "none"  # fixed views whose cached features the trainable part learns from
    patience: int | None = 5  # epochs without improvement before stopping; None = never
    image_size: int = 224
    target_sensitivity: float | None = None  # two classes: the threshold rule (None: Youden's J)


# the published baseline, faithfully: no balancing, no augmentation, fixed lr, all 20 epochs
_SEED_RECIPE = Recipe(epochs=20, batch_size=16, lr=1e-3, optimizer="adam", weight_decay=0.0, schedule="constant",
                      augment="none", balance="none", patience=None, image_size=128)  # fmt: skip
# cached embeddings: an epoch costs milliseconds, so train long and stop on validation
_FROZEN_RECIPE = Recipe(epochs=200, batch_size=64, lr=1e-3, weight_decay=1e-3, schedule="cosine", augment="none",
                        balance="weights", patience=25)  # fmt: skip

# the last stages and the head train on cached feature maps of the frozen ones
# Measured with bench/xray_shift.py: trained on the Kaggle chest X-ray train split, the
# threshold chosen on validation carved from it by patient, measured on other patients
# (chest_xray_external_val).  Without augmentation (12 epochs) the external ROC-AUC was
# 0.885 and the specificity 0.44; a frozen probe 0.965 / 0.57.  With the X-ray
# augmentation (which breaks the aspect-ratio shortcut), label smoothing 0.1 and 6
# epochs: AUC 0.966 and, at the highest threshold with sensitivity >= 0.95 on the carved
# split, sensitivity 0.978 and specificity 0.922 on the external set (2-core AMX Xeon,
# 12 min).  The threshold rule is part of the recipe: Youden's J on the carved split
# gave specificity 0.81 there.
_PARTIAL_RECIPE = Recipe(epochs=6, batch_size=32, lr=1e-3, weight_decay=1e-2, schedule="onecycle", augment="xray",
                         balance="weights", label_smoothing=0.1, patience=None, target_sensitivity=0.95)  # fmt: skip
_FINETUNE_RECIPE = Recipe(epochs=8, batch_size=32, lr=1e-3, weight_decay=1e-2, schedule="onecycle", augment="light",
                          balance="weights", patience=3)  # fmt: skip

RECIPES = {
    "seed-cnn": _SEED_RECIPE,
    "seed-cnn-dropout": replace(_SEED_RECIPE, balance="oversample"),  # the second published variant
    "probe": _FROZEN_RECIPE,
    "mlp": _FROZEN_RECIPE,
    "partial": _PARTIAL_RECIPE,
    "finetune": _FINETUNE_RECIPE,
}


@dataclass(frozen=True)
class ModelName:
    """A parsed model name: family (a key of RECIPES) and backbone, if any."""

    family: str
    backbone: str | None = None

    def __str__(self) -> str:
        return self.family if self.backbone is None else f"{self.family}:{self.backbone}"


def parse_model_name(name: str) -> ModelName:
    """``"seed-cnn"`` / ``"probe:efficientnet_lite0"`` / ``"timm:resnet18"`` -> ModelName."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model must be a non-empty string, got {name!r}")
    name = name.strip()
    if name in SEED_MODELS:
        return ModelName(name)
    if is_timm(name):
        return ModelName("finetune", name)
    family, backbone = split_prefix(name)
    if not family:
        from pixsort.features.backbones import list_backbones

        if name in list_backbones():  # a bare backbone name: the recommended transfer mode
            return ModelName(RECOMMENDED_MODE, name)
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(list_models())}")
    if family not in TRANSFER_MODES or not backbone:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(list_models())}")
    return ModelName(family, backbone)


# The transfer mode a bare backbone name means.  Measured with bench/classify.py on the chest
# X-ray train split (patient-grouped 15 % validation, 2-core CPU): partial:efficientnet_lite0
# reached validation ROC-AUC 0.9985 in 883 s (--max-minutes 18), probe: 0.9975 in 821 s.
RECOMMENDED_MODE = "partial"
# what ``pixsort train`` and ``ImageClassifier()`` train when no model is named
DEFAULT_MODEL = "partial:efficientnet_lite0"


def list_models() -> list[str]:
    """Model names to show users (any ``timm:<name>`` works too where timm imports)."""
    try:
        from pixsort.features.backbones import list_backbones

        backbones = list_backbones()
    except Exception:  # the features stage is optional for the seed CNNs
        backbones = []
    return [*SEED_MODELS, *(f"{m}:{b}" for m in TRANSFER_MODES for b in backbones), f"{TIMM_PREFIX}<name>"]


# ----------------------------------------------------------------------------- network


def _autocast(precision: str):
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Preprocess(nn.Module):
    """Float ``(N, C, H, W)`` in [0, 1] -> the network's normalised input.

    Grey inputs are repeated to 3 channels (and colour averaged to 1) as needed;
    the spatial size is matched with bilinear interpolation (antialiased when
    shrinking).  ``mean``/``std`` are buffers, so they travel with the weights.
    """

    def __init__(self, input_size: tuple[int, int], in_channels: int, mean, std):
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.in_channels = int(in_channels)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            x = x.mean(dim=1, keepdim=True) if self.in_channels == 1 else x[:, :1].expand(-1, self.in_channels, -1, -1)
        if tuple(x.shape[-2:]) != self.input_size:
            shrink = x.shape[-2] > self.input_size[0] or x.shape[-1] > self.input_size[1]
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=shrink)
        return (x - self.mean) / self.std


class ClassifierNet(nn.Module):
    """``preprocess -> frozen -> trainable``; see the module docstring.

    Attributes
    ----------
    spec : dict
        Everything needed to rebuild the architecture (saved in ``model.json``).
    gradcam_layer : nn.Module or None
        The last convolutional layer, for Grad-CAM.
    """

    def __init__(
        self,
        spec: dict,
        preprocess: Preprocess,
        frozen: nn.Module,
        trainable: nn.Module,
        gradcam_layer: nn.Module | None = None,
        lr_groups: list[tuple[list[nn.Parameter], float]] | None = None,
    ):
        super().__init__()
        self.spec = spec
        self.preprocess = preprocess
        self.frozen = frozen
        self.trainable = trainable
        # kept by name: a second reference would duplicate its weights in the state dict
        self.gradcam_layer_name = next((n for n, m in self.named_modules() if m is gradcam_layer), None)
        self._lr_groups = lr_groups
        for p in self.frozen.parameters():
            p.requires_grad_(False)
        self.frozen.eval()

    @property
    def gradcam_layer(self) -> nn.Module | None:
        return self.get_submodule(self.gradcam_layer_name) if self.gradcam_layer_name else None

    @property
    def device(self) -> torch.device:
        """Where the weights are (inputs go there too)."""
        return next(self.parameters()).device

    @property
    def has_frozen_part(self) -> bool:
        return any(True for _ in self.frozen.parameters())

    def train(self, mode: bool = True) -> ClassifierNet:
        super().train(mode)
        self.frozen.eval()  # frozen BatchNorm keeps its running statistics
        return self

    frozen_precision = "fp32"
    trainable_precision = "fp32"

    def set_precision(self, precision: str) -> ClassifierNet:
        """``fp32``, ``bf16`` (autocast) or ``auto``: bf16 where it is measurably faster on
        this CPU - the frozen part (inference) and trainable parts without depthwise
        convolutions (whose bf16 backward is slower than fp32 on CPU) - if the CPU
        has native bf16 (AVX512-BF16 / AMX)."""
        if check_precision(precision) == "auto":
            fast = native_bf16()
            depthwise = any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in self.trainable.modules())
            self.frozen_precision = "bf16" if fast and self.has_frozen_part else "fp32"
            self.trainable_precision = "bf16" if fast and not depthwise else "fp32"
        else:
            self.frozen_precision = self.trainable_precision = precision
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the frozen part (what the trainable part sees), float32."""
        x = self.preprocess(x)
        if not self.has_frozen_part:
            return x
        with _autocast(self.frozen_precision):
            return self.frozen(x).float()

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of the trainable part for ``features`` (float32)."""
        with _autocast(self.trainable_precision):
            return self.trainable(features).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, n_outputs)`` for float images ``(N, C, H, W)`` in [0, 1]."""
        return self.head(self.features(x))

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Optimizer parameter groups: discriminative rates where the model defines them.

        Biases and normalisation weights get no weight decay.
        """
        groups = self._lr_groups or [(list(self.trainable.parameters()), 1.0)]
        out = []
        for params, scale in groups:
            params = [p for p in params if p.requires_grad]
            decay = [p for p in params if p.ndim > 1]
            no_decay = [p for p in params if p.ndim <= 1]
            for ps, wd in ((decay, weight_decay), (no_decay, 0.0)):
                if ps:
                    out.append({"params": ps, "lr": lr * scale, "lr_scale": scale, "weight_decay": wd})
        return out

    def n_parameters(self, trainable_only: bool = False) -> int:
        params = self.trainable.parameters() if trainable_only else self.parameters()
        return sum(p.numel() for p in params)


# ----------------------------------------------------------------------------- seed CNNs


def _vgg_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))


def _seed_trunk(in_channels: int) -> nn.Sequential:
    widths = (32, 64, 128, 256)
    blocks, c = [], in_channels
    for w in widths:
        blocks.append(_vgg_block(c, w))
        c = w
    return nn.Sequential(*blocks)


def _flat_size(module: nn.Module, in_channels: int, size: tuple[int, int]) -> int:
    with torch.no_grad():
        return int(module(torch.zeros(1, in_channels, *size)).numel())


def _build_seed(spec: dict) -> ClassifierNet:
    size = tuple(spec["input_size"])
    c = spec["in_channels"]
    if min(size) < 16:
        raise ValueError(f"{spec['model']} needs images of at least 16x16 (4 poolings), got {size}")
    trunk = _seed_trunk(c)
    if spec["model"] == "seed-cnn":
        head = nn.Sequential(nn.Flatten(), nn.Linear(_flat_size(trunk, c, size), spec["n_outputs"]))
    else:
        # a fifth pooling (adaptive, so any input size works) keeps the dense layers small
        pool = nn.AdaptiveMaxPool2d((4, 4))
        head = nn.Sequential(
            pool,
            nn.Flatten(),
            nn.Linear(256 * 16, 104),
            nn.ReLU(inplace=True),
            nn.Dropout(0.4),
            nn.Linear(104, 64),
            nn.ReLU(inplace=True),
            nn.Dropout(0.4),
            nn.Linear(64, spec["n_outputs"]),
        )
    trainable = nn.Sequential(trunk, head)
    pre = Preprocess(size, c, spec["mean"], spec["std"])
    return ClassifierNet(spec, pre, nn.Identity(), trainable, gradcam_layer=trunk[-1][0])


# ----------------------------------------------------------------------------- transfer


class _PooledHead(nn.Module):
    """Remaining backbone stages -> global average pool -> dropout -> linear."""

    def __init__(self, body: nn.Module, width: int, n_outputs: int, dropout: float):
        super().__init__()
        self.body = body
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.body(x).mean(dim=(2, 3))))


class _BackboneFeatures(nn.Module):
    """Wraps a Backbone so ``forward`` gives the pooled embedding."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)


def _linear_head(width: int, n_outputs: int, hidden: int, dropout: float) -> nn.Module:
    if hidden:
        return nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(width, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_outputs),
        )
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(width, n_outputs))


def _build_transfer(spec: dict, pretrained: bool) -> ClassifierNet:
    from pixsort.features.backbones import create_backbone

    mode, n_out = spec["mode"], spec["n_outputs"]
    backbone = create_backbone(spec["backbone"], pretrained=pretrained, weights_path=spec.get("weights_path"))
    if isinstance(getattr(backbone, "classifier", None), nn.Linear):
        backbone.classifier = nn.Identity()  # the ImageNet head is never used here: don't save 1.3M weights
    pre = Preprocess(tuple(spec["input_size"]), 3, spec["mean"], spec["std"])
    if mode in ("probe", "mlp"):
        backbone.set_layers(spec.get("layers"))
        hidden = 256 if mode == "mlp" else 0
        head = _linear_head(backbone.feature_dim, n_out, hidden, spec.get("dropout", 0.2))
        return ClassifierNet(spec, pre, _BackboneFeatures(backbone), head, gradcam_layer=_last_conv(backbone))
    if mode == "partial":
        if not all(hasattr(backbone, a) for a in ("stem", "stages", "head")):
            raise ValueError(
                f"partial fine-tuning needs an EfficientNet-Lite backbone, not {spec['backbone']!r}; "
                "use finetune: or probe:"
            )
        k = int(spec.get("train_blocks", DEFAULT_TRAIN_BLOCKS))
        n_stages = len(backbone.stages)
        if not 1 <= k <= n_stages:
            raise ValueError(f"train_blocks must be in 1..{n_stages}, got {k}")
        frozen = nn.Sequential(backbone.stem, *backbone.stages[: n_stages - k])
        body = nn.Sequential(*backbone.stages[n_stages - k :], backbone.head)
        head = _PooledHead(body, backbone.feature_dims["head"], n_out, spec.get("dropout", 0.2))
        return ClassifierNet(spec, pre, frozen, head, gradcam_layer=backbone.head.conv)
    if mode == "finetune":
        backbone.set_layers(None)
        head = _linear_head(backbone.feature_dim, n_out, 0, spec.get("dropout", 0.2))
        trainable = nn.Sequential(_BackboneFeatures(backbone), head)
        return ClassifierNet(
            spec,
            pre,
            nn.Identity(),
            trainable,
            gradcam_layer=_last_conv(backbone),
            lr_groups=_discriminative_groups(backbone, head),
        )
    raise ValueError(f"unknown transfer mode {mode!r}")


def _last_conv(module: nn.Module) -> nn.Module | None:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else None


def _discriminative_groups(backbone: nn.Module, head: nn.Module, decay: float = 0.5):
    """Head at the full rate; backbone stages from the top down at ``decay**depth``
    of it (ULMFiT-style discriminative fine-tuning).  Backbones without ``stages``
    get a single group at 0.1x."""
    groups: list[tuple[list[nn.Parameter], float]] = [(list(head.parameters()), 1.0)]
    if all(hasattr(backbone, a) for a in ("stem", "stages", "head")):
        ordered = [backbone.head, *reversed(list(backbone.stages)), backbone.stem]
        for depth, part in enumerate(ordered, start=1):
            groups.append((list(part.parameters()), decay**depth))
    else:
        groups.append((list(backbone.parameters()), 0.1))
    return groups


# ----------------------------------------------------------------------------- entry points


def make_spec(
    name: str | ModelName,
    n_outputs: int,
    image_size: int | tuple[int, int] | None = None,
    *,
    mean=None,
    std=None,
    train_blocks: int | None = None,
    layers=None,
    weights_path: str | None = None,
) -> dict:
    """The JSON-able description of a network, before it is built.

    ``mean``/``std`` are used by the seed CNNs (the training set's own statistics,
    the seed's "standardised"); transfer models use their backbone's.
    """
    parsed = parse_model_name(name) if isinstance(name, str) else name
    recipe = RECIPES[parsed.family]
    size = image_size or recipe.image_size
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if parsed.backbone is None:
        return {
            "model": str(parsed),
            "family": parsed.family,
            "n_outputs": n_outputs,
            "input_size": list(hw),
            "in_channels": 3,
            "mean": list(mean or (0.5, 0.5, 0.5)),
            "std": list(std or (0.25, 0.25, 0.25)),
        }
    from pixsort.features.backbones import get_pretrained_cfg

    if is_timm(parsed.backbone):
        cfg = _timm_cfg(parsed.backbone)
    else:
        cfg = get_pretrained_cfg(parsed.backbone)
    spec = {
        "model": str(parsed),
        "family": parsed.family,
        "mode": parsed.family,
        "backbone": parsed.backbone,
        "n_outputs": n_outputs,
        "input_size": list(hw) if image_size else list(cfg.input_size[1:]),
        "in_channels": 3,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "dropout": 0.2,
    }
    if parsed.family == "partial":
        spec["train_blocks"] = int(train_blocks or DEFAULT_TRAIN_BLOCKS)
    if layers is not None:
        spec["layers"] = layers
    if weights_path:
        spec["weights_path"] = str(weights_path)
    return spec


def _timm_cfg(name: str):
    from pixsort.features.backbones import create_backbone

    return create_backbone(name, pretrained=False).pretrained_cfg


def build_network(spec: dict, pretrained: bool = True) -> ClassifierNet:
    """Build the network a spec describes; ``pretrained=False`` skips loading backbone
    weights (used when the saved weights are about to be loaded anyway)."""
    if spec["family"] in SEED_MODELS:
        return _build_seed(spec)
    return _build_transfer(spec, pretrained)


def n_outputs_for(n_classes: int) -> int:
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes, got {n_classes}")
    return 1 if n_classes == 2 else n_classes


__all__ = [
    "PRECISIONS",
    "RECIPES",
    "ClassifierNet",
    "ModelName",
    "Preprocess",
    "Recipe",
    "build_network",
    "list_models",
    "make_spec",
    "n_outputs_for",
    "parse_model_name",
]
