"""pixsort: sort pictures into classes and clusters, and serve those decisions.

The package is laid out as the pipeline it runs, each layer importing only the
ones below it (checked in CI by import-linter, see ``pyproject.toml``):

``cli``, ``serve`` -> ``workflows`` (one function per use case) -> ``report``
(every output file, plot and page) -> ``cluster``, ``classify`` -> ``features``
-> ``data`` -> ``base`` (errors, model folders, JSON, parameters, progress, CPU).

The estimators and use cases are importable from the top level lazily, so
``import pixsort`` stays cheap for the CLI.
"""

from __future__ import annotations

from pixsort.base.lazy import lazy_exports

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access
_LAZY = {
    "open_dataset": "pixsort.data",
    "load_images": "pixsort.data",
    "ImageDataset": "pixsort.data",
    "ImageClusterer": "pixsort.cluster.images",
    "ImageClassifier": "pixsort.classify.estimator",
    "TableClusterer": "pixsort.cluster.table",
    "NotFittedError": "pixsort.base.errors",
    "load_model": "pixsort.workflows",
    "cluster_images": "pixsort.workflows",
    "assign_images": "pixsort.workflows",
    "train_classifier": "pixsort.workflows",
    "evaluate_classifier": "pixsort.workflows",
    "predict_images": "pixsort.workflows",
    "cluster_table": "pixsort.workflows",
    "audit": "pixsort.workflows.audit",
    "ImageAuditor": "pixsort.auditing",
}

__getattr__, _names = lazy_exports(__name__, _LAZY)
__all__ = ["__version__", *_names]
