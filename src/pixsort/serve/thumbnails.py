"""Small JPEG thumbnails of a clusterer's training images, addressed by index only.

Clients name a training image by its position in ``train_paths_``, never by a path,
so the server reads nothing but the images the model was fitted on.  Paths are file
paths or the data layer's array references (``file.npz:key[i]``, ``file.npy[i]``);
relative ones are resolved against ``search_roots`` only (the app passes the folder
the model was fitted in, as recorded in ``model.json``), never implicitly against the
working directory.
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from pixsort.data import DecodeSettings, SkipImage, decode_array, decode_image

_ARRAY_REF = re.compile(r"^(?P<file>.+?\.(?:npz|npy))(?::(?P<key>[^\[\]]+))?\[(?P<index>\d+)\]$", re.IGNORECASE)


class ThumbnailUnavailable(Exception):
    """The training image behind an index cannot be shown (gone, moved or unreadable)."""


class TrainingThumbnails:
    """JPEG bytes of training image ``i``, decoded once and kept in a small LRU cache.

    Parameters
    ----------
    paths : list of str
        The model's ``train_paths_``.
    search_roots : list of paths
        Where relative paths are looked for, in order.
    size : int
        Thumbnail side in pixels (centre crop, RGB).
    cache_size : int
        Thumbnails kept in memory.
    """

    def __init__(self, paths: list[str], search_roots: list[Path] | None = None, size: int = 96, cache_size: int = 512):
        self.paths = list(paths)
        self.search_roots = list(search_roots or [])
        self.settings = DecodeSettings(size=size, channels="RGB", resize="crop")
        self.cache_size = cache_size
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._arrays: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.paths)

    def jpeg(self, index: int) -> bytes:
        """The thumbnail of training image ``index``; raises IndexError or ThumbnailUnavailable."""
        if not 0 <= index < len(self.paths):
            raise IndexError(f"no training image {index} (the model has {len(self.paths)})")
        with self._lock:
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index]
        data = _encode_jpeg(self._pixels(self.paths[index]))
        with self._lock:
            self._cache[index] = data
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return data

    def pixels(self, index: int) -> np.ndarray:
        """Training image ``index`` decoded at the thumbnail size (uncached: the map's
        atlases read each image once); raises IndexError or ThumbnailUnavailable."""
        if not 0 <= index < len(self.paths):
            raise IndexError(f"no training image {index} (the model has {len(self.paths)})")
        return self._pixels(self.paths[index])

    def _pixels(self, ref: str) -> np.ndarray:
        match = _ARRAY_REF.match(ref)
        try:
            if match:
                array = self._array(self._resolve(match["file"]), match["key"] or "")
                return decode_array(array[int(match["index"])], self.settings)
            return decode_image(self._resolve(ref), self.settings)[0]
        except SkipImage as exc:
            raise ThumbnailUnavailable(f"training image {ref!r}: {exc}") from None
        except (IndexError, KeyError, ValueError, OSError) as exc:
            raise ThumbnailUnavailable(f"training image {ref!r}: {exc}") from None

    def _resolve(self, path: str) -> Path:
        candidate = Path(path)
        if candidate.is_absolute():
            if candidate.exists():
                return candidate
        else:
            for root in self.search_roots:
                if (root / candidate).exists():
                    return root / candidate
        raise ThumbnailUnavailable(f"training image {path!r} is no longer there")

    def _array(self, file: Path, key: str) -> np.ndarray:
        cache_key = (os.fspath(file), key)
        with self._lock:
            if cache_key in self._arrays:
                return self._arrays[cache_key]
        if file.suffix.lower() == ".npz":
            with np.load(file, allow_pickle=False) as npz:
                array = npz[key]
        else:
            array = np.load(file, mmap_mode="r", allow_pickle=False)
        with self._lock:
            self._arrays[cache_key] = array
            while len(self._arrays) > 2:  # npz arrays are loaded whole: keep few
                self._arrays.popitem(last=False)
        return array


def _encode_jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels if pixels.shape[-1] == 3 else pixels[..., 0]).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


__all__ = ["ThumbnailUnavailable", "TrainingThumbnails"]
