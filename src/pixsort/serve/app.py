"""The HTTP app: ``POST /predict``, ``GET /model``, ``GET /health``, the upload page at
``/`` and OpenAPI docs at ``/docs``, for any model saved by pixsort.

The model is loaded once, when the app is created.  Uploads are limited in bytes while
they stream in (413), sniffed by content and decoded off the event loop with the
model's own :class:`~pixsort.data.DecodeSettings`; inference runs on a worker thread
through a :class:`~pixsort.serve.batching.MicroBatcher`, so concurrent requests share
model calls and never run the model twice at once.
"""


import os
import secrets
import time
from contextlib import asynccontextmanager
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import Depends, FastAPI, File, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from pixsort import __version__
from pixsort.models import load_model, read_model_json
from pixsort.serve.batching import MicroBatcher
from pixsort.serve.predictors import make_predictor
from pixsort.serve.thumbnails import ThumbnailUnavailable, TrainingThumbnails
from pixsort.serve.uploads import MB, BodySizeLimit, UploadRejected, decode_upload, too_large_body

API_KEY_HEADER = "X-API-Key"
_MAX_FILENAME = 255

# The page is static: it only talks to this origin and shows local blobs.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


# -- response schemas (for the OpenAPI docs and to keep answers exact) -----------------


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable code, e.g. unsupported_media_type, too_many_pixels.")
    message: str = Field(description="What went wrong, for people.")
    filename: str | None = Field(None, description="The uploaded file this error is about.")


class UploadInfo(BaseModel):
    filename: str
    format: str = Field(description="Format sniffed from the content (JPEG, PNG, ...).")
    width: int
    height: int
    bytes: int


class ClassifierResult(UploadInfo):
    probabilities: dict[str, float | None] = Field(description="Probability per class.")
    decision: str = Field(description="The decided class, at the model's threshold for a binary model.")
    decision_index: int
    threshold: float | None = Field(description="Probability of the positive class at which it is decided.")
    positive_class: str | None = None
    score: float | None = Field(None, description="Probability of the positive class (binary models).")


class Neighbor(BaseModel):
    index: int = Field(description="Position in the training set; GET thumbnail_url to see it.")
    name: str
    distance: float | None
    thumbnail_url: str


class ClustererResult(UploadInfo):
    cluster: int
    cluster_name: str | None
    distance: float | None = Field(description="Distance to the centre of its cluster.")
    neighbors: list[Neighbor] = Field(description="Nearest training images, closest first.")


class PredictResponse(BaseModel):
    kind: Literal["classifier", "clusterer"]
    results: list[ClassifierResult] | list[ClustererResult]
    elapsed_ms: float = Field(description="Server time for this request: decoding, queueing and inference.")


class ModelInfo(BaseModel):
    kind: Literal["classifier", "clusterer"]
    name: str
    classes: list[str] | None = None
    threshold: float | None = None
    positive_class: str | None = None
    n_clusters: int | None = None
    cluster_names: list[str] | None = None
    cluster_sizes: list[int] | None = None
    n_train: int | None = None
    n_neighbors: int | None = None
    validation_metrics: dict
    decode: dict
    max_upload_bytes: int
    max_images_per_request: int
    auth_required: bool
    pixsort_version: str


class Health(BaseModel):
    status: Literal["ok"]
    kind: str
    uptime_s: float


# -- the app ---------------------------------------------------------------------------


