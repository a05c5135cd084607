"""The ``Backbone`` interface shared by every pretrained image network.

A backbone maps a normalised float batch ``(N, 3, H, W)`` to a pooled embedding
``(N, D)`` (``forward_features``) or to ImageNet logits (``classify``).  Which
internal feature maps make up the embedding is fixed at construction by
``layers`` so that ``feature_dim`` is a plain number that callers can rely on.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["Backbone", "BackboneUnavailable", "PretrainedCfg", "resolve_layers", "state_dict_hash"]


class BackboneUnavailable(RuntimeError):
    """A backbone cannot be built here: a package or weights file is missing or broken.

    The message always says why and what to install or pass instead; it is meant
    to be shown to the user as is.
    """


@dataclass(frozen=True)
class PretrainedCfg:
    """How a backbone's weights expect their input, and where the weights come from.

    ``mean``/``std`` are in [0, 1] pixel units (timm's convention): the network
    sees ``(pixel / 255 - mean) / std``.  ``crop_pct`` is what the training
    recipe used at evaluation (centre crop of ``crop_pct`` of the shorter side);
    the extractors resize whole images instead and only record it here.
    """

    input_size: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    num_classes: int = 1000
    num_features: int = 1280  # width of the pooled ``head`` embedding
    weights: str = ""  # where the weights come from, for humans (package, file, hub tag)
    labels: str = ""  # the label space of the classifier head ("imagenet-1k"), "" when unknown

    def to_dict(self) -> dict:
        """JSON-serialisable view (tuples become lists)."""
        return asdict(self)


def resolve_layers(layers, feature_names: Sequence[str]) -> tuple[str, ...]:
    """Canonical tuple of feature-map names for a ``layers=`` argument.

    Parameters
    ----------
    layers : None, int, str or sequence of str
        ``None`` -> the last feature map only (the usual embedding); ``k`` (int)
        -> the last ``k`` feature maps; a name or names from ``feature_names``.
    feature_names : sequence of str
        The backbone's feature maps in network order, the last one being the
        input of the classifier.

    Returns
    -------
    tuple of str, in network order, without duplicates, so that equal
    selections give equal cache identities.
    """
    names = tuple(feature_names)
    if layers is None:
        return names[-1:]
    if isinstance(layers, bool) or not isinstance(layers, (int, str, Sequence)):
        raise TypeError(f"layers must be None, an int or feature-map names, got {layers!r}")
    if isinstance(layers, int):
        if not 1 <= layers <= len(names):
            raise ValueError(f"layers={layers} is out of range: this backbone has {len(names)} feature maps {names}")
        return names[-layers:]
    wanted = [layers] if isinstance(layers, str) else list(layers)
    if not wanted:
        raise ValueError("layers must name at least one feature map")
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise ValueError(f"unknown feature map(s) {unknown}; this backbone has {list(names)}")
    return tuple(n for n in names if n in set(wanted))


def state_dict_hash(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Short content hash of a state dict (names, dtypes, shapes and bytes).

    Identifies weights for the embedding cache whatever file or hub they came
    from; about 15 ms for EfficientNet-Lite0's 4.7 M parameters.
    """
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:16]


class Backbone(nn.Module, ABC):
    """A pretrained network that turns ``(N, 3, H, W)`` float batches into embeddings.

    Subclasses set ``name``, ``pretrained_cfg``, ``feature_names`` and
    ``feature_dims`` and implement ``_pooled_features`` and ``classify``.

    Attributes
    ----------
    name : str
        Registry name (``"efficientnet_lite0"``, ``"timm:resnet50"``).
    pretrained_cfg : PretrainedCfg
        Input convention of the weights.
    layers : tuple of str
        Feature maps whose global-average-pooled vectors are concatenated by
        ``forward_features``, in network order.
    weights_id : str
        Content hash of the weights as loaded (before any inference-time
        folding), used to key embedding caches.
    """

    name: str
    pretrained_cfg: PretrainedCfg
    feature_names: tuple[str, ...]
    feature_dims: dict[str, int]

    def __init__(self) -> None:
        super().__init__()
        self.layers: tuple[str, ...] = ()
        self.weights_id: str = "uninitialised"

    def set_layers(self, layers=None) -> None:
        """Choose the feature maps for ``forward_features`` (see ``resolve_layers``)."""
        self.layers = resolve_layers(layers, self.feature_names)

    @property
    def feature_dim(self) -> int:
        """Width ``D`` of ``forward_features`` output for the chosen ``layers``."""
        return sum(self.feature_dims[n] for n in self.layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled embedding.

        Parameters
        ----------
        x : Tensor (N, 3, H, W)
            Normalised as ``pretrained_cfg`` says.

        Returns
        -------
        Tensor (N, feature_dim): the global-average-pooled feature maps named in
        ``layers``, concatenated in network order.
        """
        pooled = self._pooled_features(x, self.layers)
        return pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as ``forward_features``: a backbone's job here is embedding."""
        return self.forward_features(x)

    @abstractmethod
    def _pooled_features(self, x: torch.Tensor, layers: tuple[str, ...]) -> list[torch.Tensor]:
        """One ``(N, C_i)`` pooled tensor per name in ``layers``, in that order."""

    @abstractmethod
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(N, num_classes)`` for a normalised batch ``(N, 3, H, W)``."""

    def classify_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` of the pooled ``head`` features ``(N, num_features)``
        (what :meth:`classify` computes after pooling)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its classifier")

    def prepare_for_inference(self) -> Backbone:
        """Switch to eval mode and apply exact inference-only rewrites (e.g. folding
        BatchNorm into convolutions).  Training afterwards is not supported."""
        return self.eval()
