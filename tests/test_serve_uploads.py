"""Upload safety without a model: content sniffing, decoding refusals, the streaming byte limit."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from pixsort.data import DecodeSettings
from pixsort.serve.uploads import ACCEPTED_FORMATS, BodySizeLimit, UploadRejected, decode_upload, sniff_format

SETTINGS = DecodeSettings(size=32, channels="L")


def encoded(fmt: str, size=(40, 30), mode="RGB") -> bytes:
    rng = np.random.default_rng(0)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode=mode).save(buffer, format=fmt)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A valid-looking PNG header that claims ``width`` x ``height`` pixels (a bomb's header)."""
    real = encoded("PNG", size=(1, 1), mode="L")
    ihdr_data = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr_data
    ihdr = struct.pack(">I", len(ihdr_data)) + chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    return real[:8] + ihdr + real[8 + 25 :]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"])
def test_accepted_formats_are_sniffed_from_their_bytes(fmt):
    data = encoded(fmt)
    assert sniff_format(data[:16]) == fmt
    upload = decode_upload(data, "whatever.txt", SETTINGS)  # the name is never consulted
    assert upload.format == fmt
    assert (upload.width, upload.height) == (40, 30)
    assert upload.image.shape == SETTINGS.shape and upload.image.dtype == np.uint8
    assert fmt in ACCEPTED_FORMATS


@pytest.mark.parametrize(
    "payload",
    [
        b"%PDF-1.7\n1 0 obj << >> endobj",
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10",  # Pillow would hand EPS to Ghostscript
        b"<svg xmlns='http://www.w3.org/2000/svg'></svg>",
        b"GIF8",  # a signature cut short
        b"RIFF\x00\x00\x00\x00WAVEfmt ",  # RIFF but not WEBP
        bytes(range(256)),
    ],
)
def test_non_images_are_refused_as_unsupported_media_type_whatever_their_name(payload):
    assert sniff_format(payload[:16]) is None
    with pytest.raises(UploadRejected) as info:
        decode_upload(payload, "photo.jpg", SETTINGS)
    assert info.value.status == 415
    assert info.value.code == "unsupported_media_type"
    assert info.value.to_dict()["filename"] == "photo.jpg"


def test_empty_upload_is_refused():
    with pytest.raises(UploadRejected) as info:
        decode_upload(b"", "empty.png", SETTINGS)
    assert (info.value.status, info.value.code) == (422, "empty")


def test_decompression_bomb_header_is_refused_before_decoding():
    bomb = png_claiming(60_000, 60_000)  # 3.6 gigapixels claimed in a ~70-byte file
    assert len(bomb) < 200
    with pytest.raises(UploadRejected) as info:
        decode_upload(bomb, "bomb.png", SETTINGS)
    assert (info.value.status, info.value.code) == (422, "too_many_pixels")
    assert "decompression bomb" in info.value.message


def test_pixel_limit_follows_the_model_decode_settings():
    data = encoded("PNG", size=(200, 200))
    strict = DecodeSettings(size=32, channels="L", max_pixels=10_000)
    assert decode_upload(data, "ok.png", SETTINGS).width == 200
    with pytest.raises(UploadRejected) as info:
        decode_upload(data, "big.png", strict)
    assert info.value.code == "too_many_pixels"


def test_extreme_aspect_ratio_is_refused():
    with pytest.raises(UploadRejected) as info:
        decode_upload(encoded("PNG", size=(1000, 10)), "strip.png", SETTINGS)
    assert (info.value.status, info.value.code) == (422, "bad_aspect_ratio")


def test_truncated_image_is_refused():
    data = encoded("JPEG", size=(256, 256))
    with pytest.raises(UploadRejected) as info:
        decode_upload(data[: len(data) // 3], "cut.jpg", SETTINGS)
    assert (info.value.status, info.value.code) == (422, "truncated")


# -- the streaming byte limit ------------------------------------------------------------


def limited_app(max_bytes: int, seen: list) -> BodySizeLimit:
    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        seen.append(len(body))
        return JSONResponse({"received": len(body)})

    return BodySizeLimit(Starlette(routes=[Route("/", echo, methods=["GET", "POST"])]), max_bytes=max_bytes)


def test_body_under_the_limit_passes_through():
    seen: list = []
    with TestClient(limited_app(1000, seen)) as client:
        response = client.post("/", content=b"x" * 1000)
    assert response.status_code == 200 and response.json() == {"received": 1000}


def test_declared_length_over_the_limit_is_refused_before_the_app_reads_it():
    seen: list = []
    with TestClient(limited_app(1000, seen)) as client:
        response = client.post("/", content=b"x" * 1001)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert response.json()["limit_bytes"] == 1000
    assert seen == []  # the endpoint never ran


def test_chunked_body_is_cut_off_once_it_passes_the_limit():
    seen: list = []
    sent = []

    def chunks():
        for _ in range(100):
            sent.append(1)
            yield b"x" * 100

    with TestClient(limited_app(1000, seen)) as client:
        response = client.post("/", content=chunks())
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"
    assert seen == []
