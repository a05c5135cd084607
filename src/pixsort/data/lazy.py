"""Images decoded when indexed, for the few pictures a report shows of a set whose
pixels are not held (a clustering fitted on stored embeddings)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pixsort.data.decode import DecodeSettings, SkipImage, decode_image


class LazyImages:
    """``images[i]`` decodes ``paths[i]`` with ``settings``; a file that is gone or
    broken since it was embedded gives a mid-grey image rather than an error.

    Indexable like the uint8 array ``(n, H, W, C)`` it stands for (an int, a slice or
    an index array); ``len`` and ``shape`` without decoding anything.
    """

    def __init__(self, paths: Sequence[str], settings: DecodeSettings):
        self.paths = list(paths)
        self.settings = settings

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths), *self.settings.shape)

    dtype = np.dtype(np.uint8)
    ndim = 4

    def _one(self, i: int) -> np.ndarray:
        try:
            return decode_image(self.paths[i], self.settings)[0]
        except (SkipImage, OSError):
            return np.full(self.settings.shape, 128, dtype=np.uint8)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self._one(int(index))
        positions = np.arange(len(self))[index]
        if positions.ndim == 0:
            return self._one(int(positions))
        return (
            np.stack([self._one(int(i)) for i in positions])
            if len(positions)
            else np.zeros((0, *self.settings.shape), dtype=np.uint8)
        )


__all__ = ["LazyImages"]
