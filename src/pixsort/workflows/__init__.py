"""Use cases, one function each: the only code the CLI, the server and the benchmarks call.

Each takes plain arguments (paths, names, numbers), runs the library stages in
order, has ``report`` write the outputs, and returns a result object:

* :func:`cluster_images`, :func:`assign_images`, :func:`clusterer_map`, :func:`rename_clusters` - :mod:`~.images`
* :func:`embed_images` - :mod:`~.embeddings`, an embedding set to cluster elsewhere or later
* :func:`audit_images` - :mod:`~.audit`, duplicates, leaks, outliers, quality flags, label errors
* :func:`train_classifier`, :func:`evaluate_classifier`, :func:`predict_images` - :mod:`~.classification`
* :func:`calibrate_classifier` - :mod:`~.calibration`, temperature and threshold for a new site
* :func:`cluster_table` - :mod:`~.tables`
* :func:`inspect_source` - :mod:`~.inspection`
* :func:`run_demo` - :mod:`~.demo`
* :func:`load_model` - :mod:`~.models`, any saved model by its kind
* :func:`export_model`, :func:`ensure_onnx_export`, :func:`load_onnx_classifier` - :mod:`~.export`

Names are imported on use so that ``import pixsort.workflows`` stays cheap.
"""

from __future__ import annotations

from pixsort.base.lazy import lazy_exports

_LAZY = {
    "cluster_images": "pixsort.workflows.images",
    "assign_images": "pixsort.workflows.images",
    "ClusterRun": "pixsort.workflows.images",
    "clusterer_map": "pixsort.workflows.images",
    "rename_clusters": "pixsort.workflows.images",
    "embed_images": "pixsort.workflows.embeddings",
    "audit_images": "pixsort.workflows.audit",
    "AuditRun": "pixsort.workflows.audit",
    "EmbedRun": "pixsort.workflows.embeddings",
    "train_classifier": "pixsort.workflows.classification",
    "evaluate_classifier": "pixsort.workflows.classification",
    "predict_images": "pixsort.workflows.classification",
    "TrainOutcome": "pixsort.workflows.classification",
    "calibrate_classifier": "pixsort.workflows.calibration",
    "CalibrationOutcome": "pixsort.workflows.calibration",
    "cluster_table": "pixsort.workflows.tables",
    "TableRun": "pixsort.workflows.tables",
    "run_demo": "pixsort.workflows.demo",
    "inspect_source": "pixsort.workflows.inspection",
    "load_model": "pixsort.workflows.models",
    "export_model": "pixsort.workflows.export",
    "ensure_onnx_export": "pixsort.workflows.export",
    "load_onnx_classifier": "pixsort.workflows.export",
    "ExportOutcome": "pixsort.workflows.export",
}

__getattr__, __all__ = lazy_exports(__name__, _LAZY)
