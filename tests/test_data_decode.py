"""Decoding: every Pillow mode, orientation, resize policies, and every kind of bad file."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixsort.data import DecodeSettings, SkipImage, decode_array, decode_image
from pixsort.data.decode import to_channels

RGB64 = DecodeSettings(size=64, channels="RGB", resize="squash")
L64 = DecodeSettings(size=64, channels="L", resize="squash")


def _save(im: Image.Image, path: Path, **kw) -> Path:
    im.save(path, **kw)
    return path


def png_with_header_size(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` (no pixel data follows)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# -- modes ------------------------------------------------------------------------------


def test_rgba_alpha_is_composited_on_white(tmp_path):
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[..., 0] = 255  # red, fully transparent on the left half, opaque on the right
    arr[:, 4:, 3] = 255
    path = _save(Image.fromarray(arr, "RGBA"), tmp_path / "a.png")
    out, info = decode_image(path, DecodeSettings(size=8))
    assert info.mode == "RGBA"
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 7].tolist() == [255, 0, 0]


def test_la_and_pa_modes(tmp_path):
    la = Image.fromarray(np.stack([np.full((8, 8), 0, np.uint8), np.zeros((8, 8), np.uint8)], -1), "LA")
    out, _ = decode_image(_save(la, tmp_path / "la.png"), DecodeSettings(size=8, channels="L"))
    assert out.shape == (8, 8, 1) and out.min() == 255  # transparent black -> white
    # PA exists only in memory (no format writes it): map it directly
    pa = Image.new("PA", (8, 8))
    pa.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pa.putpixel((0, 0), (1, 255))  # opaque palette colour 1; the rest transparent
    rgb = np.asarray(to_channels(pa, "RGB"))
    assert rgb[0, 0].tolist() == [10, 20, 30] and rgb[5, 5].tolist() == [255, 255, 255]


def test_palette_transparency_honoured(tmp_path):
    im = Image.new("P", (8, 8), 1)
    im.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    im.info["transparency"] = 1
    path = tmp_path / "p.png"
    im.save(path, transparency=1)
    out, info = decode_image(path, DecodeSettings(size=8))
    assert info.mode == "P"
    assert out[0, 0].tolist() == [255, 255, 255]


def test_mode_1_and_gif_first_frame(tmp_path):
    bw = Image.new("1", (10, 10), 1)
    out, _ = decode_image(_save(bw, tmp_path / "bw.png"), DecodeSettings(size=10, channels="L"))
    assert out.min() == 255
    frames = [Image.new("L", (10, 10), v) for v in (30, 220)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    out, info = decode_image(gif, DecodeSettings(size=10, channels="L"))
    assert info.format == "GIF" and abs(int(out.mean()) - 30) <= 2


def test_16bit_png_scaled_by_full_range(tmp_path):
    arr = np.array([[0, 32768], [65535, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(arr), tmp_path / "deep.png")
    out, info = decode_image(path, DecodeSettings(size=(2, 2), channels="L"))
    assert info.mode.startswith("I")
    assert out[..., 0].tolist() == [[0, 128], [255, 255]]


def test_int32_and_float_tiff_scaled_not_clipped(tmp_path):
    ints = np.array([[-1000, 0], [1000, 3000]], dtype=np.int32)
    out, info = decode_image(
        _save(Image.fromarray(ints, "I"), tmp_path / "i.tif"), DecodeSettings(size=(2, 2), channels="L")
    )
    assert info.mode == "I"
    assert out[..., 0].tolist() == [[0, 64], [128, 255]]  # min->0, max->255, order kept
    floats = np.array([[0.0, 0.5], [0.25, 1.0]], dtype=np.float32)
    out, info = decode_image(
        _save(Image.fromarray(floats, "F"), tmp_path / "f.tif"), DecodeSettings(size=(2, 2), channels="L")
    )
    assert info.mode == "F"
    assert out[..., 0].tolist() == [[0, 128], [64, 255]]  # [0,1] floats keep their brightness
    wide = np.array([[-5.0, 5.0], [0.0, 15.0]], dtype=np.float32)
    out, _ = decode_image(
        _save(Image.fromarray(wide, "F"), tmp_path / "w.tif"), DecodeSettings(size=(2, 2), channels="L")
    )
    assert out[..., 0].tolist() == [[0, 128], [64, 255]]


def test_cmyk_jpeg_to_rgb(tmp_path):
    cyan = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    out, info = decode_image(_save(cyan, tmp_path / "c.jpg", quality=95), DecodeSettings(size=16))
    assert info.mode == "CMYK"
    r, g, b = out[8, 8].tolist()
    assert r < 40 and g > 200 and b > 200


def test_grey_to_rgb_and_rgb_to_grey(tmp_path):
    grey = Image.new("L", (12, 12), 77)
    out, _ = decode_image(_save(grey, tmp_path / "g.png"), DecodeSettings(size=12))
    assert out.shape == (12, 12, 3) and (out == 77).all()
    rgb = Image.new("RGB", (12, 12), (255, 0, 0))
    out, _ = decode_image(_save(rgb, tmp_path / "r.png"), DecodeSettings(size=12, channels="L"))
    assert out.shape == (12, 12, 1) and abs(int(out[0, 0, 0]) - 76) <= 1  # ITU-R 601 luma of red


@pytest.mark.parametrize("fmt,ext", [("BMP", "bmp"), ("TIFF", "tif"), ("WEBP", "webp"), ("PNG", "png")])
def test_other_formats_decode(tmp_path, fmt, ext):
    im = Image.new("RGB", (20, 10), (10, 200, 30))
    out, info = decode_image(
        _save(im, tmp_path / f"x.{ext}", format=fmt, **({"lossless": True} if fmt == "WEBP" else {})), RGB64
    )
    assert info.format == fmt and out.shape == (64, 64, 3)
    assert np.abs(out.astype(int) - [10, 200, 30]).max() <= 3


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((20, 40), np.uint8)
    arr[:, :20] = 255  # left half white, stored landscape
    im = Image.fromarray(arr, "L")
    exif = Image.Exif()
    exif[0x0112] = 6  # display = rotate 90 degrees clockwise: left half -> top half
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif.tobytes(), quality=95)
    out, info = decode_image(path, DecodeSettings(size=64, channels="L", resize="pad"))
    assert (info.width, info.height) == (40, 20)
    assert out[10, 32, 0] > 200 and out[54, 32, 0] < 50  # portrait, white on top
    assert out[32, 2, 0] == 0  # letterbox padding at the sides


# -- resize policies ---------------------------------------------------------------------


def test_resize_policies_on_wide_image():
    arr = np.zeros((50, 100), np.uint8)
    arr[:, 20:80] = 255  # a white centre band wider than the crop
    squash = decode_array(arr, DecodeSettings(size=20, channels="L", resize="squash"))
    pad = decode_array(arr, DecodeSettings(size=20, channels="L", resize="pad", pad_value=7))
    crop = decode_array(arr, DecodeSettings(size=20, channels="L", resize="crop"))
    assert squash.shape == pad.shape == crop.shape == (20, 20, 1)
    assert squash[10, 0, 0] == 0 and squash[10, 10, 0] == 255
    assert (pad[:5, :, 0] == 7).all() and (pad[15:, :, 0] == 7).all()  # letterbox rows
    assert (crop[:, :, 0] >= 250).all()  # the centre square fills the crop


def test_non_square_target_size():
    out = decode_array(np.zeros((30, 60, 3), np.uint8), DecodeSettings(size=(16, 24)))
    assert out.shape == (16, 24, 3)


def test_jpeg_draft_decode_matches_full_decode(tmp_path):
    yy, xx = np.mgrid[0:1600, 0:2000]
    arr = ((np.sin(xx / 90.0) + np.cos(yy / 70.0)) * 60 + 128).astype(np.uint8)
    path = _save(Image.fromarray(arr, "L"), tmp_path / "big.jpg", quality=90)
    fast, _ = decode_image(path, DecodeSettings(size=128, channels="L"))
    with Image.open(path) as im:
        naive = np.asarray(im.convert("L").resize((128, 128), Image.Resampling.BILINEAR))
    assert np.abs(fast[..., 0].astype(int) - naive.astype(int)).mean() < 2.0


# -- bad input ---------------------------------------------------------------------------


def _reason(source, settings=RGB64) -> str:
    with pytest.raises(SkipImage) as exc:
        decode_image(source, settings)
    return exc.value.reason


def test_bad_files_have_reasons(tmp_path):
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("this is not an image\n")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (tmp_path / "bomb.png").write_bytes(png_with_header_size(100_000, 100_000))
    _save(Image.new("L", (2000, 10)), tmp_path / "strip.png")

    assert _reason(tmp_path / "zero.jpg") == "empty"
    assert _reason(tmp_path / "text.jpg") == "not_an_image"
    assert _reason(tmp_path / "cut.jpg") == "truncated"
    assert _reason(tmp_path / "bomb.png") == "too_many_pixels"
    assert _reason(tmp_path / "strip.png") == "bad_aspect_ratio"
    assert _reason(tmp_path / "absent.jpg") == "missing"
    assert _reason(b"") == "empty"
    assert _reason(b"GIF89a-not-really") in ("not_an_image", "truncated")


def test_bomb_refused_before_decoding(tmp_path, monkeypatch):
    """The pixel limit is checked from the header: load() is never reached."""
    (tmp_path / "bomb.png").write_bytes(png_with_header_size(100_000, 100_000))
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("pixels decoded"))
    assert _reason(tmp_path / "bomb.png") == "too_many_pixels"


def test_unreadable_permissions(tmp_path, monkeypatch):
    path = _save(Image.new("L", (8, 8)), tmp_path / "locked.png")
    os.chmod(path, 0)
    try:
        if os.geteuid() == 0:  # root reads anything: make the OS answer as it would for a user
            real_open = Image.open

            def deny(fp, *a, **k):
                if str(fp) == str(path):
                    raise PermissionError(13, "Permission denied", str(path))
                return real_open(fp, *a, **k)

            monkeypatch.setattr(Image, "open", deny)
        assert _reason(path) == "unreadable"
    finally:
        os.chmod(path, 0o644)


def test_bad_arrays():
    with pytest.raises(SkipImage) as exc:
        decode_array(np.zeros((5, 5, 7)), RGB64)
    assert exc.value.reason == "bad_array"
    with pytest.raises(SkipImage):
        decode_array(np.full((4, 4), np.nan), RGB64)


def test_settings_validated_up_front():
    with pytest.raises(ValueError):
        DecodeSettings(size=0)
    with pytest.raises(ValueError):
        DecodeSettings(channels="CMYK")
    with pytest.raises(ValueError):
        DecodeSettings(resize="stretch")
    assert DecodeSettings(size=(10, 20)).key() != DecodeSettings(size=(20, 10)).key()


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\n0 0 moveto 16 16 lineto stroke\n%%EOF\n"


def test_formats_outside_the_allow_list_are_skipped_never_handed_to_their_plugin(tmp_path, monkeypatch):
    """An EPS named .jpg must not reach Ghostscript: it is skipped as unsupported_format."""
    from PIL import EpsImagePlugin

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: pytest.fail("Ghostscript ran"))
    (tmp_path / "x.jpg").write_bytes(EPS)
    _save(Image.new("RGB", (16, 16)), tmp_path / "y.png", format="ICO")  # ICO, named .png
    assert _reason(tmp_path / "x.jpg") == "unsupported_format"
    assert _reason(tmp_path / "y.png") == "unsupported_format"
    assert _reason(EPS) == "unsupported_format"
    with open(tmp_path / "x.jpg", "rb") as handle:
        assert _reason(handle) == "unsupported_format"


def test_the_server_uses_the_data_allow_list():
    from pixsort.data import formats
    from pixsort.serve import uploads

    assert uploads.ACCEPTED_FORMATS is formats.ACCEPTED_FORMATS
    assert uploads.sniff_format is formats.sniff_format
