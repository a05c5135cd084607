"""On-disk embedding cache: one ``.npy`` per (image key, extractor identity).

Layout: ``<cache_dir>/<sha256(extractor_id)[:20]>/<key[:2]>/<key>.npy`` plus an
``extractor.json`` naming the identity for humans.  One small file per image
keeps writers independent (parallel runs, interrupted runs leave only whole
entries: files are written to a temporary name and renamed).  Entries are read
with ``allow_pickle=False``; unreadable or mis-shaped ones count as missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["EmbeddingCache"]

_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class EmbeddingCache:
    """Embeddings of one extractor configuration, keyed by image content hash.

    Parameters
    ----------
    root : path
        Cache directory shared by all extractors; created on first write.
    extractor_id : str
        Everything that changes the embedding (see ``ImageExtractor.extractor_id``).
    """

    def __init__(self, root: str | os.PathLike, extractor_id: str):
        self.root = Path(root)
        self.extractor_id = extractor_id
        self.dir = self.root / hashlib.sha256(extractor_id.encode()).hexdigest()[:20]

    def _path(self, key: str) -> Path:
        # Content hashes are used as they are; anything else (paths, odd
        # characters) is hashed so it cannot escape the directory.
        name = key if _SAFE_KEY.fullmatch(key) and ".." not in key else hashlib.sha256(key.encode()).hexdigest()
        return self.dir / name[:2] / f"{name}.npy"

    def get(self, keys: Sequence[str], dim: int | None = None) -> list[np.ndarray | None]:
        """Cached vector (float32, shape ``(dim,)``) per key, ``None`` where missing."""
        out: list[np.ndarray | None] = []
        for key in keys:
            try:
                vec = np.load(self._path(key), allow_pickle=False)
            except (OSError, ValueError, EOFError):
                out.append(None)
                continue
            ok = vec.dtype == np.float32 and vec.ndim == 1 and (dim is None or vec.shape[0] == dim)
            out.append(vec if ok else None)
        return out

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store ``vectors[i]`` (float32) under ``keys[i]``, atomically per entry."""
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys for {len(vectors)} vectors")
        if len(keys) == 0:
            return
        try:
            self._put(keys, vectors)
        except OSError as exc:  # a read-only or full cache: the vectors are simply not kept
            warnings.warn(
                f"cannot write the embedding cache in {self.root} ({exc.strerror or exc}); continuing without it",
                RuntimeWarning,
                stacklevel=2,
            )

    def _put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        self._write_identity()
        for key, vec in zip(keys, np.asarray(vectors, dtype=np.float32)):
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.save(f, np.ascontiguousarray(vec), allow_pickle=False)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def _write_identity(self) -> None:
        meta = self.dir / "extractor.json"
        if meta.exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"extractor_id": self.extractor_id}, f)
        os.replace(tmp, meta)
