"""``FusedExtractor``: the embeddings of several pretrained backbones side by side.

The feature name ``efficientnet_lite0+efficientnet_lite1+efficientnet_lite2`` (see
:mod:`pixsort.features.names`) builds one: each image goes through every backbone
(a :class:`~pixsort.features.embed.PretrainedExtractor` each, with its own runtime choice
and ONNX export) and the pooled layers are concatenated in the order named.  The reducer
L2-normalises every layer on its own (``feature_blocks``), so no backbone outweighs
another by its scale.  The cache holds the concatenation under the fused
``extractor_id``: one lookup per image, and the pixels of a miss are made once for all
backbones.

Measured (``bench/input_size.py``, stop 26, AVX2 EPYC; Lite1 at 240 px is the default):
Lite0+1+2 at 160 px clustered the CIFAR-10 sample at 0.677 against 0.624 (10,000 images),
0.602 against 0.574 (2,000) and 0.632 against 0.557 (7 uneven classes); PneumoniaMNIST
0.819 against 0.827; digits 0.871 against 0.874; at 1.4x the embedding time.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .backbones.imagenet import ClassGuesses, guess_classes
from .base import ImageExtractor
from .embed import PretrainedExtractor
from .names import FUSION_SEPARATOR, parse_feature_name

__all__ = ["FusedExtractor"]


class FusedExtractor(ImageExtractor):
    """Concatenate the embeddings of two or more pretrained backbones.

    Parameters
    ----------
    backbones : sequence of str
        Two or more distinct names of ``list_backbones()`` (or ``timm:<model>``), in the
        order their features are concatenated.
    layers, batch_size, precision, channels_last, input_size, runtime, device, export_dir, progress
        As for :class:`~pixsort.features.embed.PretrainedExtractor`, the same for every
        backbone (``input_size`` None: each backbone's own size).

    Attributes
    ----------
    parts_ : list of PretrainedExtractor
        One extractor per backbone (built on first use).
    """

    def __init__(
        self,
        backbones=("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"),
        layers=None,
        batch_size: int = 64,
        precision: str = "auto",
        channels_last="auto",
        input_size=None,
        runtime: str = "auto",
        device: str = "auto",
        export_dir: str | os.PathLike | None = None,
        progress="auto",
    ):
        self.backbones = backbones
        self.layers = layers
        self.batch_size = batch_size
        self.precision = precision
        self.channels_last = channels_last
        self.input_size = input_size
        self.runtime = runtime
        self.device = device
        self.export_dir = export_dir
        self.progress = progress

    def _validate_params(self) -> None:
        if isinstance(self.backbones, str) or not isinstance(self.backbones, (list, tuple)):
            raise TypeError(f"backbones must be a list of names, got {self.backbones!r}")
        parse_feature_name(FUSION_SEPARATOR.join(map(str, self.backbones)))  # the grammar's checks
        if len(self.backbones) < 2:
            raise ValueError(f"a fusion needs two or more backbones, got {list(self.backbones)}")
        for part in self.parts_:
            part._validate_params()

    @property
    def parts_(self) -> list[PretrainedExtractor]:
        params = self.get_params(deep=False)
        key = repr(sorted(params.items()))
        if getattr(self, "_cached_key", None) != key:
            shared = {name: value for name, value in params.items() if name != "backbones"}
            self._cached_parts = [PretrainedExtractor(backbone=name, **shared) for name in self.backbones]
            self._cached_key = key
        return self._cached_parts

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_cached_parts", None)  # the networks are rebuilt from the parameters
        state.pop("_cached_key", None)
        return state

    @property
    def extractor_id(self) -> str:
        return "FusedExtractor/" + "|".join(part.extractor_id for part in self.parts_)

    @property
    def n_features_out(self) -> int:
        return sum(part.n_features_out for part in self.parts_)

    @property
    def feature_blocks(self) -> list[int]:
        """Widths of the pooled layers in ``transform`` output: every backbone's, in order."""
        return [width for part in self.parts_ for width in part.feature_blocks]

    def _input_size(self) -> tuple[int, int] | None:
        sizes = {part._input_size() for part in self.parts_}
        return sizes.pop() if len(sizes) == 1 else None

    def _extract(self, images: np.ndarray) -> np.ndarray:
        return np.concatenate([part._extract(images) for part in self.parts_], axis=1)

    def class_guesses(self, features: np.ndarray, chunk: int = 4096) -> ClassGuesses | None:
        """The ImageNet class and group each row most likely shows, by the mean of the
        backbones' class probabilities (those with an ImageNet-1k head); None when none
        has one.  ``features``: :meth:`transform` output, shape (n, n_features_out)."""
        heads, offset = [], 0
        for part in self.parts_:
            head = part.imagenet_head()
            if head is not None:
                columns, classify = head
                heads.append((slice(offset + columns.start, offset + columns.stop), classify))
            offset += part.n_features_out
        if not heads:
            return None
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != offset:
            raise ValueError(f"expected features of shape (n, {offset}), got {features.shape}")

        def mean_probabilities(rows: torch.Tensor) -> torch.Tensor:
            probs = sum(torch.softmax(classify(rows[:, columns]), dim=1) for columns, classify in heads)
            return torch.log(probs / len(heads))  # log-probabilities: their softmax is the mean

        return guess_classes(mean_probabilities, features, chunk)
