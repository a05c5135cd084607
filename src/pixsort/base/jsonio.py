"""One JSON encoding for model files, metrics and API answers."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np


def json_default(value):
    """``json.dumps(default=...)``: numpy scalars and arrays, and paths.  Tuples need
    nothing: json writes them as lists."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any, indent: int | None = 1) -> str:
    """``json.dumps`` with :func:`json_default` (NaN stays NaN, as Python's json writes it)."""
    return json.dumps(value, indent=indent, default=json_default)


def jsonable(value: Any, *, finite: bool = False) -> Any:
    """``value`` as plain JSON types: numpy made plain, tuples lists, paths strings.

    ``finite=True`` also turns NaN and infinities into ``None`` (strict JSON, for
    HTTP answers); anything else unknown becomes its ``str``.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v, finite=finite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, finite=finite) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), finite=finite)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if not finite or math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


__all__ = ["dumps", "json_default", "jsonable"]
