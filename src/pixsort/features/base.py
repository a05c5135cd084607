"""The extractor interface used by clustering and classification.

An extractor is a scikit-learn transformer from a uint8 image batch
``(N, H, W, C)`` to a float32 feature matrix ``(N, D)``.  Its parameters fully
determine its output, so ``extractor_id`` can key an on-disk cache and
``to_config`` / :func:`pixsort.features.extractors.extractor_from_config` let a
fitted model record which extractor fed it.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from pixsort.base.images import check_images
from pixsort.base.jsonio import jsonable

from .cache import EmbeddingCache

__all__ = ["CONFIG_FORMAT", "EXTRACTORS", "ImageExtractor"]

log = logging.getLogger(__name__)

CONFIG_FORMAT = 1
# class name -> class, filled as subclasses are defined (rebuilt by features.extractors)
EXTRACTORS: dict[str, type[ImageExtractor]] = {}


class ImageExtractor(TransformerMixin, BaseEstimator, ABC):
    """Base class: ``transform(images) -> (N, D) float32``, with optional caching.

    Subclasses implement ``_validate_params``, ``_extract`` and ``extractor_id``.
    ``fit`` learns nothing (the extractors here are pretrained or fixed); it
    only validates, so the class drops into scikit-learn pipelines.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        EXTRACTORS[cls.__name__] = cls

    # --------------------------------------------------------------- interface
    @abstractmethod
    def _validate_params(self) -> None:
        """Raise TypeError/ValueError for bad constructor parameters."""

    @abstractmethod
    def _extract(self, images: np.ndarray) -> np.ndarray:
        """Features for a checked uint8 batch ``(N, H, W, C)`` -> ``(N, D)`` float32."""

    @property
    @abstractmethod
    def extractor_id(self) -> str:
        """String naming everything that changes the output (cache key, provenance)."""

    # ----------------------------------------------------------------- sklearn
    def fit(self, images, y=None):
        """Validate parameters and input; nothing is learned.  Returns self."""
        self._validate_params()
        check_images(images)
        return self

    def transform(
        self, images, keys: Sequence[str] | None = None, cache_dir: str | os.PathLike | None = None
    ) -> np.ndarray:
        """Features of ``images``.

        Parameters
        ----------
        images : ndarray (N, H, W, C) or (N, H, W), uint8, C in {1, 3}
            Grey images are repeated to RGB where the extractor needs colour.
        keys : sequence of N str, optional
            Content hash of each image (from the data layer); needed with ``cache_dir``.
        cache_dir : path, optional
            Embedding cache directory: entries for ``(key, extractor_id)``
            found there are reused, only the missing ones are computed and stored.

        Returns
        -------
        ndarray (N, D) float32
        """
        self._validate_params()
        if cache_dir is not None and keys is not None and _made_on_access(images):
            # a lazy set (pixsort.data.lazy): its shape is checked now, its pixels are made
            # only for the cache misses
            check_images(np.zeros((0, *images.shape[1:]), np.uint8))
        else:
            images = check_images(images)
        if keys is not None:
            keys = list(keys)
            if len(keys) != len(images):
                raise ValueError(f"got {len(keys)} keys for {len(images)} images")
            if not all(isinstance(k, str) and k for k in keys):
                raise TypeError("keys must be non-empty strings (content hashes of the images)")
        if cache_dir is None:
            return self._extract(images)
        if keys is None:
            raise ValueError("cache_dir needs keys: one content hash per image")
        return self._extract_cached(images, keys, EmbeddingCache(cache_dir, self.extractor_id))

    def fit_transform(self, images, y=None, keys=None, cache_dir=None) -> np.ndarray:
        """``fit(images, y).transform(images, keys, cache_dir)``."""
        return self.fit(images, y).transform(images, keys=keys, cache_dir=cache_dir)

    def __sklearn_is_fitted__(self) -> bool:
        return True  # stateless: usable without fit

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags

    # ------------------------------------------------------------------- cache
    def _extract_cached(self, images: np.ndarray, keys: list[str], cache: EmbeddingCache) -> np.ndarray:
        stored, found = cache.lookup(keys)
        log.info("embedding cache %s: %d of %d images cached", cache.dir, int(found.sum()), len(keys))
        if found.all() and len(keys):
            return stored
        todo: dict[str, int] = {}  # missing key -> first image with it (duplicates are computed once)
        for i in np.flatnonzero(~found):
            todo.setdefault(keys[i], int(i))
        fresh = self._extract(check_images(self._gather(images, np.fromiter(todo.values(), np.intp, len(todo)))))
        if found.any() and stored.shape[1] != fresh.shape[1]:
            return self._extract(check_images(images))  # stored entries of another width: not trusted
        cache.put(list(todo), fresh)
        if not found.any():
            stored = np.zeros((len(keys), fresh.shape[1]), dtype=np.float32)
        row_of = {key: r for r, key in enumerate(todo)}
        missing = np.flatnonzero(~found)
        stored[missing] = fresh[[row_of[keys[i]] for i in missing]]
        return stored

    def _input_size(self) -> tuple[int, int] | None:
        """(h, w) this extractor enlarges smaller input to with the decoder's kernel
        (:func:`pixsort.data.decode.enlarge`), or None where it does not."""
        return None

    def _gather(self, images, positions: np.ndarray) -> np.ndarray:
        """``images[positions]``; from a lazy set decoded at this extractor's input size,
        its native-size rows where they share a shape (the extractor enlarges them to
        the same pixels in one batched resize, from a fraction of the bytes)."""
        size = self._input_size()
        native_rows = getattr(images, "native_rows", None)
        if size is not None and native_rows is not None and tuple(images.settings.hw) == size:
            rows = native_rows(positions)
            if rows is not None:
                return rows
        return images[positions]

    # ------------------------------------------------------------------ config
    def to_config(self) -> dict:
        """JSON-serialisable ``{"type", "params", "format"}`` to rebuild this extractor."""
        params = jsonable(self.get_params(deep=False))
        return {"type": type(self).__name__, "params": params, "format": CONFIG_FORMAT}


def _made_on_access(images) -> bool:
    """An image set whose pixels are made when indexed (``pixsort.data.lazy``), not an array."""
    return (
        not isinstance(images, np.ndarray)
        and hasattr(images, "__array__")
        and hasattr(images, "shape")
        and getattr(images, "dtype", None) == np.uint8
        and len(getattr(images, "shape", ())) == 4
    )