def create_app(
    model_path: str | os.PathLike,
    max_upload_mb: float = 20,
    api_key: str | None = None,
    *,
    max_images: int = 64,
    n_neighbors: int = 5,
    max_batch: int = 32,
    threads: int | None = None,
) -> FastAPI:
    """Build the serving app for the model saved at ``model_path`` (loaded here, once).

    Parameters
    ----------
    model_path : path
        A model folder written by ``pixsort train`` / ``pixsort cluster``.
    max_upload_mb : float
        Largest request body accepted, all images of a request together; larger ones
        are answered 413 while they stream in.
    api_key : str or None
        When set, ``/predict``, ``/model`` and ``/thumbnails`` need it in the
        ``X-API-Key`` header; ``/``, ``/health`` and the docs stay open.
    max_images : int
        Most images in one request.
    n_neighbors : int
        Nearest training images returned per upload by a clusterer.
    max_batch : int
        Most images stacked into one model call across concurrent requests.
    threads : int, optional
        torch threads for inference (default: every available core).  Fewer leaves
        cores to HTTP parsing and decoding, and is a must with several workers.
    """
    if max_upload_mb <= 0:
        raise ValueError(f"max_upload_mb must be > 0, got {max_upload_mb}")
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    if api_key is not None and not api_key.strip():
        raise ValueError("api_key must not be empty (pass None for no key)")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")

    from pixsort.runtime import tune_cpu

    tune_cpu(threads)
    folder = Path(model_path)
    meta = read_model_json(folder)
    model = load_model(folder)
    if threads is not None:
        import torch  # tune_cpu may have run earlier in this process with another count

        torch.set_num_threads(threads)
    predictor = make_predictor(model, kind=meta["kind"], n_neighbors=n_neighbors)
    settings = predictor.decode_settings
    batcher = MicroBatcher(predictor, max_batch=max_batch)
    thumbnails = (
        # relative training paths: from where the server runs, or from near the model
        TrainingThumbnails(predictor.train_paths, search_roots=list(folder.resolve().parents)[:2])
        if predictor.kind == "clusterer"
        else None
    )
    max_bytes = int(max_upload_mb * MB)
    started = time.monotonic()
    page = resources.files("pixsort.serve").joinpath("page.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # one blank image through the model before the first request: lazy torch
        # initialisation is paid at start-up, not by the first user
        await batcher.submit(np.zeros((1, *settings.shape), dtype=np.uint8))
        yield
        await batcher.aclose()

    app = FastAPI(
        title="pixsort",
        summary=f"Serve a pixsort {predictor.kind}: upload images, get decisions.",
        version=__version__,
        lifespan=lifespan,
        form_limits={"max_files": max_images, "max_fields": 16},
    )
    app.add_middleware(BodySizeLimit, max_bytes=max_bytes)
    app.state.model = model
    app.state.predictor = predictor
    app.state.batcher = batcher

    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="Needed when the server has a key.")

    def require_key(given: Annotated[str | None, Depends(key_header)]) -> None:
        if api_key is None:
            return
        if given is None or not secrets.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, f"missing or wrong API key (send it in the {API_KEY_HEADER} header)")

    error_responses = {
        401: {"model": ErrorBody, "description": "API key missing or wrong."},
    }
    upload_errors = {
        **error_responses,
        400: {"model": ErrorBody, "description": "Malformed multipart body or too many files."},
        413: {"model": ErrorBody, "description": "The request body is over the upload limit."},
        415: {"model": ErrorBody, "description": "A file is not an image in an accepted format (judged by content)."},
        422: {"model": ErrorBody, "description": "An image that cannot be used: empty, truncated, too many pixels "
              "(decompression bomb), too elongated; or no file sent."},
    }

    @app.exception_handler(UploadRejected)
    async def _rejected(request: Request, exc: UploadRejected) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 413:
            return JSONResponse(too_large_body(max_bytes), status_code=413, headers={"Connection": "close"})
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        headers = {"WWW-Authenticate": API_KEY_HEADER} if exc.status_code == 401 else getattr(exc, "headers", None)
        return JSONResponse({"error": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        missing_files = any(e.get("type") == "missing" and "files" in e.get("loc", ()) for e in errors)
        message = "send one or more images as multipart form field 'files'" if missing_files else "invalid request"
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in errors]
        return JSONResponse({"error": "invalid_request", "message": message, "detail": detail}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def upload_page() -> HTMLResponse:
        return HTMLResponse(page, headers=_PAGE_HEADERS)

    @app.get("/health", response_model=Health, summary="Liveness: the model is loaded and the server answers.")
    async def health() -> dict:
        return {"status": "ok", "kind": predictor.kind, "uptime_s": round(time.monotonic() - started, 3)}

    @app.get(
        "/model",
        response_model=ModelInfo,
        responses=error_responses,
        dependencies=[Depends(require_key)],
        summary="What the model is: kind, classes or clusters, threshold, validation metrics.",
    )
    async def model_info() -> dict:
        return {
            **predictor.describe(),
            "name": folder.resolve().name,
            "max_upload_bytes": max_bytes,
            "max_images_per_request": max_images,
            "auth_required": api_key is not None,
            "pixsort_version": __version__,
        }

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=upload_errors,
        dependencies=[Depends(require_key)],
        summary="Classify or cluster one or more uploaded images.",
    )
    async def predict(
        files: Annotated[list[UploadFile], File(description="One or more images (JPEG, PNG, GIF, BMP, TIFF, WEBP).")],
    ) -> dict:
        t0 = time.perf_counter()
        if not files:
            raise UploadRejected(422, "no_files", "send one or more images as multipart form field 'files'")
        named = [((f.filename or f"file {i + 1}")[:_MAX_FILENAME], await f.read()) for i, f in enumerate(files)]
        uploads = await run_in_threadpool(lambda: [decode_upload(data, name, settings) for name, data in named])
        outputs = await batcher.submit(np.stack([u.image for u in uploads]))
        results = [
            {"filename": u.filename, "format": u.format, "width": u.width, "height": u.height, "bytes": u.n_bytes}
            | out
            for u, out in zip(uploads, outputs)
        ]
        return {"kind": predictor.kind, "results": results, "elapsed_ms": round((time.perf_counter() - t0) * 1000, 2)}

    @app.get(
        "/thumbnails/{index}",
        responses={**error_responses, 200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorBody}},
        response_class=Response,
        dependencies=[Depends(require_key)],
        summary="A small JPEG of a clusterer's training image, by its index in the training set.",
    )
    async def thumbnail(index: int) -> Response:
        if thumbnails is None:
            raise HTTPException(404, "this model is a classifier: it has no training-image thumbnails")
        try:
            data = await run_in_threadpool(thumbnails.jpeg, index)
        except IndexError as exc:
            raise HTTPException(404, str(exc)) from None
        except ThumbnailUnavailable as exc:
            raise HTTPException(404, str(exc)) from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    return app


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory pixsort.serve.app:app_from_env`` (several workers).

    Reads ``PIXSORT_MODEL`` (required), ``PIXSORT_MAX_UPLOAD_MB``, ``PIXSORT_API_KEY``,
    ``PIXSORT_MAX_BATCH`` and ``PIXSORT_THREADS``.
    """
    model = os.environ.get("PIXSORT_MODEL")
    if not model:
        raise RuntimeError("set PIXSORT_MODEL to a saved model folder")
    return create_app(
        model,
        max_upload_mb=float(os.environ.get("PIXSORT_MAX_UPLOAD_MB", "20")),
        api_key=os.environ.get("PIXSORT_API_KEY") or None,
        max_batch=int(os.environ.get("PIXSORT_MAX_BATCH", "32")),
        threads=int(os.environ["PIXSORT_THREADS"]) if os.environ.get("PIXSORT_THREADS") else None,
    )


__all__ = ["API_KEY_HEADER", "app_from_env", "create_app"]
