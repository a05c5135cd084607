"""Name -> backbone factory registry, in the style of timm's ``create_model``.

Registered names carry a ``PretrainedCfg`` beside the factory, so the input
convention of a model is known without building it.  Names of the form
``timm:<model_name>`` are not registered: they are handed to timm when asked for.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..names import TIMM_PREFIX
from .base import Backbone, PretrainedCfg

__all__ = ["TIMM_PREFIX", "create_backbone", "get_pretrained_cfg", "list_backbones", "register_backbone"]


# factory(pretrained_cfg, pretrained, weights_path) -> Backbone with weights loaded
Factory = Callable[[PretrainedCfg, bool, "Path | None"], Backbone]


@dataclass(frozen=True)
class _Entry:
    factory: Factory
    pretrained_cfg: PretrainedCfg


_REGISTRY: dict[str, _Entry] = {}


def register_backbone(name: str, pretrained_cfg: PretrainedCfg) -> Callable[[Factory], Factory]:
    """Decorator registering ``factory`` under ``name`` with its pretrained config.

    The factory is called as ``factory(pretrained_cfg, pretrained, weights_path)``
    and returns a ``Backbone`` in training mode with its weights loaded.
    """
    if not isinstance(name, str) or not name or name.startswith(TIMM_PREFIX):
        raise ValueError(f"invalid backbone name {name!r} (the {TIMM_PREFIX!r} prefix is reserved)")
    if not isinstance(pretrained_cfg, PretrainedCfg):
        raise TypeError(f"pretrained_cfg must be a PretrainedCfg, got {type(pretrained_cfg).__name__}")

    def decorator(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = _Entry(factory, pretrained_cfg)
        return factory

    return decorator


def list_backbones() -> list[str]:
    """Registered backbone names, sorted.  Any ``timm:<model_name>`` works too
    where timm imports."""
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    if not isinstance(name, str):
        raise TypeError(f"backbone name must be a string, got {type(name).__name__}")
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown backbone {name!r}.{hint} Available: {', '.join(list_backbones())}, "
            f"or '{TIMM_PREFIX}<model_name>' for any timm model."
        ) from None


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    """The pretrained config of a registered backbone, without building it.

    ``timm:`` names need the model itself: use ``create_backbone(...).pretrained_cfg``.
    """
    return _entry(name).pretrained_cfg


def create_backbone(
    name: str,
    pretrained: bool = True,
    weights_path: str | os.PathLike | None = None,
    layers=None,
) -> Backbone:
    """Build a backbone by name.

    Parameters
    ----------
    name : str
        One of ``list_backbones()`` or ``"timm:<model_name>"``.
    pretrained : bool
        Load the pretrained weights (from an installed package or timm's hub
        cache).  ``False`` gives random weights, for tests and fine-tuning.
    weights_path : path, optional
        Local weights file (``.safetensors`` or a torch state dict) used instead
        of the default pretrained weights; implies ``pretrained``.
    layers : None, int, str or sequence of str
        Feature maps pooled by ``forward_features`` (see ``resolve_layers``).

    Returns
    -------
    Backbone in training mode; call ``.prepare_for_inference()`` (or ``.eval()``)
    before embedding.

    Raises
    ------
    ValueError for an unknown name; BackboneUnavailable when a needed package or
    weights file is missing or broken; FileNotFoundError for a missing
    ``weights_path``.
    """
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be a bool, got {pretrained!r}")
    path = None
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"weights_path does not exist or is not a file: {path}")
    if isinstance(name, str) and name.startswith(TIMM_PREFIX):
        from .timm_backbone import create_timm_backbone  # timm is optional; import only when asked

        backbone = create_timm_backbone(name[len(TIMM_PREFIX) :], pretrained, path)
    else:
        entry = _entry(name)
        backbone = entry.factory(entry.pretrained_cfg, pretrained, path)
    backbone.set_layers(layers)
    return backbone
