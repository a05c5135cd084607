"""Load any saved model by the kind its ``model.json`` names."""

from __future__ import annotations

import os

from pixsort.base.modelfile import model_folder, read_model_meta


def load_model(path: str | os.PathLike, kind: str | None = None):
    """The classifier or clusterer saved in the folder ``path`` (or in ``path/model``,
    the folder ``train`` and ``cluster`` write it to); ``model.json`` is read once.
    ``kind`` (``classifier`` or ``clusterer``) refuses a model of the other kind."""
    folder = model_folder(path)
    meta = read_model_meta(folder, kind)
    if meta["kind"] == "classifier":
        from pixsort.classify.estimator import ImageClassifier

        return ImageClassifier.load(folder, meta=meta)
    from pixsort.cluster.images import ImageClusterer

    return ImageClusterer.load(folder, meta=meta)


__all__ = ["load_model"]
