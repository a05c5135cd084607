"""The serving interface: :func:`create_app` builds a FastAPI app for a saved model with
``POST /predict``, ``GET /model``, ``GET /health``, an upload page at ``/`` and
OpenAPI docs, configured by a :class:`ServeSettings`; ``pixsort serve MODEL`` runs it
with uvicorn.

Small parts, Starlette style: :mod:`~.app` (module-level endpoints reading
``request.app.state``, routes and middleware as data), :mod:`~.settings`,
:mod:`~.schemas`, :mod:`~.security` (the API key), :mod:`~.uploads` (size limits,
format sniffing, decoding), :mod:`~.batching` (micro-batches across requests),
:mod:`~.predictors` (model answers as JSON), :mod:`~.thumbnails`.
"""

from __future__ import annotations

from pixsort.base.lazy import lazy_exports

# FastAPI is an optional dependency (pixsort[serve]): imported only when asked for
__getattr__, __all__ = lazy_exports(__name__, {"create_app": "pixsort.serve.app",
                                               "ServeSettings": "pixsort.serve.settings"})  # fmt: skip
