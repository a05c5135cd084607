"""Model folders: ``model.json`` + ``weights.safetensors``, never pickle.

``model.json`` always holds ``{"format": "pixsort-model", "version": 1, "kind": ...,
"decode": DecodeSettings.to_dict()}`` plus what its kind needs.  Every estimator
writes and reads its folder through :func:`write_model_folder` and
:func:`read_model_folder`, so the names, the format check and the kind check live
here once.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from pixsort.base.errors import ModelFileError
from pixsort.base.jsonio import dumps

FORMAT = "pixsort-model"
FORMAT_VERSION = 1
META_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
WEIGHTS_HASH_KEY = "weights_sha256"  # recorded at save, checked at load (older files have none)
KINDS = ("classifier", "clusterer")


def model_folder(path: str | os.PathLike) -> Path:
    """The folder holding ``model.json``: ``path`` itself, the folder of a ``model.json``
    path, or the ``model/`` folder inside a run folder written by train or cluster."""
    path = Path(path)
    if path.is_file():
        return path.parent
    if not (path / META_FILE).exists() and (path / "model" / META_FILE).exists():
        return path / "model"
    return path


def read_model_meta(path: str | os.PathLike, kind: str | None = None) -> dict:
    """``model.json`` of the folder at ``path``, checked: pixsort's format, a version
    this code reads, a known kind (and ``kind`` when given)."""
    meta_path = model_folder(path) / META_FILE
    if not meta_path.exists():
        raise ModelFileError(f"no pixsort model at {path} (model.json not found)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{meta_path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{meta_path} is not a pixsort model file")
    if int(meta.get("version", 0)) > FORMAT_VERSION:
        raise ModelFileError(f"{meta_path} was written by a newer pixsort (format version {meta['version']})")
    if meta.get("kind") not in KINDS:
        raise ModelFileError(f"{meta_path}: unknown model kind {meta.get('kind')!r}")
    if kind is not None and meta["kind"] != kind:
        raise ModelFileError(f"{meta_path.parent} holds a {meta['kind']}, not a {kind}")
    return meta


def write_model_folder(path: str | os.PathLike, kind: str, meta: dict, tensors: dict) -> Path:
    """Write ``tensors`` (numpy arrays or torch tensors, one kind per call) and ``meta``
    (the format header is added) into the folder ``path``; returns the folder."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    weights = str(folder / WEIGHTS_FILE)
    if tensors and not all(isinstance(v, np.ndarray) for v in tensors.values()):
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, weights, metadata={"format": FORMAT})
    else:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, weights, metadata={"format": FORMAT})
    return write_model_meta(folder, kind, {**meta, WEIGHTS_HASH_KEY: file_sha256(weights)})


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of the file at ``path``, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_model_meta(path: str | os.PathLike, kind: str, meta: dict) -> Path:
    """(Re)write only ``model.json`` of the folder ``path`` (the format header added),
    through a temporary file and a rename; ``weights.safetensors`` is not touched."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "version": FORMAT_VERSION, "kind": kind}
    if WEIGHTS_HASH_KEY not in meta and (folder / META_FILE).exists():
        try:  # the weights are not rewritten here: their recorded checksum stays
            old = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            if isinstance(old, dict) and old.get(WEIGHTS_HASH_KEY):
                meta = {**meta, WEIGHTS_HASH_KEY: old[WEIGHTS_HASH_KEY]}
        except (OSError, ValueError):
            pass
    tmp = folder / (META_FILE + ".tmp")
    tmp.write_text(dumps({**header, **meta}), encoding="utf-8")
    tmp.replace(folder / META_FILE)
    return folder


def read_model_folder(
    path: str | os.PathLike, kind: str, *, meta: dict | None = None, framework: str = "numpy"
) -> tuple[Path, dict, dict]:
    """(folder, meta, tensors) of a model folder of ``kind``; ``framework`` is
    ``numpy`` or ``pt`` (torch tensors).  ``meta`` already read is not read again."""
    folder = model_folder(path)
    meta = read_model_meta(folder, kind) if meta is None else meta
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        raise ModelFileError(f"{folder}: {WEIGHTS_FILE} is missing")
    expected = meta.get(WEIGHTS_HASH_KEY)
    if expected is not None and file_sha256(weights) != expected:
        raise ModelFileError(
            f"{folder}: {WEIGHTS_FILE} does not match model.json (its checksum differs: truncated, "
            "corrupted or replaced after saving)"
        )
    if framework == "pt":
        from safetensors.torch import load_file
    else:
        from safetensors.numpy import load_file
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # a truncated or foreign file: say which and why
        raise ModelFileError(f"cannot read {weights}: {type(exc).__name__}: {exc}") from None
    return folder, meta, tensors


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "KINDS",
    "META_FILE",
    "WEIGHTS_FILE",
    "WEIGHTS_HASH_KEY",
    "file_sha256",
    "model_folder",
    "read_model_folder",
    "read_model_meta",
    "write_model_folder",
    "write_model_meta",
    "model_problem",
]


def model_problem(folder: str | os.PathLike, exc: BaseException) -> ModelFileError:
    """One clear :class:`ModelFileError` for a model folder whose contents disagree
    (a key missing from model.json, a wrong type, tensors of the wrong shape)."""
    if isinstance(exc, ModelFileError):
        return exc
    if isinstance(exc, KeyError):
        what = f"model.json or the weights lack {exc.args[0]!r}" if exc.args else "a required entry is missing"
    else:
        what = f"{type(exc).__name__}: {exc}"
    return ModelFileError(f"{folder} is not a consistent pixsort model: {what}")
