"""Feature extractors (pretrained backbones, autoencoder, raw pixels) and reducers.

Extractors are scikit-learn transformers from uint8 images ``(N, H, W, C)`` to
float32 features ``(N, D)``:

* ``PretrainedExtractor(backbone="efficientnet_lite0", layers=None, ...)``
* ``PixelExtractor(size=None, color="rgb")``

Backbones live in ``pixsort.features.backbones`` (``create_backbone``,
``list_backbones``).  Names are imported lazily so ``import pixsort.features``
does not load torch.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "ImageExtractor": "pixsort.features.base",
    "extractor_from_config": "pixsort.features.base",
    "PretrainedExtractor": "pixsort.features.embed",
    "PixelExtractor": "pixsort.features.pixels",
    "EmbeddingCache": "pixsort.features.cache",
    "create_backbone": "pixsort.features.backbones",
    "list_backbones": "pixsort.features.backbones",
    "BackboneUnavailable": "pixsort.features.backbones",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pixsort.features' has no attribute {name!r}")
