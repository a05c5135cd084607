"""Saved models: one folder each, ``model.json`` + ``weights.safetensors`` (never pickle).

``model.json`` always holds ``{"format": "pixsort-model", "version": 1, "kind": ...,
"decode": DecodeSettings.to_dict()}`` plus what its kind needs.  :func:`load_model`
reads the kind and hands the folder to the estimator that wrote it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FORMAT = "pixsort-model"
FORMAT_VERSION = 1

# kind -> "module:Class" with a ``load(path)`` classmethod
_LOADERS = {
    "classifier": "pixsort.classify.estimator:ImageClassifier",
    "clusterer": "pixsort.cluster.images:ImageClusterer",
}


def json_default(value):
    """``json.dumps(default=...)`` for what model files and metrics hold: numpy scalars
    and arrays, and paths.  Tuples need nothing: json writes them as lists."""
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class ModelFileError(Exception):
    """A model folder that is missing, not pixsort's, or from an unknown version."""


def read_model_json(path: str | os.PathLike) -> dict:
    folder = Path(path)
    meta_path = folder / "model.json" if folder.is_dir() else folder
    if not meta_path.exists():
        raise ModelFileError(f"no pixsort model at {path} (model.json not found)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{meta_path} is not valid JSON: {exc}") from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{meta_path} is not a pixsort model file")
    if int(meta.get("version", 0)) > FORMAT_VERSION:
        raise ModelFileError(f"{meta_path} was written by a newer pixsort (format version {meta['version']})")
    if meta.get("kind") not in _LOADERS:
        raise ModelFileError(f"{meta_path}: unknown model kind {meta.get('kind')!r}")
    return meta


def load_model(path: str | os.PathLike):
    """Load a saved classifier or clusterer from its folder."""
    import importlib

    meta = read_model_json(path)
    module_name, class_name = _LOADERS[meta["kind"]].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    folder = Path(path)
    return cls.load(folder if folder.is_dir() else folder.parent)
