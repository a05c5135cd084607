"""The features stage: uint8 images -> vectors, and vectors -> a smaller space.

* :mod:`~pixsort.features.names` - the one name grammar (``efficientnet_lite1``,
  ``timm:<model>``, backbones joined by ``+``, ``autoencoder``, ``pixels``) that
  classifier names build on;
* :mod:`~pixsort.features.backbones` - pretrained networks behind one interface and
  a timm-style registry with each model's pretrained config;
* extractors, scikit-learn transformers from uint8 images ``(N, H, W, C)`` to
  float32 features ``(N, D)``: ``PretrainedExtractor`` (:mod:`~.embed`),
  ``FusedExtractor`` (several backbones side by side, :mod:`~.fused`), ``PixelExtractor``
  (:mod:`~.pixels`), ``AutoencoderExtractor`` (:mod:`~.autoencoder`), on the interface
  of :mod:`~.base`, cached by image content (:mod:`~.cache`);
* :mod:`~pixsort.features.extract` - from a feature name to cached features (with
  mirror-image test-time augmentation), and extractors rebuilt from saved configs;
* :mod:`~pixsort.features.reduce` - L2 per layer, PCA, whitening; 2-D views;
* :mod:`~pixsort.features.ray_embed` - the Ray engine: embedding actors of a Ray Data
  pipeline, writing into the same cache (the ``pixsort[ray]`` extra).

Names are imported lazily so ``import pixsort.features`` does not load torch.
"""

from __future__ import annotations

from pixsort.base.lazy import lazy_exports

_LAZY = {
    "ImageExtractor": "pixsort.features.base",
    "extractor_from_config": "pixsort.features.extract",
    "AutoencoderExtractor": "pixsort.features.autoencoder",
    "parse_feature_name": "pixsort.features.names",
    "list_features": "pixsort.features.extract",
    "check_feature_name": "pixsort.features.extract",
    "PretrainedExtractor": "pixsort.features.embed",
    "FusedExtractor": "pixsort.features.fused",
    "PixelExtractor": "pixsort.features.pixels",
    "EmbeddingCache": "pixsort.features.cache",
    "create_backbone": "pixsort.features.backbones",
    "list_backbones": "pixsort.features.backbones",
    "BackboneUnavailable": "pixsort.features.backbones",
}

__getattr__, __all__ = lazy_exports(__name__, _LAZY)
