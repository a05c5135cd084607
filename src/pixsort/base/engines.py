"""Where the embedding work runs: ``"local"`` (this process and its decoding workers, the
default) or ``"ray"`` (a Ray Data pipeline on a local or remote Ray cluster; the
``pixsort[ray]`` extra).  One vocabulary and one clear error for every command."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

ENGINES = ("local", "ray")
RAY_MISSING = "--engine ray needs Ray, which is not installed here: pip install 'pixsort[ray]'"


class EngineUnavailable(ImportError):
    """An engine was asked for whose package is not installed."""


def check_engine(engine: str, ray_address: str | None = None) -> str:
    """``engine`` when it is one of :data:`ENGINES` and installed (ValueError, or
    :class:`EngineUnavailable` for a Ray not installed: before any work); a
    ``ray_address`` needs the Ray engine."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if ray_address is not None and engine != "ray":
        raise ValueError("--ray-address is for --engine ray")
    if engine == "ray":
        import_ray()
    return engine


def import_ray():
    """The ``ray`` module with Ray Data, or :class:`EngineUnavailable` saying how to install it."""
    try:
        import ray
        import ray.data  # the extra is ray[data]: a bare ray lacks pyarrow
    except ImportError:
        raise EngineUnavailable(RAY_MISSING) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, *, progress: bool = False) -> Iterator[object]:
    """A connected Ray for the ``with`` block: the one already initialised in this
    process, else ``ray.init(address)`` (``None``: ``$RAY_ADDRESS`` or a new local Ray),
    shut down again on leaving.  Ray Data keeps the order of its input (the results
    line up with the items) and shows progress bars only with ``progress``."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    saved = context.execution_options.preserve_order, context.enable_progress_bars
    context.execution_options.preserve_order = True
    context.enable_progress_bars = bool(progress)
    try:
        yield ray
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        if started:
            ray.shutdown()


__all__ = ["ENGINES", "RAY_MISSING", "EngineUnavailable", "check_engine", "import_ray", "ray_session"]
