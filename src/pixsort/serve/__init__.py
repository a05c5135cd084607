"""HTTP serving of saved pixsort models: :func:`create_app` builds a FastAPI app with
``POST /predict``, ``GET /model``, ``GET /health``, an upload page at ``/`` and
OpenAPI docs, configured by a :class:`ServeSettings`; ``pixsort serve MODEL`` runs it
with uvicorn."""

from __future__ import annotations

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str):
    # FastAPI is an optional dependency (pixsort[serve]): import it only when asked
    if name == "create_app":
        from pixsort.serve.app import create_app

        return create_app
    if name == "ServeSettings":
        from pixsort.serve.settings import ServeSettings

        return ServeSettings
    raise AttributeError(f"module 'pixsort.serve' has no attribute {name!r}")
