"""Turn a loaded estimator's outputs into JSON-ready answers, one per image.

A predictor wraps a fitted :class:`~pixsort.classify.estimator.ImageClassifier` or
:class:`~pixsort.cluster.images.ImageClusterer` through the serving contract only
(``decode_settings``, ``predict_proba``/``threshold_`` or ``assign``/``train_paths_``),
so the HTTP layer never touches model internals.
"""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any

import numpy as np

from pixsort.base.cells import utf8_text
from pixsort.data import DecodeSettings


def make_predictor(model, kind: str | None = None, n_neighbors: int = 5) -> ClassifierPredictor | ClustererPredictor:
    """The predictor for ``model``: ``kind`` is "classifier" or "clusterer", read from
    the fitted model's attributes when not given (``classes_``, ``n_clusters_``)."""
    if kind is None:
        kind = "classifier" if hasattr(model, "classes_") else "clusterer" if hasattr(model, "n_clusters_") else ""
    if kind == "classifier":
        return ClassifierPredictor(model)
    if kind == "clusterer":
        return ClustererPredictor(model, n_neighbors=n_neighbors)
    raise TypeError(f"cannot serve a {type(model).__name__}: neither a fitted classifier nor a fitted clusterer")


class ClassifierPredictor:
    """Class probabilities and the decision at the model's threshold.

    For a binary model the decision is the positive class (``classes_[1]``) when its
    probability is at least ``threshold_``; otherwise it is the most probable class
    (the classifier's own rule, :func:`pixsort.classify.metrics.predict_from_proba`).
    """

    kind = "classifier"

    def __init__(self, model):
        self.model = model
        self.classes = [str(c) for c in model.classes_]
        threshold = getattr(model, "threshold_", None)
        self.threshold = None if threshold is None else float(threshold)
        self.decode_settings: DecodeSettings = model.decode_settings

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """Class index per row of ``proba`` (n, n_classes), by the rule ``model.predict`` uses."""
        from pixsort.classify.metrics import predict_from_proba

        return predict_from_proba(proba, self.threshold)

    def __call__(self, images: np.ndarray) -> list[dict]:
        proba = np.asarray(self.model.predict_proba(images), dtype=np.float64)
        decisions = self.decide(proba)
        results = []
        for row, decision in zip(proba, decisions):
            result = {
                "probabilities": {name: _finite(p) for name, p in zip(self.classes, row)},
                "decision": self.classes[int(decision)],
                "decision_index": int(decision),
                "threshold": self.threshold,
            }
            if self.threshold is not None and len(self.classes) == 2:
                result["positive_class"] = self.classes[1]
                result["score"] = _finite(row[1])
            results.append(result)
        return results

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "classes": self.classes,
            "threshold": self.threshold,
            "positive_class": self.classes[1] if self.threshold is not None and len(self.classes) == 2 else None,
            "validation_metrics": jsonable(getattr(self.model, "validation_metrics_", None) or {}),
            "decode": self.decode_settings.to_dict(),
        }


class ClustererPredictor:
    """Cluster id, distance to its centre and the nearest training images, all from one
    :meth:`~pixsort.cluster.images.ImageClusterer.assign` call per batch."""

    kind = "clusterer"

    def __init__(self, model, n_neighbors: int = 5):
        self.model = model
        self.n_clusters = int(model.n_clusters_)
        self.train_paths = [str(p) for p in getattr(model, "train_paths_", None) or []]
        self.train_paths_root = getattr(model, "train_paths_root_", None)
        self.n_neighbors = max(0, min(int(n_neighbors), len(self.train_paths)))
        names = getattr(model, "cluster_names_", None)
        self.cluster_names = [str(n) for n in names] if names is not None and len(names) else None
        self.decode_settings: DecodeSettings = model.decode_settings

    def __call__(self, images: np.ndarray) -> list[dict]:
        # one embedding (a backbone pass, twice with TTA) gives all three answers
        found = self.model.assign(images, n_neighbors=self.n_neighbors)
        clusters = np.asarray(found.clusters).astype(np.int64)
        distances = np.asarray(found.distances, dtype=np.float64)
        nn_dist, nn_index = found.neighbor_distances, found.neighbor_indices
        results = []
        for cluster, row, dists, indices in zip(clusters, distances, nn_dist, nn_index):
            cluster = int(cluster)
            # a cluster id outside the centres (noise, -1) gets the distance to the nearest one
            distance = row[cluster] if 0 <= cluster < len(row) else row.min()
            results.append(
                {
                    "cluster": cluster,
                    "cluster_name": self.cluster_name(cluster),
                    "distance": _finite(distance),
                    "neighbors": [self._neighbor(int(i), d) for i, d in zip(indices, dists) if i >= 0],
                }
            )
        return results

    def _cluster_sizes(self) -> list[int] | None:
        labels = getattr(self.model, "labels_", None)
        if labels is None:
            return None
        labels = np.asarray(labels)
        return np.bincount(labels[labels >= 0], minlength=self.n_clusters).tolist()

    def cluster_name(self, cluster: int) -> str | None:
        if self.cluster_names is not None and 0 <= cluster < len(self.cluster_names):
            return self.cluster_names[cluster]
        return None

    def _neighbor(self, index: int, distance: float) -> dict:
        path = self.train_paths[index] if index < len(self.train_paths) else ""
        return {
            "index": index,
            "name": utf8_text(PurePath(path).name) if path else str(index),
            "distance": _finite(distance),
            "thumbnail_url": f"/thumbnails/{index}",
        }

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "n_clusters": self.n_clusters,
            "cluster_names": self.cluster_names,
            "n_train": len(self.train_paths),
            "n_neighbors": self.n_neighbors,
            "cluster_sizes": self._cluster_sizes(),
            # a clusterer has no validation set: its fit-time scores (silhouette, ...) stand in
            "validation_metrics": jsonable(
                getattr(self.model, "validation_metrics_", None) or getattr(self.model, "scores_", None) or {}
            ),
            "decode": self.decode_settings.to_dict(),
        }


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays made plain and NaN/inf made null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return _finite(value)
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


__all__ = ["ClassifierPredictor", "ClustererPredictor", "jsonable", "make_predictor"]
