"""Package attributes imported on first use (PEP 562), so that importing a package
does not import torch, sklearn or FastAPI until a name that needs them is asked for."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], object], list[str]]:
    """``(__getattr__, __all__)`` for ``package``: ``names`` maps each public name to the
    module that defines it.

    >>> __getattr__, __all__ = lazy_exports(__name__, {"ImageClusterer": "pixsort.cluster.images"})
    """

    def __getattr__(name: str):
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, list(names)


__all__ = ["lazy_exports"]
