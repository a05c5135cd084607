"""``timm:<model_name>`` backbones: any timm model behind the ``Backbone`` interface.

timm is optional (``pip install 'pixsort[timm]'``) and imports torchvision, which
is not usable everywhere; every failure to import or build becomes a
``BackboneUnavailable`` whose message says why.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .base import Backbone, BackboneUnavailable, PretrainedCfg, state_dict_hash
from .weights import load_state_dict

__all__ = ["TimmBackbone", "create_timm_backbone", "import_timm"]


def import_timm():
    """The ``timm`` module, or BackboneUnavailable saying why it cannot be imported."""
    try:
        import timm
    except Exception as exc:  # ImportError, or torchvision failing inside timm's import
        raise BackboneUnavailable(
            f"timm could not be imported: {type(exc).__name__}: {exc}. "
            "timm backbones need `pip install 'pixsort[timm]'` and a working torchvision; "
            "the built-in backbones (efficientnet_lite0/1/2) do not."
        ) from None
    return timm


class TimmBackbone(Backbone):
    """Wraps a timm model; the embedding is timm's pre-logits vector.

    Only the ``head`` feature map is offered: timm's intermediate-feature APIs
    differ between model families and versions.
    """

    def __init__(self, model: nn.Module, model_name: str, pretrained_cfg: PretrainedCfg, weights_id: str):
        super().__init__()
        self.model = model
        self.name = f"timm:{model_name}"
        self.pretrained_cfg = pretrained_cfg
        self.weights_id = weights_id
        self.feature_names = ("head",)
        self.feature_dims = {"head": pretrained_cfg.num_features}
        self.set_layers(None)

    def _pooled_features(self, x: torch.Tensor, layers: tuple[str, ...]) -> list[torch.Tensor]:
        return [self.model.forward_head(self.model.forward_features(x), pre_logits=True)]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The timm model's logits ``(N, num_classes)``."""
        return self.model(x)


def _pretrained_cfg(timm, model: nn.Module, source: str) -> PretrainedCfg:
    data = timm.data.resolve_data_config({}, model=model)
    dim = getattr(model, "head_hidden_size", None) or model.num_features
    return PretrainedCfg(
        input_size=tuple(int(v) for v in data["input_size"]),
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
        interpolation=str(data.get("interpolation", "bilinear")),
        crop_pct=float(data.get("crop_pct", 1.0)),
        num_classes=int(getattr(model, "num_classes", 0)),
        num_features=int(dim),
        weights=source,
    )


def create_timm_backbone(model_name: str, pretrained: bool, weights_path: Path | None) -> TimmBackbone:
    """Build ``timm:<model_name>``.

    Weights: ``weights_path`` (safetensors or state dict) if given, else timm's
    pretrained weights (from timm's hub cache) if ``pretrained``, else random.
    """
    timm = import_timm()
    if not model_name:
        raise ValueError("timm backbone name is empty: use 'timm:<model_name>', e.g. 'timm:resnet50'")
    if not timm.is_model(model_name):
        raise ValueError(f"unknown timm model {model_name!r} (see timm.list_models())")
    from_hub = pretrained and weights_path is None
    try:
        model = timm.create_model(model_name, pretrained=from_hub)
    except Exception as exc:  # network, hub cache or checkpoint problems
        raise BackboneUnavailable(
            f"timm could not build {model_name!r}{' with pretrained weights' if from_hub else ''}: "
            f"{type(exc).__name__}: {exc}. Hub weights must be reachable or in timm's cache; "
            "pass weights_path= to use a local file."
        ) from None
    if weights_path is not None:
        try:
            model.load_state_dict(load_state_dict(weights_path), strict=True)
        except RuntimeError as exc:
            raise BackboneUnavailable(f"{weights_path} does not fit timm model {model_name!r}: {exc}") from None
        source = f"file:{weights_path.name}"
    else:
        source = f"timm-hub:{model_name}" if from_hub else "random"
    weights_id = state_dict_hash(model.state_dict())
    if source == "random":
        weights_id = "random:" + weights_id
    return TimmBackbone(model, model_name, _pretrained_cfg(timm, model, source), weights_id)
