"""The JSON the app answers, as pydantic models: they feed the OpenAPI docs and keep
answers exact (``response_model`` drops anything not declared here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where in the request: e.g. ['path', 'index'].")
    msg: str


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable code, e.g. unsupported_media_type, too_many_pixels.")
    message: str = Field(description="What went wrong, for people.")
    filename: str | None = Field(None, description="The uploaded file this error is about.")
    detail: list[FieldError] | None = Field(None, description="For invalid_request: each invalid field.")


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
    runtime: Literal["torch", "onnx"] = "torch"


class Health(BaseModel):
    status: Literal["ok"]
    kind: str
    uptime_s: float


# -- error answers documented per route --------------------------------------------------

AUTH_ERRORS: dict = {
    401: {"model": ErrorBody, "description": "API key missing or wrong."},
}
UPLOAD_ERRORS: dict = {
    **AUTH_ERRORS,
    400: {"model": ErrorBody, "description": "Malformed multipart body or too many files."},
    413: {"model": ErrorBody, "description": "The request body is over the upload limit."},
    415: {"model": ErrorBody, "description": "A file is not an image in an accepted format (judged by content)."},
    422: {
        "model": ErrorBody,
        "description": "An image that cannot be used: empty, truncated, too many pixels "
        "(decompression bomb), too elongated; or no file sent.",
    },
}
# a path parameter that is not an integer: the app's invalid_request answer
INVALID_REQUEST: dict = {
    422: {"model": ErrorBody, "description": "A parameter of the wrong type (error: invalid_request)."},
}
THUMBNAIL_RESPONSES: dict = {
    **AUTH_ERRORS,
    **INVALID_REQUEST,
    200: {"content": {"image/jpeg": {}}},
    404: {"model": ErrorBody},
}
# the map page is HTML; its errors are JSON like every other (so the route is declared
# with a plain Response class and the page's media type here)
MAP_RESPONSES: dict = {
    **AUTH_ERRORS,
    200: {"content": {"text/html": {}}, "description": "The map page."},
    404: {"model": ErrorBody, "description": "The model is a classifier: no map."},
}


__all__ = [
    "AUTH_ERRORS",
    "INVALID_REQUEST",
    "MAP_RESPONSES",
    "THUMBNAIL_RESPONSES",
    "UPLOAD_ERRORS",
    "ClassifierResult",
    "ClustererResult",
    "ErrorBody",
    "FieldError",
    "Health",
    "ModelInfo",
    "Neighbor",
    "PredictResponse",
    "UploadInfo",
]
