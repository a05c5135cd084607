"""The HTTP app: ``POST /predict``, ``GET /model``, ``GET /health``, the upload page at
``/``, a clusterer's interactive map at ``/map`` (behind a key, a browser is sent the key
form of ``POST /key``) and OpenAPI docs at ``/docs``, for any model saved by pixsort.

Built from small parts, Starlette style: the endpoints and exception handlers are
module-level functions that read what they need from ``request.app.state``; the
routes (:data:`router`), the exception handlers (:data:`EXCEPTION_HANDLERS`) and the
middleware (:func:`middleware`) are declared as data, and :func:`create_app` only
loads the model (once), fills ``app.state`` and attaches them.

Uploads are limited in bytes while they stream in (413), sniffed by content and
decoded off the event loop with the model's own :class:`~pixsort.data.DecodeSettings`;
inference runs on a worker thread through a :class:`~pixsort.serve.batching.MicroBatcher`,
so concurrent requests share model calls and never run the model twice at once.

``app.state`` holds: ``settings`` (:class:`~pixsort.serve.settings.ServeSettings`),
``model``, ``model_name``, ``predictor``, ``batcher``, ``thumbnails`` (None for a
classifier), ``page`` (the upload page's HTML), ``map`` (a :class:`MapCache`, None for a
classifier) and ``started`` (monotonic seconds).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from contextlib import asynccontextmanager
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from pixsort import __version__
from pixsort.base.cells import utf8_text
from pixsort.data import DecodeSettings
from pixsort.serve.batching import MicroBatcher
from pixsort.serve.predictors import make_predictor
from pixsort.serve.schemas import (
    AUTH_ERRORS,
    MAP_RESPONSES,
    THUMBNAIL_RESPONSES,
    UPLOAD_ERRORS,
    Health,
    ModelInfo,
    PredictResponse,
)
from pixsort.serve.security import (
    API_KEY_HEADER,
    KEY_COOKIE,
    KEY_FORM_HEADERS,
    HostAllowList,
    key_form_page,
    key_matches,
    key_token,
    require_key,
    safe_next,
)
from pixsort.serve.settings import ServeSettings
from pixsort.serve.thumbnails import ThumbnailUnavailable, TrainingThumbnails
from pixsort.serve.timeouts import BodyReadTimeout
from pixsort.serve.uploads import BodySizeLimit, DecodedUpload, UploadRejected, decode_uploads, too_large_body
from pixsort.workflows import clusterer_map, load_model, load_onnx_classifier

_MAX_FILENAME = 255
_MAX_FORM_FIELDS = 16

# The page is static: it only talks to this origin and shows local blobs.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


# -- endpoints -----------------------------------------------------------------------------

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def upload_page(request: Request) -> HTMLResponse:
    return HTMLResponse(request.app.state.page, headers=PAGE_HEADERS)


@router.get("/health", response_model=Health, summary="Liveness: the model is loaded and the server answers.")
async def health(request: Request) -> dict:
    state = request.app.state
    return {"status": "ok", "kind": state.predictor.kind, "uptime_s": round(time.monotonic() - state.started, 3)}


@router.get(
    "/model",
    response_model=ModelInfo,
    responses=AUTH_ERRORS,
    dependencies=[Depends(require_key)],
    summary="What the model is: kind, classes or clusters, threshold, validation metrics.",
)
async def model_info(request: Request) -> dict:
    state = request.app.state
    settings: ServeSettings = state.settings
    return {
        **state.predictor.describe(),
        "name": state.model_name,
        "max_upload_bytes": settings.max_upload_bytes,
        "max_images_per_request": settings.max_images,
        "auth_required": settings.auth_required,
        "pixsort_version": __version__,
        "runtime": settings.runtime,
    }


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=UPLOAD_ERRORS,
    dependencies=[Depends(require_key)],
    summary="Classify or cluster one or more uploaded images.",
)
async def predict(
    request: Request,
    files: Annotated[list[UploadFile], File(description="One or more images (JPEG, PNG, GIF, BMP, TIFF, WEBP).")],
) -> dict:
    t0 = time.perf_counter()
    state = request.app.state
    if not files:
        raise UploadRejected(422, "no_files", "send one or more images as multipart form field 'files'")
    named = [((f.filename or f"file {i + 1}")[:_MAX_FILENAME], await f.read()) for i, f in enumerate(files)]
    uploads = await run_in_threadpool(_decode_all, named, state.predictor.decode_settings, state.settings)
    outputs = await state.batcher.submit(np.stack([u.image for u in uploads]))
    results = [
        {"filename": u.filename, "format": u.format, "width": u.width, "height": u.height, "bytes": u.n_bytes} | out
        for u, out in zip(uploads, outputs)
    ]
    return {
        "kind": state.predictor.kind,
        "results": results,
        "elapsed_ms": round((time.perf_counter() - t0) * 1000, 2),
    }


@router.get(
    "/thumbnails/{index}",
    responses=THUMBNAIL_RESPONSES,
    response_class=Response,
    dependencies=[Depends(require_key)],
    summary="A small JPEG of a clusterer's training image, by its index in the training set.",
)
async def thumbnail(request: Request, index: int) -> Response:
    thumbnails: TrainingThumbnails | None = request.app.state.thumbnails
    if thumbnails is None:
        raise HTTPException(404, "this model is a classifier: it has no training-image thumbnails")
    try:
        data = await run_in_threadpool(thumbnails.jpeg, index)
    except (IndexError, ThumbnailUnavailable) as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


class MapCache:
    """The clusterer's map page, built once on first request (a thumbnail per training
    image: the atlases cost one decode of every image, not paid at start-up)."""

    def __init__(self, model, thumbnails: TrainingThumbnails, title: str):
        self.model, self.thumbnails, self.title = model, thumbnails, title
        self._page = None
        self._lock = threading.Lock()

    def page(self):
        with self._lock:
            if self._page is None:
                self._page = self._build()
            return self._page

    def _build(self):
        return clusterer_map(
            self.model,
            self.thumbnails.pixels,
            title=self.title,
            links=[f"/thumbnails/{i}" for i in range(len(self.thumbnails))],
            atlas_url="/map/atlas/{i}.jpg",
            inline_atlas=False,
        )


@router.get(
    "/map",
    response_class=Response,
    responses=MAP_RESPONSES,
    dependencies=[Depends(require_key)],
    summary="A clusterer's interactive map: every training image at its 2-D position.",
)
async def map_page(request: Request) -> Response:
    cache: MapCache | None = request.app.state.map
    if cache is None:
        raise HTTPException(404, "this model is a classifier: it has no map of training images")
    page = await run_in_threadpool(cache.page)
    return HTMLResponse(page.html, headers=PAGE_HEADERS)


@router.get(
    "/map/atlas/{index}.jpg",
    responses=THUMBNAIL_RESPONSES,
    response_class=Response,
    dependencies=[Depends(require_key)],
    summary="Atlas image ``index`` of the map's thumbnails (JPEG).",
)
async def map_atlas(request: Request, index: int) -> Response:
    cache: MapCache | None = request.app.state.map
    if cache is None:
        raise HTTPException(404, "this model is a classifier: it has no map of training images")
    page = await run_in_threadpool(cache.page)
    if not 0 <= index < len(page.atlases):
        raise HTTPException(404, f"no atlas {index} (the map has {len(page.atlases)})")
    return Response(page.atlases[index], media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.post("/key", include_in_schema=False)
async def key_form(request: Request) -> Response:
    """The key typed into :func:`~pixsort.serve.security.key_form_page`: right, a 303 to
    the page asked for with the key cookie set; wrong, the form again (401)."""
    form = await request.form(max_files=0, max_fields=4, max_part_size=4096)
    key, next_path = form.get("key"), safe_next(form.get("next"))
    expected = request.app.state.settings.api_key
    if expected is None:
        return RedirectResponse(next_path, status_code=303)
    if not isinstance(key, str) or not key_matches(key, expected):
        return HTMLResponse(key_form_page(next_path, wrong=True), status_code=401, headers=KEY_FORM_HEADERS)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        KEY_COOKIE,
        key_token(expected),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


def _decode_all(named: list[tuple[str, bytes]], decode: DecodeSettings, settings: ServeSettings) -> list[DecodedUpload]:
    # uploads get the lower of the model's pixel limit and the server's
    decode = dataclasses.replace(decode, max_pixels=min(decode.max_pixels, settings.max_pixels))
    return decode_uploads(named, decode, settings.max_decoded_bytes)


# -- exception handlers ---------------------------------------------------------------------


async def upload_rejected(request: Request, exc: UploadRejected) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    if exc.status_code == 413:
        body = too_large_body(request.app.state.settings.max_upload_bytes)
        return JSONResponse(body, status_code=413, headers={"Connection": "close"})
    if exc.status_code == 401 and request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        # a browser following a link (the map, a thumbnail): it cannot send the header, so ask
        page = key_form_page(safe_next(request.url.path))
        return HTMLResponse(page, status_code=401, headers={**KEY_FORM_HEADERS, "WWW-Authenticate": API_KEY_HEADER})
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    headers = {"WWW-Authenticate": API_KEY_HEADER} if exc.status_code == 401 else getattr(exc, "headers", None)
    return JSONResponse({"error": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=headers)


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    missing_files = any(e.get("type") == "missing" and "files" in e.get("loc", ()) for e in errors)
    message = "send one or more images as multipart form field 'files'" if missing_files else "invalid request"
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in errors]
    return JSONResponse({"error": "invalid_request", "message": message, "detail": detail}, status_code=422)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    UploadRejected: upload_rejected,
    HTTPException: http_error,
    RequestValidationError: invalid_request,
}


# -- middleware and lifespan ---------------------------------------------------------------


def middleware(settings: ServeSettings) -> list[Middleware]:
    """The middleware stack for ``settings``, outermost first: the Host allow-list, the
    body-read deadline, the streaming body limit."""
    return [
        Middleware(HostAllowList, allowed_hosts=settings.allowed_hosts),
        Middleware(BodyReadTimeout, timeout_s=settings.request_timeout_s),
        Middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes),
    ]


@asynccontextmanager
async def lifespan(app: FastAPI):
    # one blank image through the model before the first request: lazy torch
    # initialisation is paid at start-up, not by the first user
    state = app.state
    await state.batcher.submit(np.zeros((1, *state.predictor.decode_settings.shape), dtype=np.uint8))
    yield
    await state.batcher.aclose()


# -- the app ---------------------------------------------------------------------------------


def _schema_builder(app: FastAPI, settings: ServeSettings):
    """``app.openapi`` that documents the API key only when the server has one: without a
    key no operation needs it and none answers 401, so neither is in the schema."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            if not settings.auth_required:
                schema.get("components", {}).pop("securitySchemes", None)
                for operations in schema.get("paths", {}).values():
                    for operation in operations.values():
                        operation.pop("security", None)
                        operation.get("responses", {}).pop("401", None)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def create_app(model_path: str | os.PathLike, settings: ServeSettings | None = None, **overrides: Any) -> FastAPI:
    """Build the serving app for the model saved at ``model_path`` (loaded here, once).

    Parameters
    ----------
    model_path : path
        A model folder written by ``pixsort train`` / ``pixsort cluster``.
    settings : ServeSettings, optional
        How to serve it (default: ``ServeSettings()``).
    **overrides
        Fields of :class:`~pixsort.serve.settings.ServeSettings` to change:
        ``max_upload_mb``, ``api_key``, ``max_images``, ``n_neighbors``, ``max_batch``,
        ``threads``, ``runtime``; checked like the settings themselves (ValueError).

    ``functools.partial(create_app, model_path, settings)`` pickles (module-level
    function, plain data), so it is the app factory each worker process calls.
    """
    if settings is None:
        settings = ServeSettings()
    elif not isinstance(settings, ServeSettings):
        raise TypeError(
            f"settings must be a ServeSettings, got {type(settings).__name__} (pass max_upload_mb=... by keyword)"
        )
    settings = settings.replace(**overrides)

    from pixsort.base.runtime import tune_cpu

    tune_cpu(settings.threads)
    folder = Path(model_path)
    if settings.runtime == "onnx":  # a classifier through ONNX Runtime (exported first if need be)
        model = load_onnx_classifier(folder, threads=settings.threads)
    else:
        model = load_model(folder)
    if settings.threads is not None:
        import torch  # tune_cpu may have run earlier in this process with another count

        torch.set_num_threads(settings.threads)
    predictor = make_predictor(model, n_neighbors=settings.n_neighbors)

    app = FastAPI(
        title="pixsort",
        summary=f"Serve a pixsort {predictor.kind}: upload images, get decisions.",
        version=__version__,
        lifespan=lifespan,
        middleware=middleware(settings),
        exception_handlers=EXCEPTION_HANDLERS,
        form_limits={"max_files": settings.max_images, "max_fields": _MAX_FORM_FIELDS},
    )
    app.include_router(router)
    app.openapi = _schema_builder(app, settings)

    state = app.state
    state.settings = settings
    state.model = model
    state.model_name = utf8_text(folder.resolve().name)
    state.predictor = predictor
    state.batcher = MicroBatcher(predictor, max_batch=settings.max_batch)
    state.thumbnails = (
        # relative training paths: from the folder the model was fitted in (recorded in
        # model.json), never from where the server happens to run; older models without
        # that record: from near the model, then the working directory
        TrainingThumbnails(
            predictor.train_paths,
            search_roots=[Path(predictor.train_paths_root)]
            if predictor.train_paths_root
            else [*list(folder.resolve().parents)[:2], Path.cwd()],
        )
        if predictor.kind == "clusterer"
        else None
    )
    state.map = MapCache(model, state.thumbnails, f"{state.model_name}: map") if predictor.kind == "clusterer" else None
    state.page = resources.files("pixsort.serve").joinpath("page.html").read_text(encoding="utf-8")
    state.started = time.monotonic()
    return app


__all__ = [
    "API_KEY_HEADER",
    "EXCEPTION_HANDLERS",
    "MapCache",
    "ServeSettings",
    "create_app",
    "lifespan",
    "middleware",
    "router",
]
