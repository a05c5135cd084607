"""On-disk embedding store: append-only shards per extractor configuration.

Layout: ``<cache_dir>/<sha256(extractor_id)[:20]>/`` holds ``extractor.json`` (the
identity, for humans) and ``shards/<name>.npy`` + ``shards/<name>.json``: a float32
matrix ``(rows, dim)`` and its manifest (the key of each row, the shape and a blake2b
checksum of the matrix file).  The manifest is renamed into place last, so it is the
commit record: a crash (even ``kill -9``) leaves whole shards or orphan matrices that
nothing points to; a matrix whose checksum no longer matches is ignored, its rows
count as missing and are recomputed.  Each writer writes shards of its own (unique
names), so two processes can fill one store without a lock; only merging small
shards takes an exclusive ``flock``.  The number of files grows with shards
(one per :meth:`EmbeddingCache.put`, merged once there are more than
:data:`MAX_SHARDS`), not with images; shards are memory-mapped on read.

A matrix is checksummed when a process first opens it, unless ``verified.json`` records
that it was, at its present size and modification time: a warm fit of 50,000 images
spent 2.6 s of 35 s hashing 640 MB of shards it had hashed before.  Only shards last
modified :data:`SETTLED_NS` before their check are recorded, so a shard rewritten after
it (any write moves the modification time past the record's) is checksummed again; what
the record cannot see is a change that keeps size and time (bit rot under the file
system, or a deliberate reset of the time).

Stores written by pixsort before 0.2 (one ``.npy`` per image under ``<key[:2]>/``)
are read once and folded into a shard.

Rows of another fixed dtype use the same machinery: ``EmbeddingCache(root, name,
dtype=np.uint8)`` keeps packed per-image records (an audit's pixel measurements).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pixsort.data.cache import hash_file, locked_file, write_atomic

__all__ = ["MAX_SHARDS", "EmbeddingCache"]

_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
MAX_SHARDS = 64  # above this many shards, the smaller half is merged into one
SHARD_FORMAT = 1
VERIFIED_FILE = "verified.json"
# a file's modification time is kept at a few ms' granularity: a shard changed within that
# time of its check could keep the checked time, so only shards older than this are recorded
SETTLED_NS = 2_000_000_000


@dataclass
class _Index:
    """What this process knows of one shard folder: key -> (shard, row)."""

    shards: list = field(default_factory=list)
    where: dict = field(default_factory=dict)
    seen: set = field(default_factory=set)  # shard names looked at (damaged ones included)
    listed: set = field(default_factory=set)
    reuse: dict = field(default_factory=dict)


# per shard folder; the extractor opens a store object once per chunk of images
_INDEXES: dict[tuple[Path, str], _Index] = {}


def _store_key(key: str) -> str:
    # content hashes are kept as they are; anything else is hashed so every key has one safe spelling
    return key if _SAFE_KEY.fullmatch(key) and ".." not in key else hashlib.sha256(key.encode()).hexdigest()


def _unmap_pages(matrix: np.ndarray) -> None:
    """Drop the pages of a read-only shard memmap from this process (they stay in the page
    cache; the next read faults them back in).  Each page read stays mapped otherwise and
    counts in the RSS: a warm fit of 50,000 images held its 640 MB of shards to the end."""
    handle = getattr(matrix, "_mmap", None)
    if handle is not None and hasattr(handle, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        handle.madvise(mmap.MADV_DONTNEED)


@dataclass
class _Shard:
    name: str
    keys: list[str]
    matrix: np.ndarray  # read-only memmap (rows, dim)


class EmbeddingCache:
    """Embeddings of one extractor configuration, keyed by image content hash.

    Parameters
    ----------
    root : path
        Cache directory shared by all extractors; created on first write.
    extractor_id : str
        Everything that changes the embedding (see ``ImageExtractor.extractor_id``).
    dtype : numpy dtype, default float32
        Of every stored row; shards of another dtype count as missing.
    """

    def __init__(self, root: str | os.PathLike, extractor_id: str, dtype=np.float32):
        self.root = Path(root)
        self.extractor_id = extractor_id
        self.dtype = np.dtype(dtype)
        self.dir = self.root / hashlib.sha256(extractor_id.encode()).hexdigest()[:20]
        self.shard_dir = self.dir / "shards"
        self._shards: list[_Shard] | None = None
        self._where: dict[str, tuple[int, int]] = {}

    # ------------------------------------------------------------------ read
    def _load(self) -> None:
        """Bring the index up to date with the shards on disk.  The index of a folder is
        kept per process and only grows by the shards written since (a shard never
        changes once written), so each shard is read and checksummed once per process,
        and once in all where ``verified.json`` records it."""
        self._fold_legacy()
        names = [m.stem for m in sorted(self.shard_dir.glob("*.json"))] if self.shard_dir.is_dir() else []
        index = _INDEXES.get((self.shard_dir, self.dtype.str))
        if index is None or not index.listed <= set(names):  # first use, or shards merged away
            reuse = {} if index is None else {s.name: s for s in index.shards}
            index = _Index()
            index.reuse = reuse
        verified, checked = None, {}
        for name in names:
            if name in index.seen:
                continue
            index.seen.add(name)
            shard = index.reuse.get(name)
            if shard is None:
                verified = self._verified() if verified is None else verified
                shard = self._open_shard(self.shard_dir / f"{name}.json", verified.get(name), checked)
            if shard is None:
                continue
            s = len(index.shards)
            index.shards.append(shard)
            for row, key in enumerate(shard.keys):
                index.where.setdefault(key, (s, row))
        if checked:
            self._record_verified({**{n: v for n, v in verified.items() if n in names}, **checked})
        index.listed = set(names)
        index.reuse = {}
        _INDEXES[(self.shard_dir, self.dtype.str)] = index
        self._shards, self._where = index.shards, index.where

    def _open_shard(self, manifest: Path, stamp: list | None, checked: dict) -> _Shard | None:
        """The shard of ``manifest``, or None when it is unreadable, torn or tampered with.
        ``stamp``: its recorded ``[size, mtime_ns]`` when verified before; a shard newly
        checksummed (and settled) is added to ``checked``."""
        try:
            meta = json.loads(manifest.read_text(encoding="utf-8"))
            matrix_path = manifest.with_suffix(".npy")
            if meta.get("format") != SHARD_FORMAT:
                raise ValueError("unknown shard format")
            st = os.stat(matrix_path)
            now = [st.st_size, st.st_mtime_ns]
            if stamp != now and hash_file(matrix_path) != meta["checksum"]:
                raise ValueError("checksum mismatch")
            matrix = np.load(matrix_path, mmap_mode="r", allow_pickle=False)
            keys = [str(k) for k in meta["keys"]]
            if matrix.dtype != self.dtype or matrix.shape != (len(keys), int(meta["dim"])):
                raise ValueError("shape mismatch")
            if stamp != now and time.time_ns() - st.st_mtime_ns > SETTLED_NS:
                checked[manifest.stem] = now
        except FileNotFoundError:
            return None  # merged away by another process since it was listed
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(
                f"ignoring a damaged embedding shard {manifest.name} ({exc}); its images are recomputed",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        return _Shard(manifest.stem, keys, matrix)

    def _verified(self) -> dict:
        """Shard name -> ``[size, mtime_ns]`` of the shards checksummed before."""
        try:
            record = json.loads((self.dir / VERIFIED_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def _record_verified(self, record: dict) -> None:
        # best effort: two processes may race and one's entries be lost (they are simply
        # checksummed again next time); a read-only cache records nothing
        try:
            write_atomic(self.dir / VERIFIED_FILE, lambda f: f.write(json.dumps(record).encode()))
        except OSError:
            pass

    def __len__(self) -> int:
        if self._shards is None:
            self._load()
        return len(self._where)

    def lookup(self, keys: Sequence[str], dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors for ``keys``: ``(vectors (n, D) of ``dtype``, found (n,) bool)``.

        Rows of keys not found are zero.  ``D`` is the stored width (``dim`` when given;
        entries of another width count as missing)."""
        located, found, width = self._locate(keys, dim)
        out = np.zeros((len(keys), width or 0), dtype=self.dtype)
        if width is None:
            return out, found
        by_shard: dict[int, tuple[list[int], list[int]]] = {}
        for i, loc in enumerate(located):
            if found[i]:
                rows = by_shard.setdefault(loc[0], ([], []))
                rows[0].append(i)
                rows[1].append(loc[1])
        for s, (positions, rows) in by_shard.items():
            order = np.argsort(rows)  # sorted reads keep the memmap access sequential
            matrix = self._shards[s].matrix
            out[np.asarray(positions)[order]] = matrix[np.asarray(rows)[order]]
            _unmap_pages(matrix)
        return out, found

    def contains(self, keys: Sequence[str], dim: int | None = None) -> np.ndarray:
        """``found`` of :meth:`lookup` (n,) bool, without reading a vector."""
        return self._locate(keys, dim)[1]

    def _locate(self, keys: Sequence[str], dim: int | None) -> tuple[list, np.ndarray, int | None]:
        """(shard and row of each key or None, found (n,) bool, the stored width or None)."""
        self._load()  # shards written by other processes since the last call count too
        located = [self._where.get(_store_key(k)) for k in keys]
        widths = {self._shards[s].matrix.shape[1] for s, _ in filter(None, located)}
        width = dim if dim is not None else (widths.pop() if len(widths) == 1 else None)
        if width is None:  # nothing stored, or entries of mixed widths (written by hand): all missing
            return located, np.zeros(len(keys), dtype=bool), None
        found = np.array([loc is not None and self._shards[loc[0]].matrix.shape[1] == width for loc in located])
        return located, found.astype(bool, copy=False).reshape(len(keys)), width

    def get(self, keys: Sequence[str], dim: int | None = None) -> list[np.ndarray | None]:
        """Cached vector (``dtype``, shape ``(dim,)``) per key, ``None`` where missing."""
        vectors, found = self.lookup(keys, dim)
        return [v if ok else None for v, ok in zip(vectors, found)]

    def n_files(self) -> int:
        """Files the store holds (grows with shards, not images)."""
        return sum(1 for p in self.dir.rglob("*") if p.is_file()) if self.dir.is_dir() else 0

    # ----------------------------------------------------------------- write
    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store ``vectors[i]`` (cast to ``dtype``) under ``keys[i]`` as one new shard."""
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys for {len(vectors)} vectors")
        if len(keys) == 0:
            return
        try:
            self._write_identity()
            self._write_shard([_store_key(k) for k in keys], np.asarray(vectors, dtype=self.dtype))
            self._merge_if_many()
        except OSError as exc:  # a read-only or full cache: the vectors are simply not kept
            warnings.warn(
                f"cannot write the embedding cache in {self.root} ({exc.strerror or exc}); continuing without it",
                RuntimeWarning,
                stacklevel=2,
            )

    def _write_shard(self, keys: list[str], matrix: np.ndarray, name: str | None = None) -> str:
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        name = name or f"{uuid.uuid4().hex}"
        matrix_path = self.shard_dir / f"{name}.npy"
        write_atomic(matrix_path, lambda f: np.save(f, np.ascontiguousarray(matrix), allow_pickle=False))
        meta = {
            "format": SHARD_FORMAT,
            "rows": len(keys),
            "dim": int(matrix.shape[1]),
            "checksum": hash_file(matrix_path),
            "keys": keys,
        }
        # the manifest is the commit: until it is in place, the matrix belongs to nobody
        write_atomic(self.shard_dir / f"{name}.json", lambda f: f.write(json.dumps(meta).encode()))
        return name

    def _merge_if_many(self) -> None:
        if len(list(self.shard_dir.glob("*.json"))) <= MAX_SHARDS:
            return
        with locked_file(self.dir / "merge.lock"):
            self._load()
            if len(self._shards) <= MAX_SHARDS:
                return  # another process merged meanwhile
            # the smaller half: each row is rewritten O(log n) times as the store grows
            small = sorted(self._shards, key=lambda s: len(s.keys))[: len(self._shards) // 2 + 1]
            widths = {s.matrix.shape[1] for s in small}
            if len(widths) != 1:
                return
            keys, parts, seen = [], [], set()
            for shard in small:
                keep = [i for i, k in enumerate(shard.keys) if k not in seen]
                seen.update(shard.keys)
                keys.extend(shard.keys[i] for i in keep)
                parts.append(np.asarray(shard.matrix[keep]))
            self._write_shard(keys, np.concatenate(parts))
            for shard in small:
                (self.shard_dir / f"{shard.name}.json").unlink(missing_ok=True)
                (self.shard_dir / f"{shard.name}.npy").unlink(missing_ok=True)

    def _write_identity(self) -> None:
        meta = self.dir / "extractor.json"
        if meta.exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(meta, lambda f: f.write(json.dumps({"extractor_id": self.extractor_id}).encode()))

    def _fold_legacy(self) -> None:
        """Move one-file-per-image entries of older pixsort into one shard, once."""
        legacy = [d for d in self.dir.iterdir() if d.is_dir() and len(d.name) == 2] if self.dir.is_dir() else []
        if not legacy:
            return
        try:
            with locked_file(self.dir / "merge.lock"):
                keys, vectors = [], []
                for folder in legacy:
                    for path in folder.glob("*.npy"):
                        try:
                            vec = np.load(path, allow_pickle=False)
                        except (OSError, ValueError, EOFError):
                            continue
                        if vec.dtype == self.dtype and vec.ndim == 1:
                            keys.append(path.stem)
                            vectors.append(vec)
                widths = {v.shape[0] for v in vectors}
                if len(widths) == 1:
                    self._write_shard(keys, np.stack(vectors))
                for folder in legacy:
                    shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            return  # a read-only old cache: its entries are recomputed, not migrated
