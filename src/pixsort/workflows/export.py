"""Export a saved classifier for another runtime, and load it back for serving.

* :func:`export_model` - ``pixsort export MODEL --format onnx``: the ONNX graph (uint8
  images in, probabilities out), kept only when ONNX Runtime matches torch; the record
  (opset, largest difference, versions) is written beside the file.
* :func:`ensure_onnx_export` - the model folder's ``model.onnx`` if it is a checked
  export of exactly this model, else a fresh one (what ``serve --runtime onnx`` does
  before it answers).
* :func:`load_onnx_classifier` - the classifier answering through ONNX Runtime.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pixsort.base.errors import ModelFileError
from pixsort.base.modelfile import model_folder, read_model_meta

FORMATS = ("onnx",)


@dataclass
class ExportOutcome:
    path: Path  # the exported file
    record: dict  # what was written beside it (<path>.json)
    exported: bool  # False: an up-to-date export was already there and is reused


def _classifier(path: str | os.PathLike):
    """The classifier saved at ``path``, on the CPU (export and ONNX Runtime run there)."""
    from pixsort.classify.estimator import ImageClassifier

    folder = model_folder(path)
    meta = read_model_meta(folder)
    if meta["kind"] != "classifier":
        raise ModelFileError(f"{folder} holds a {meta['kind']}: only classifiers are exported to ONNX")
    return folder, ImageClassifier.load(folder, meta=meta, device="cpu")


def export_model(
    model: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    format: str = "onnx",
) -> ExportOutcome:
    """Export the classifier saved at ``model`` to ``out`` (default: ``model.onnx`` in
    its folder).  Raises ``ExportError`` (a ValueError; nothing written) when the
    exported graph does not answer like torch within 1e-4."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose from {', '.join(FORMATS)}")
    from pixsort.classify.export import ONNX_FILE

    folder, clf = _classifier(model)
    path = Path(out) if out is not None else folder / ONNX_FILE
    return ExportOutcome(path, clf.export_onnx(path), True)


def ensure_onnx_export(model: str | os.PathLike, *, classifier=None) -> ExportOutcome:
    """``model.onnx`` in the model folder, exported (and checked) now unless the one
    there was exported from exactly this model (same weights, classes, TTA, input)."""
    from pixsort.classify.export import ONNX_FILE, is_current, read_export_record

    folder, clf = (model_folder(model), classifier) if classifier is not None else _classifier(model)
    path = folder / ONNX_FILE
    if is_current(clf, path):
        return ExportOutcome(path, read_export_record(path), False)
    try:
        record = clf.export_onnx(path)
    except PermissionError as exc:
        raise ModelFileError(
            f"cannot write {path} ({exc.strerror}): run `pixsort export {folder}` where the folder is writable"
        ) from None
    return ExportOutcome(path, record, True)


def load_onnx_classifier(model: str | os.PathLike, *, threads: int | None = None):
    """The classifier saved at ``model`` answering through ONNX Runtime
    (:class:`~pixsort.classify.export.OnnxClassifier`), exported first if needed."""
    from pixsort.classify.export import OnnxClassifier

    _, clf = _classifier(model)
    outcome = ensure_onnx_export(model, classifier=clf)
    return OnnxClassifier(clf, outcome.path, threads=threads)


__all__ = ["FORMATS", "ExportOutcome", "ensure_onnx_export", "export_model", "load_onnx_classifier"]
