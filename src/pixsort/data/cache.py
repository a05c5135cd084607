"""On-disk cache of decoded images, keyed by file content and decode settings.

Layout under the cache root::

    hashes.jsonl                      path, size, mtime_ns -> content hash (so unchanged
                                      files are not even re-read to be hashed)
    decoded/<settings key>/pixels.u8  append-only rows of H*W*C uint8, memory-mapped
    decoded/<settings key>/index.jsonl content hash -> row, or the reason it was skipped

A changed file has a new content hash, so it is decoded again; an unchanged file never
is, whatever its path.  Identical files share one row.  Appends take an exclusive
``flock`` so two processes can fill the same cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from pixsort.data.decode import DecodeSettings, SkipImage, regular_file

HASH_BYTES = 16  # blake2b-128: collision-safe for any image collection, short in file names
HASH_CHUNK = 1 << 20  # files are hashed 1 MiB at a time: memory stays flat whatever their size


def default_cache_dir() -> Path:
    """``$PIXSORT_CACHE``, else ``$XDG_CACHE_HOME/pixsort``, else ``~/.cache/pixsort``."""
    if os.environ.get("PIXSORT_CACHE"):
        return Path(os.environ["PIXSORT_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "pixsort"


def hash_bytes(data: bytes | memoryview) -> str:
    return hashlib.blake2b(data, digest_size=HASH_BYTES).hexdigest()


def hash_file(path: str | os.PathLike) -> str:
    """The :func:`hash_bytes` of a file's content, streamed in :data:`HASH_CHUNK` pieces."""
    h = hashlib.blake2b(digest_size=HASH_BYTES)
    buffer = bytearray(HASH_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            h.update(view[:n])
    return h.hexdigest()


def hash_array(array: np.ndarray, block_rows: int = 8192) -> str:
    """The content hash of an array (its dtype, shape and values), read ``block_rows``
    rows at a time: a large or memory-mapped array is not copied whole."""
    h = hashlib.blake2b(digest_size=HASH_BYTES)
    h.update(f"{np.dtype(array.dtype).str}{tuple(array.shape)}".encode())
    if array.ndim == 0:
        h.update(np.ascontiguousarray(array).data)
    for s in range(0, len(array) if array.ndim else 0, block_rows):
        h.update(np.ascontiguousarray(array[s : s + block_rows]).data)
    return h.hexdigest()


def write_atomic(path: Path, write) -> None:
    """Write a file through ``write(handle)`` into a temporary sibling, flush it to disk and
    rename it into place: readers (and a crash, even ``kill -9``) see the old file or
    the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def locked_file(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created with its folder) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash: that entry is simply recomputed
    return records


class ContentHasher:
    """Content hashes of files, remembered by (path, size, mtime) to skip re-reading."""

    def __init__(self, root: Path | None):
        self.path = root / "hashes.jsonl" if root is not None else None
        self._known: dict[tuple[str, int, int], str] = {}
        self._new: list[dict] = []
        if self.path is not None:
            for r in _read_jsonl(self.path):
                self._known[(r["p"], r["s"], r["m"])] = r["h"]

    def file_hash(self, path: str) -> str | None:
        """The content hash of ``path``, or None when it cannot be read or is not a regular file."""
        try:
            st = regular_file(path)  # never open a FIFO, socket or device
        except SkipImage:
            return None
        stamp = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
        known = self._known.get(stamp)
        if known is not None:
            return known
        try:
            digest = hash_file(path)
        except OSError:
            return None
        self._known[stamp] = digest
        self._new.append({"p": stamp[0], "s": stamp[1], "m": stamp[2], "h": digest})
        return digest

    def save(self) -> None:
        if self.path is None or not self._new:
            return
        with locked_file(self.path.with_suffix(".lock")), open(self.path, "a", encoding="utf-8") as handle:
            for r in self._new:
                handle.write(json.dumps(r) + "\n")
        self._new.clear()


@dataclass(frozen=True)
class CacheEntry:
    """What is known about one content hash under one set of decode settings."""

    row: int  # ordinal of the stored image, -1 when skipped
    reason: str = ""
    detail: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""
    format: str = ""
    offset: int = -1  # byte offset in pixels.u8
    h: int = 0  # stored height and width: the target size, or the image's own when smaller
    w: int = 0


class DecodedStore:
    """Append-only, memory-mapped store of decoded images for one ``DecodeSettings``.

    Images are packed one after the other, each at the target size or, when smaller in
    both sides, at its own size (resized on access by :class:`~pixsort.data.lazy.PackedImages`,
    to the same pixels): 32 px pictures decoded for a 240 px network take 3 KB, not 173 KB.
    Folders of the fixed-row layout of earlier versions are removed and rebuilt.
    """

    LAYOUT = "packed1"

    def __init__(self, root: Path, settings: DecodeSettings):
        self.settings = settings
        self.folder = root / "decoded" / f"{settings.key()}-{self.LAYOUT}"
        self._old_folder = root / "decoded" / settings.key()
        self.pixels_path = self.folder / "pixels.u8"
        self.index_path = self.folder / "index.jsonl"
        self.channels = settings.shape[2]
        self.entries: dict[str, CacheEntry] = {}
        self._read_to = 0  # bytes of the index read so far (whole lines)
        self._rows = 0  # stored images indexed
        self._end = 0  # where the last whole image ends: bytes after it are a torn tail
        self._reload()

    def _reload(self) -> None:
        """Read the index lines appended since the last read (by any process).

        Only the new tail is parsed: re-reading the whole index before every append made a
        cold fill quadratic (10,000 images: 40 appends parsing 200,000 lines).  An index
        shorter than what was read (cleared or rebuilt meanwhile) is read again whole."""
        try:
            size = os.path.getsize(self.index_path)
        except FileNotFoundError:
            size = 0
        if size < self._read_to:
            self.entries, self._read_to, self._rows, self._end = {}, 0, 0, 0
        if size == self._read_to:
            return
        with open(self.index_path, "rb") as handle:
            handle.seek(self._read_to)
            tail = handle.read(size - self._read_to)
        whole = tail[: tail.rfind(b"\n") + 1]  # a line still being written (or torn) is read next time
        self._read_to += len(whole)
        for line in whole.splitlines():
            try:
                r = json.loads(line)
                key = r.pop("k")
                self._index(key, CacheEntry(**r))
            except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError, AttributeError):
                continue  # a line cut short by a crash, or of another layout: recomputed

    def _index(self, key: str, entry: CacheEntry) -> None:
        before = self.entries.get(key)
        self._rows += int(entry.row >= 0) - int(before is not None and before.row >= 0)
        self.entries[key] = entry
        if entry.row >= 0 and entry.offset >= 0:
            self._end = max(self._end, entry.offset + self._bytes(entry))

    def _bytes(self, entry: CacheEntry) -> int:
        return entry.h * entry.w * self.channels

    def append(self, batch: list[tuple[str, np.ndarray | None, CacheEntry]]) -> None:
        """Add decoded images (or skip records) and index them; one lock per batch."""
        if not batch:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with locked_file(self.folder / "store.lock"):
            if self._old_folder.is_dir():
                shutil.rmtree(self._old_folder, ignore_errors=True)  # the fixed-row layout: rebuilt here
            self._reload()  # another process may have appended meanwhile
            end, rows = self._end, self._rows
            # cut a torn tail left by a crash: the index only points below it
            if self.pixels_path.exists() and os.path.getsize(self.pixels_path) != end:
                with open(self.pixels_path, "r+b") as handle:
                    handle.truncate(end)
            lines = []
            with open(self.pixels_path, "ab") as pixels:
                for key, array, entry in batch:
                    if key in self.entries:
                        continue
                    if array is not None:
                        data = np.ascontiguousarray(array, dtype=np.uint8)
                        pixels.write(data.tobytes())
                        entry = replace(entry, row=rows, offset=end, h=int(data.shape[0]), w=int(data.shape[1]))
                        end += data.size
                        rows += 1
                    self._index(key, entry)
                    lines.append(json.dumps({"k": key, **asdict(entry)}) + "\n")
                pixels.flush()
                os.fsync(pixels.fileno())
            with open(self.index_path, "ab") as index:
                if index.tell() > self._read_to:  # a line torn by a crash: keep ours off it
                    index.write(b"\n")
                index.writelines(line.encode("utf-8") for line in lines)
                # under the lock nobody else appended: what is indexed now is all there is
                self._read_to = index.tell()

    def images(self, entries: list[CacheEntry]):
        """The stored images of ``entries``, in order: a read-only memmap ``(n, H, W, C)``
        when they lie one after the other at the target size, else a
        :class:`~pixsort.data.lazy.PackedImages` over the memory-mapped file."""
        from pixsort.data.lazy import PackedImages

        shape = self.settings.shape
        if not entries:
            return np.zeros((0, *shape), dtype=np.uint8)
        offsets = np.array([e.offset for e in entries], dtype=np.int64)
        sizes = np.array([(e.h, e.w) for e in entries], dtype=np.int64)
        row_bytes = int(np.prod(shape))
        full = bool((sizes == shape[:2]).all())
        if full and np.array_equal(offsets, offsets[0] + row_bytes * np.arange(len(offsets))):
            return np.memmap(self.pixels_path, dtype=np.uint8, mode="r", offset=int(offsets[0]),
                             shape=(len(entries), *shape))  # fmt: skip
        buffer = np.memmap(self.pixels_path, dtype=np.uint8, mode="r")
        return PackedImages(buffer, offsets, sizes, self.settings)

    def stored_bytes(self) -> int:
        try:
            return os.path.getsize(self.pixels_path)
        except FileNotFoundError:
            return 0
