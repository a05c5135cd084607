"""Safe handling of uploaded images: content sniffing by magic bytes, then decoding
through :func:`pixsort.data.decode_image` (which refuses decompression bombs, extreme
aspect ratios and non-images from the header, before any pixel is decoded).

The byte limit is enforced while the body streams in, by :class:`BodySizeLimit`: a
declared ``Content-Length`` over the limit is refused before the body is read, and a
chunked body is cut off as soon as it passes the limit.  (Starlette's own limiter
answers in plain text; this one answers the same JSON as every other refusal.)

Every refusal is an :class:`UploadRejected` carrying the HTTP status, a short
machine-readable code and a sentence for people; the app turns it into JSON.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image
from starlette.exceptions import HTTPException

from pixsort.data import DecodeSettings, SkipImage, decode_image
from pixsort.data.formats import ACCEPTED_FORMATS, sniff_format  # the one allow-list, by first bytes
from pixsort.serve.guards import call_guarded, send_json_and_close

MB = 1024 * 1024

# SkipImage reason -> HTTP status: not an image at all is 415, an image we will not
# decode (bomb, truncated, too elongated, empty) is 422.
_STATUS_FOR_REASON = {
    "not_an_image": 415,
    "unsupported_format": 415,
    "empty": 422,
    "truncated": 422,
    "too_many_pixels": 422,
    "bad_aspect_ratio": 422,
    "unreadable": 422,
}


class UploadRejected(Exception):
    """An upload refused with ``status`` (4xx), a ``code`` and a human ``message``."""

    def __init__(self, status: int, code: str, message: str, filename: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.filename = filename

    def to_dict(self) -> dict:
        body = {"error": self.code, "message": self.message}
        if self.filename is not None:
            body["filename"] = self.filename
        return body


@dataclass(frozen=True)
class DecodedUpload:
    """One accepted upload: the model-ready array and what the header said."""

    filename: str
    format: str
    width: int
    height: int
    n_bytes: int
    image: np.ndarray  # (H, W, C) uint8, shaped by the model's DecodeSettings


def decode_upload(data: bytes, filename: str, settings: DecodeSettings) -> DecodedUpload:
    """Sniff and decode one uploaded file for a model, or raise :class:`UploadRejected`.

    The file name and the client's Content-Type are never consulted: only the bytes.
    """
    if not data:
        raise UploadRejected(422, "empty", "the file is empty (0 bytes)", filename)
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise UploadRejected(
            415,
            "unsupported_media_type",
            f"not an image in an accepted format ({', '.join(ACCEPTED_FORMATS)}), judged by its content",
            filename,
        )
    try:
        array, info = decode_image(data, settings)
    except SkipImage as exc:
        status = _STATUS_FOR_REASON.get(exc.reason, 422)
        raise UploadRejected(status, exc.reason, exc.detail or exc.reason, filename) from None
    return DecodedUpload(filename, fmt, info.width, info.height, len(data), array)


# bytes a decode holds per pixel, by mode: Pillow's own storage (RGB and friends as 4
# bytes), and for 32-bit and 16-bit modes what the conversion to uint8 adds (numpy
# float64 copies: measured ~40 bytes a pixel for a float32 TIFF, 1.96 GB for 6300x6300)
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "I;16": 24, "I;16L": 24, "I;16B": 24,
                    "I;16N": 24, "I": 40, "F": 40, "RGB": 4, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4,
                    "YCbCr": 4, "LAB": 4, "HSV": 4}  # fmt: skip

# Decoding is memory- and CPU-bound: at most this many uploads decode at once in a
# process, whatever the number of concurrent requests.
DECODE_SLOTS = max(1, min(4, (os.cpu_count() or 1)))
_decode_slots = threading.BoundedSemaphore(DECODE_SLOTS)


def decoded_bytes(data: bytes, max_pixels: int | None = None) -> int:
    """What decoding ``data`` will hold in memory, from its header only (width x height x
    bytes per pixel of its mode, float and 16-bit modes counted as such); 0 when the
    header cannot be read or is not an accepted format (decoding then refuses it with
    its own reason; Pillow never sees a format that was not sniffed)."""
    if sniff_format(data[:16]) is None:
        return 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if max_pixels is not None and w * h > max_pixels:
                    return 0
                per_pixel = _BYTES_PER_PIXEL.get(im.mode, 4 * max(1, len(im.getbands())))
    except Exception:  # unreadable headers are decode_upload's to explain
        return 0
    return int(w) * int(h) * per_pixel


def check_decode_budget(named: list[tuple[str, bytes]], budget_bytes: int, max_pixels: int | None = None) -> list[int]:
    """The decoded size of each upload, from the headers; raises :class:`UploadRejected`
    (413 ``decode_budget_exceeded``) when together they pass ``budget_bytes``, before
    any pixel is decoded.  An image over ``max_pixels`` is not counted: decoding refuses
    it on its own (422 ``too_many_pixels``, naming it)."""
    sizes = [decoded_bytes(data, max_pixels) for _, data in named]
    total = sum(sizes)
    if total > budget_bytes:
        raise UploadRejected(
            413,
            "decode_budget_exceeded",
            f"decoding these {len(named)} image(s) would take {_human_size(total)} of memory, over the "
            f"per-request limit of {_human_size(budget_bytes)}: send smaller images or fewer per request",
        )
    return sizes


def decode_uploads(named: list[tuple[str, bytes]], settings: DecodeSettings, budget_bytes: int) -> list[DecodedUpload]:
    """Check the request's decode budget, then decode each upload, at most
    :data:`DECODE_SLOTS` at once in this process."""
    check_decode_budget(named, budget_bytes, settings.max_pixels)
    out = []
    for name, data in named:
        with _decode_slots:
            out.append(decode_upload(data, name, settings))
    return out


class RequestTooLarge(HTTPException):
    """Raised from inside ``receive`` when the body passes the limit.

    An HTTPException, so FastAPI's body parsing lets it through unchanged (it turns
    other errors met while parsing into a generic 400).
    """

    def __init__(self, max_bytes: int):
        super().__init__(413, f"the upload is larger than the limit of {_human_size(max_bytes)}")
        self.max_bytes = max_bytes


class BodySizeLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with a JSON 413.

    A declared ``Content-Length`` over the limit is answered before a byte of the body
    is read; a body without one (chunked) is counted as it arrives and cut off at the
    limit, so an oversized upload never reaches the multipart parser whole.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _send_413(send, self.max_bytes)
            return

        received = 0
        exceeded = False

        async def limited_receive():
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise RequestTooLarge(self.max_bytes)
            return message

        # whatever the app answers once the limit was hit (its own 413, or a 400 from a
        # parser that swallowed the error) is replaced by the JSON 413
        await call_guarded(self.app, scope, limited_receive, send, tripped=lambda: exceeded,
                           answer=lambda s: _send_413(s, self.max_bytes), error=RequestTooLarge)  # fmt: skip


def too_large_body(max_bytes: int) -> dict:
    """The JSON answered with 413 when a request body passes the byte limit."""
    return {
        "error": "payload_too_large",
        "message": f"the upload is larger than the limit of {_human_size(max_bytes)}",
        "limit_bytes": max_bytes,
    }


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send, max_bytes: int) -> None:
    await send_json_and_close(send, 413, too_large_body(max_bytes))


def _human_size(n: int) -> str:
    return f"{n / MB:g} MB" if n >= MB else f"{n:,} bytes"


__all__ = [
    "ACCEPTED_FORMATS",
    "BodySizeLimit",
    "DecodedUpload",
    "RequestTooLarge",
    "UploadRejected",
    "DECODE_SLOTS",
    "check_decode_budget",
    "decode_upload",
    "decode_uploads",
    "decoded_bytes",
    "sniff_format",
    "too_large_body",
]
