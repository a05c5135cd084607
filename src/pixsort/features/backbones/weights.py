"""Reading weights files without unpickling code."""

from __future__ import annotations

from pathlib import Path

import torch

from .base import BackboneUnavailable

__all__ = ["load_state_dict"]


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a torch state dict (``torch.load``
    with ``weights_only=True``; a ``{"state_dict": ...}`` wrapper is unwrapped).

    Raises BackboneUnavailable, naming the file, when it cannot be read.
    """
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated or foreign file: say which and why
        raise BackboneUnavailable(f"could not read weights file {path}: {type(exc).__name__}: {exc}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneUnavailable(f"weights file {path} does not hold a state dict of tensors")
    return state
