"""Image sets indexed like a uint8 array ``(n, H, W, C)`` whose pixels are made when
indexed: :class:`PackedImages` (the decoded-image cache's rows kept at their native
size, resized on access) and :class:`LazyImages` (decoded from their files, for the
few pictures a report shows of a clustering fitted on stored embeddings).

Indexing with an int gives one image ``(H, W, C)``; a slice, an index array or a
boolean mask gives a new uint8 array.  ``np.asarray(images)`` makes them all, so
long runs index in chunks instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pixsort.data.decode import DecodeSettings, SkipImage, decode_image, fit_to_settings, resizes_straight
from pixsort.data.processes import map_in_processes

PARALLEL_MIN = 256  # files below which forking decoders costs more than it saves


class ImageRows:
    """Base of the lazy image sets: subclasses give ``__len__``, ``settings`` and ``_one``."""

    settings: DecodeSettings
    dtype = np.dtype(np.uint8)
    ndim = 4

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _one(self, i: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.settings.shape)

    def _positions(self, index) -> np.ndarray:
        return np.arange(len(self))[index]

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self._one(int(np.arange(len(self))[index]))
        positions = self._positions(index)
        if positions.ndim == 0:
            return self._one(int(positions))
        out = np.empty((len(positions), *self.settings.shape), dtype=np.uint8)
        for j, i in enumerate(positions):
            out[j] = self._one(int(i))
        return out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __iter__(self):
        for i in range(len(self)):
            yield self._one(i)


class PackedImages(ImageRows):
    """Rows of the packed decoded-image file: each stored at its native size when that
    was smaller than the target, and resized to ``settings`` on access (the same
    resize the decoder does, so the pixels equal a direct decode).

    Parameters
    ----------
    buffer : 1-D uint8 array (a read-only memmap of the packed file)
    offsets : int64 (n,)  -- byte offset of each image
    shapes : int64 (n, 2)  -- stored (height, width) of each image
    settings : DecodeSettings
    """

    def __init__(self, buffer: np.ndarray, offsets: np.ndarray, shapes: np.ndarray, settings: DecodeSettings):
        self.buffer = buffer
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.shapes = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
        self.settings = settings

    def __len__(self) -> int:
        return len(self.offsets)

    def _one(self, i: int) -> np.ndarray:
        return fit_to_settings(self.stored(i), self.settings)

    def stored(self, i: int) -> np.ndarray:
        """Image ``i`` as stored (its native size where that is smaller than the target):
        for thumbnails, which would otherwise be enlarged to the target and shrunk again."""
        h, w = (int(v) for v in self.shapes[i])
        c = self.settings.shape[2]
        start = int(self.offsets[i])
        return self.buffer[start : start + h * w * c].reshape(h, w, c)

    def native_rows(self, positions) -> np.ndarray | None:
        """The images at ``positions`` as stored, ``(m, h, w, C)``, where they share one
        stored shape that :func:`~pixsort.data.decode.enlarge` takes straight to the
        target (else None): a consumer that resizes with that kernel gets the pixels of
        ``self[positions]`` from 56x fewer bytes (32 px rows for a 240 px network)."""
        pos = self._positions(positions)
        shapes = self.shapes[pos]
        if not len(pos) or (shapes != shapes[0]).any() or not resizes_straight(tuple(shapes[0]), self.settings):
            return None
        h, w = (int(v) for v in shapes[0])
        c = self.settings.shape[2]
        size = h * w * c
        out = np.empty((len(pos), h, w, c), dtype=np.uint8)
        flat = out.reshape(len(pos), size)
        for j, start in enumerate(self.offsets[pos]):
            flat[j] = self.buffer[int(start) : int(start) + size]
        return out

    def take(self, positions) -> PackedImages:
        """A lazy subset (no pixels made)."""
        pos = self._positions(positions)
        return PackedImages(self.buffer, self.offsets[pos], self.shapes[pos], self.settings)

    @property
    def stored_bytes(self) -> int:
        return int((self.shapes[:, 0] * self.shapes[:, 1]).sum()) * self.settings.shape[2]


class MirroredImages(ImageRows):
    """``images[i]`` is ``base[i]`` mirrored left to right (made on access, like its base):
    the test-time-augmentation view of a lazy set, whose cached embeddings need no pixels."""

    def __init__(self, base: ImageRows):
        self.base = base
        self.settings = base.settings

    def __len__(self) -> int:
        return len(self.base)

    def _one(self, i: int) -> np.ndarray:
        return self.base._one(i)[:, ::-1]

    def native_rows(self, positions) -> np.ndarray | None:
        """:meth:`PackedImages.native_rows` mirrored (resizing commutes with mirroring)."""
        rows = getattr(self.base, "native_rows", lambda _: None)(positions)
        return None if rows is None else np.ascontiguousarray(rows[:, :, ::-1])

    def take(self, positions) -> MirroredImages:
        return MirroredImages(self.base.take(positions))


class LazyImages(ImageRows):
    """``images[i]`` decodes ``paths[i]`` with ``settings``; a file that is gone or
    broken since it was embedded gives a mid-grey image rather than an error."""

    def __init__(self, paths: Sequence[str], settings: DecodeSettings):
        self.paths = list(paths)
        self.settings = settings

    def __len__(self) -> int:
        return len(self.paths)

    def _one(self, i: int) -> np.ndarray:
        return self._decoded(i, keep_small=False)

    def stored(self, i: int) -> np.ndarray:
        """Image ``i`` at its own size where that is smaller than the target (as
        :meth:`PackedImages.stored`): for thumbnails, with no enlarging and shrinking again."""
        return self._decoded(i, keep_small=True)

    def stored_many(self, positions) -> list[np.ndarray]:
        """:meth:`stored` of each of ``positions``, decoded by one process per core when
        there are many (the map's thumbnails of a large set: 20,000 files)."""
        jobs = [(self.paths[int(i)], self.settings) for i in self._positions(positions)]
        return list(map_in_processes(_stored_file, jobs, min_jobs=PARALLEL_MIN))

    def _decoded(self, i: int, keep_small: bool) -> np.ndarray:
        return _decoded_file(self.paths[i], self.settings, keep_small)

    def take(self, positions) -> LazyImages:
        return LazyImages([self.paths[int(i)] for i in self._positions(positions)], self.settings)


def _decoded_file(path: str, settings: DecodeSettings, keep_small: bool) -> np.ndarray:
    try:
        return decode_image(path, settings, keep_small=keep_small)[0]
    except (SkipImage, OSError):
        return np.full(settings.shape, 128, dtype=np.uint8)


def _stored_file(job: tuple[str, DecodeSettings]) -> np.ndarray:
    return _decoded_file(*job, keep_small=True)


__all__ = ["ImageRows", "LazyImages", "MirroredImages", "PackedImages"]
