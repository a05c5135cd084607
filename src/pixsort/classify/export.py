"""A fitted :class:`~pixsort.classify.estimator.ImageClassifier` as one ONNX graph, and
an ONNX Runtime stand-in for it.

The graph takes what ``predict_proba`` takes and gives what it gives:

* input ``images``: uint8 ``(batch, H, W, C)`` decoded with the model's
  ``decode_settings`` (``H, W, C`` fixed, the batch axis dynamic);
* inside: the scaling to [0, 1] and NCHW layout (``augment.to_float``), the network's
  :class:`~pixsort.classify.networks.Preprocess` (channels, resize, normalisation),
  the network, the mirror average when the model uses TTA, and
  ``training.logits_to_proba`` (sigmoid to two columns for a binary model, else softmax);
* output ``probabilities``: float32 ``(batch, n_classes)``.

The exporter is ``torch.onnx.export(dynamo=True)``, torch 2.13's default (via
``torch.export``); it needs ``onnxscript`` (pure Python, installed from PyPI with the
``export`` extra; nothing is downloaded when it runs).  The legacy TorchScript exporter
(``dynamo=False``) is deprecated and cannot export the antialiased bilinear resize that
``Preprocess`` uses when images are larger than the network input
(``aten::_upsample_bilinear2d_aa``).

Every export is checked before it is kept: the graph is written to a temporary name,
run with ONNX Runtime on a batch of 1 and a batch of 5 (random and real-looking images,
plus any given ones) and compared with torch; only when the largest difference of a
probability is at most ``atol`` (1e-4) is it renamed into place, with a record
``<file>.json`` beside it.  Otherwise the temporary file is deleted and
:class:`ExportError` says by how much it missed; an existing file of that name is left
as it was.

Precision: the graph computes in float32, and the reference is torch in float32 on the
CPU (a copy of the network).  Where the model's own precision resolves to bf16
(``precision="auto"`` on a CPU with AVX512-BF16/AMX), torch's answers differ from float32
by bf16 rounding; that difference is recorded (``max_abs_diff_vs_model``) but does not
decide.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pixsort.base.jsonio import dumps
from pixsort.base.modelfile import file_sha256
from pixsort.base.onnx import EXPORTER, export_module, make_session, require_onnx
from pixsort.classify.augment import get_views
from pixsort.classify.networks import ClassifierNet
from pixsort.classify.training import batch_logits, logits_to_proba, predict_logits

ONNX_FILE = "model.onnx"  # the name an export gets inside a model folder
RECORD_SUFFIX = ".json"  # model.onnx -> model.onnx.json
PARITY_ATOL = 1e-4
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"


class ExportError(ValueError):
    """An export that was not kept: its outputs do not match torch, or it could not be made."""


class ProbaGraph(nn.Module):
    """uint8 ``(N, H, W, C)`` -> class probabilities ``(N, K)``: what is exported."""

    def __init__(self, net: ClassifierNet, tta: bool = False, views: tuple[float, ...] = (1.0,)):
        super().__init__()
        self.net = net
        self.tta = bool(tta)
        self.views = tuple(views)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() / 255.0  # augment.to_float
        return logits_to_proba(batch_logits(self.net, x, self.tta, self.views))


# ----------------------------------------------------------------------------- check images


def parity_batches(shape: tuple[int, int, int], seed: int = 0) -> list[np.ndarray]:
    """A batch of 1 and a batch of 5 uint8 images of ``shape`` (H, W, C): uniform
    noise, smooth low-frequency 'photographs' (random fields upsampled, like shading),
    a radial blob on a dark ground (like an X-ray or a microscope field) and a flat grey."""
    h, w, c = (int(s) for s in shape)
    rng = np.random.default_rng(seed)

    def smooth(cells: int) -> np.ndarray:
        coarse = torch.from_numpy(rng.uniform(0, 255, (1, c, cells, cells)).astype(np.float32))
        up = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
        return up[0].permute(1, 2, 0).numpy() + rng.normal(0, 6, (h, w, c))

    def blob() -> np.ndarray:
        yy, xx = np.mgrid[:h, :w]
        cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, max(1.0, 0.25 * min(h, w))
        disc = 200 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        return (25 + disc)[..., None] + rng.normal(0, 10, (h, w, c))

    def noise() -> np.ndarray:
        return rng.integers(0, 256, (h, w, c)).astype(np.float64)

    def as_uint8(images) -> np.ndarray:
        return np.clip(np.round(np.stack(images)), 0, 255).astype(np.uint8)

    return [
        as_uint8([smooth(4)]),
        as_uint8([noise(), noise(), smooth(8), blob(), np.full((h, w, c), 128.0)]),
    ]


# ----------------------------------------------------------------------------- export


def model_fingerprint(clf) -> str:
    """What an exported graph depends on: the weights, the architecture, the classes,
    TTA and the input shape.  A retrained or changed model gets another fingerprint."""
    digest = hashlib.sha256()
    head = {"spec": clf.spec_, "classes": clf.classes_, "tta": bool(clf.tta), "shape": clf.decode_settings.shape}
    digest.update(json.dumps(head, sort_keys=True, default=str).encode())
    for name, value in sorted(clf.network_.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def record_path(onnx_path: str | os.PathLike) -> Path:
    path = Path(onnx_path)
    return path.with_name(path.name + RECORD_SUFFIX)


def read_export_record(onnx_path: str | os.PathLike) -> dict | None:
    """The record written beside an exported file, or None when there is none (or the
    file itself is gone)."""
    path = Path(onnx_path)
    record = record_path(path)
    if not path.exists() or not record.exists():
        return None
    try:
        return json.loads(record.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def is_current(clf, onnx_path: str | os.PathLike) -> bool:
    """Whether ``onnx_path`` is a checked export of exactly this model (its record's
    fingerprint and file hash match)."""
    record = read_export_record(onnx_path)
    return (
        record is not None
        and record.get("model_fingerprint") == model_fingerprint(clf)
        and record.get("sha256") == file_sha256(onnx_path)
    )


def export_onnx(
    clf,
    path: str | os.PathLike,
    *,
    images: np.ndarray | None = None,
    atol: float = PARITY_ATOL,
    opset: int | None = None,
) -> dict:
    """Export the fitted classifier ``clf`` to the ONNX file ``path``; see the module
    docstring.  ``images`` (uint8, the model's decoded shape) are checked too.

    Returns the record also written to ``<path>.json``: file, opset, parity (largest
    difference, tolerance, batches), the onnx / onnxruntime / torch versions and the
    model fingerprint.  Raises :class:`ExportError` (nothing written) when the check fails.
    """
    clf._check_fitted()
    require_onnx()
    import onnx
    import onnxruntime as ort

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = tuple(int(s) for s in clf.decode_settings.shape)
    batches = parity_batches(shape)
    if images is not None:
        extra = np.asarray(images)
        if extra.ndim == 3:
            extra = extra[..., None]
        if extra.dtype != np.uint8 or extra.shape[1:] != shape:
            raise ValueError(f"check images must be uint8 {('n', *shape)}, got {extra.dtype} {extra.shape}")
        batches.append(extra)

    # a CPU float32 copy: the live network keeps its device, precision and layout
    net = copy.deepcopy(clf.network_).cpu().eval()
    net.set_precision("fp32")
    views = get_views(clf.train_config_.get("views", "none"))
    graph = ProbaGraph(net, tta=bool(clf.tta), views=views).eval()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    started = time.perf_counter()
    try:
        try:
            export_module(graph, torch.from_numpy(batches[1][:2].copy()), tmp, INPUT_NAME, OUTPUT_NAME, opset)
        except RuntimeError as exc:
            raise ExportError(f"{exc}; {path} was not written") from exc
        session = make_session(tmp, threads=None)
        diffs, model_diffs = [], []
        for batch in batches:
            got = onnx_proba(session, batch)
            logits = predict_logits(net, batch, 64, clf.channels_last, bool(clf.tta), views=views)
            reference = logits_to_proba(logits).double()
            reference = reference.numpy()
            if got.shape != reference.shape or not np.isfinite(got).all():
                raise ExportError(
                    f"the ONNX graph answered {got.shape} (finite: {bool(np.isfinite(got).all())}) where torch "
                    f"answered {reference.shape}; {path} was not written"
                )
            diffs.append(float(np.abs(got - reference).max()))
            model_diffs.append(float(np.abs(got - clf.predict_proba(batch)).max()))
        max_diff = max(diffs)
        if not max_diff <= atol:
            raise ExportError(
                f"the ONNX graph's probabilities differ from torch's by up to {max_diff:.3g} (tolerance {atol:g}) "
                f"on batches of {[len(b) for b in batches]}; {path} was not written"
            )
        opsets = {
            o.domain or "ai.onnx": int(o.version) for o in onnx.load(str(tmp), load_external_data=False).opset_import
        }
        digest = file_sha256(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

    record = {
        "format": "onnx",
        "file": path.name,
        "opset": opsets.get("ai.onnx"),
        "exporter": EXPORTER,
        "input": {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "shape": ["batch", *shape],
            "decode": clf.decode_settings.to_dict(),
        },
        "output": {
            "name": OUTPUT_NAME,
            "dtype": "float32",
            "shape": ["batch", len(clf.classes_)],
            "classes": clf.classes_,
        },
        "tta": bool(clf.tta),
        "parity": {
            "max_abs_diff": max_diff,
            "tolerance": atol,
            "reference": "torch float32 on the CPU",
            "batch_sizes": [len(b) for b in batches],
            "max_abs_diff_vs_model": max(model_diffs),
            "model_precision": {
                "setting": clf.precision,
                "frozen": clf.network_.frozen_precision,
                "trainable": clf.network_.trainable_precision,
            },
        },
        "onnx_version": onnx.__version__,
        "onnxruntime_version": ort.__version__,
        "torch_version": torch.__version__,
        "export_seconds": round(time.perf_counter() - started, 3),
        "model_fingerprint": model_fingerprint(clf),
        "sha256": digest,
    }
    side = record_path(path)
    side_tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    side_tmp.write_text(dumps(record), encoding="utf-8")
    os.replace(side_tmp, side)
    return record


# ----------------------------------------------------------------------------- running it


def onnx_proba(session, images: np.ndarray) -> np.ndarray:
    """Probabilities (float64) of one uint8 batch through ``session``."""
    return np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images)})[0], dtype=np.float64)


class OnnxClassifier:
    """A fitted classifier answering through ONNX Runtime: ``predict_proba`` and
    ``predict`` run the exported graph; classes, threshold, decode settings and
    validation metrics are the torch model's.

    Parameters
    ----------
    classifier : ImageClassifier
        The fitted model the graph was exported from (for its metadata).
    path : path
        The exported file (checked by :func:`export_onnx`).
    threads : int, optional
        ONNX Runtime intra-op threads (default: the available cores).
    """

    runtime = "onnx"

    def __init__(self, classifier, path: str | os.PathLike, threads: int | None = None):
        self.classifier = classifier
        self.path = Path(path)
        self.record = read_export_record(self.path) or {}
        self.session = make_session(self.path, threads)
        self.classes_ = list(classifier.classes_)
        self.threshold_ = classifier.threshold_
        self.threshold_info_ = getattr(classifier, "threshold_info_", {})
        self.validation_metrics_ = getattr(classifier, "validation_metrics_", {})
        self.decode_settings = classifier.decode_settings
        self.decode_settings_ = classifier.decode_settings

    def predict_proba(self, X, batch_size: int = 64) -> np.ndarray:
        """Class probabilities, float64 ``(n, len(classes_))``."""
        from pixsort.base.images import check_images

        X = check_images(X, "X", allow_empty=False)
        if tuple(X.shape[1:]) != tuple(self.decode_settings.shape):
            raise ValueError(
                f"the exported graph takes images of shape {self.decode_settings.shape} (the model's decode "
                f"settings), got {tuple(X.shape[1:])}"
            )
        return np.concatenate([onnx_proba(self.session, X[i : i + batch_size]) for i in range(0, len(X), batch_size)])

    def predict(self, X, batch_size: int = 64) -> np.ndarray:
        from pixsort.classify.metrics import predict_from_proba

        return predict_from_proba(self.predict_proba(X, batch_size), self.threshold_)


__all__ = [
    "ONNX_FILE",
    "PARITY_ATOL",
    "ExportError",
    "OnnxClassifier",
    "ProbaGraph",
    "export_onnx",
    "is_current",
    "make_session",
    "model_fingerprint",
    "onnx_proba",
    "parity_batches",
    "read_export_record",
]
