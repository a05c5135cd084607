"""pixsort: sort pictures into classes and clusters, and serve those decisions.

The pipeline is ``data`` (find, decode, cache, split) -> ``features`` (backbones,
autoencoder, reducers) -> ``cluster`` / ``classify`` -> ``report`` -> interfaces
(``cli``, ``serve``).  The estimators are importable from the top level lazily,
so ``import pixsort`` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access
_LAZY = {
    "open_dataset": "pixsort.data",
    "load_images": "pixsort.data",
    "ImageDataset": "pixsort.data",
    "ImageClusterer": "pixsort.cluster.images",
    "ImageClassifier": "pixsort.classify.estimator",
    "TableClusterer": "pixsort.cluster.table",
    "load_model": "pixsort.models",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pixsort' has no attribute {name!r}")
