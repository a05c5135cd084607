"""Pretrained image backbones behind one interface and a timm-style registry.

>>> from pixsort.features.backbones import create_backbone, list_backbones
>>> list_backbones()
['efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2']
>>> net = create_backbone("efficientnet_lite0").prepare_for_inference()
>>> net.feature_dim, net.pretrained_cfg.input_size
(1280, (3, 224, 224))
"""

from . import efficientnet_lite  # noqa: F401  (registers efficientnet_lite0/1/2)
from .base import Backbone, BackboneUnavailable, PretrainedCfg, resolve_layers
from .registry import TIMM_PREFIX, create_backbone, get_pretrained_cfg, list_backbones, register_backbone

__all__ = [
    "TIMM_PREFIX",
    "Backbone",
    "BackboneUnavailable",
    "PretrainedCfg",
    "create_backbone",
    "get_pretrained_cfg",
    "list_backbones",
    "register_backbone",
    "resolve_layers",
]
