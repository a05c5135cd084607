"""Decode one image (file, bytes or array) to a fixed-size uint8 array, or say why not.

JPEG, PNG, GIF, BMP, TIFF and WebP are decoded (:mod:`pixsort.data.formats`, the one
allow-list); other formats Pillow knows (EPS, ...) are skipped as ``unsupported_format``.
The decode is shaped for speed and safety:

* JPEGs are decoded with ``Image.draft`` at the smallest DCT scale that is still not
  below what the resize needs (up to 8x fewer pixels to decode for large X-rays);
* the header is checked against a pixel limit and an aspect-ratio limit *before* any
  pixel is decoded, so decompression bombs cost nothing;
* every mode maps to RGB or L: alpha is composited on white, palette transparency is
  honoured, 16-bit integers are scaled by the full range and 32-bit int/float by the
  image's own range (never clipped);
* EXIF orientation is applied.

Failures raise :class:`SkipImage` with a short machine-readable ``reason`` code and a
human-readable detail; the loader turns them into manifest rows.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from dataclasses import asdict, dataclass
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pixsort.data.formats import ACCEPTED_FORMATS

ResizePolicy = Literal["squash", "pad", "crop"]
Channels = Literal["RGB", "L"]
ImageSource = str | os.PathLike | bytes | BinaryIO

RESIZE_POLICIES = ("squash", "pad", "crop")
CHANNELS = ("RGB", "L")

# Pillow refuses > 2x its MAX_IMAGE_PIXELS itself; we check our own (lower, configurable)
# limit from the header, so raise Pillow's out of the way and silence its warning.
Image.MAX_IMAGE_PIXELS = None

_ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}  # rotations by 90/270: width and height swap


class SkipImage(Exception):
    """An input that cannot be used, with a reason code for the manifest.

    Reason codes: ``missing``, ``empty``, ``unreadable``, ``not_a_regular_file`` (a FIFO,
    socket, device or folder), ``symlink_loop``, ``not_an_image``,
    ``truncated``, ``too_many_pixels``, ``bad_aspect_ratio``, ``bad_array``,
    ``unsupported_format`` (an image format outside :data:`ACCEPTED_FORMATS`).
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodeSettings:
    """How images are decoded and resized; part of the cache key.

    Parameters
    ----------
    size : int or (height, width)
        Output size. An int means a square.
    channels : "RGB" or "L"
        Output channels: 3 or 1.
    resize : "squash" | "pad" | "crop"
        ``squash`` stretches to the size (what most CNN recipes do), ``pad``
        letterboxes (keeps aspect ratio, pads with ``pad_value``), ``crop`` scales
        the short side and takes the centre.
    max_pixels : int
        Images whose header claims more pixels are refused (decompression bombs).
    max_aspect : float
        Images more elongated than this (long/short side) are refused.
    """

    size: int | tuple[int, int] = 128
    channels: Channels = "RGB"
    resize: ResizePolicy = "squash"
    max_pixels: int = 64_000_000
    max_aspect: float = 20.0
    pad_value: int = 0

    def __post_init__(self) -> None:
        h, w = self.hw
        if h < 1 or w < 1 or h > 4096 or w > 4096:
            raise ValueError(f"size must be between 1 and 4096 pixels, got {self.size!r}")
        if self.channels not in CHANNELS:
            raise ValueError(f"channels must be one of {CHANNELS}, got {self.channels!r}")
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {self.resize!r}")
        if self.max_pixels < 1 or self.max_aspect < 1:
            raise ValueError("max_pixels must be >= 1 and max_aspect >= 1")

    @property
    def hw(self) -> tuple[int, int]:
        if isinstance(self.size, int):
            return (self.size, self.size)
        h, w = self.size
        return (int(h), int(w))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of one decoded image: (H, W, C)."""
        return (*self.hw, 3 if self.channels == "RGB" else 1)

    def key(self) -> str:
        """A short stable string identifying these settings (cache folder name)."""
        h, w = self.hw
        return f"{h}x{w}-{self.channels}-{self.resize}-p{self.pad_value}-m{self.max_pixels}-a{self.max_aspect:g}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.hw)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DecodeSettings:
        """The settings :meth:`to_dict` wrote (a JSON list size becomes a tuple)."""
        d = dict(d)
        if isinstance(d.get("size"), list):
            d["size"] = tuple(int(s) for s in d["size"])
        return cls(**d)


@dataclass(frozen=True)
class ImageInfo:
    """What the header said about the source image (for the manifest)."""

    width: int
    height: int
    mode: str
    format: str


def decode_image(
    source: ImageSource, settings: DecodeSettings, *, keep_small: bool = False
) -> tuple[np.ndarray, ImageInfo]:
    """Decode ``source`` to an array of ``settings.shape`` (H, W, C) uint8.

    ``keep_small``: an image no larger than the target in both sides is returned at
    its own size (channels converted); :func:`fit_to_settings` later gives exactly
    the array this function would have returned.  The cache stores such images
    small (a 32 px picture decoded for a 240 px network is 56x fewer bytes).

    Raises :class:`SkipImage` for anything that cannot be used.
    """
    with _open(source) as im:
        info = ImageInfo(im.width, im.height, im.mode, im.format or "")
        _check_header(im, settings)
        orientation = _orientation(im)
        if im.format == "JPEG":
            im.draft(_draft_mode(im.mode, settings.channels), _needed_size(im.size, orientation, settings))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow's noisy EXIF/palette warnings
                im.load()
        except (OSError, SyntaxError, ValueError) as exc:
            _raise_if_io_error(exc)
            raise SkipImage("truncated", f"decoding failed: {exc}") from None
        if orientation in range(2, 9):
            im = ImageOps.exif_transpose(im)
        im = to_channels(im, settings.channels)
        out = _small_or_resized(im, settings, keep_small)
    return out, info


def read_header(source: ImageSource, settings: DecodeSettings) -> ImageInfo:
    """What :func:`decode_image` reports of ``source`` from its header alone, with the same
    checks of the header (:class:`SkipImage`); no pixel is decoded."""
    with _open(source) as im:
        info = ImageInfo(im.width, im.height, im.mode, im.format or "")
        _check_header(im, settings)
    return info


def decode_array(array: np.ndarray, settings: DecodeSettings, *, keep_small: bool = False) -> np.ndarray:
    """Convert one image held in an array ((H, W), (H, W, C) or (C, H, W)) the same way
    (``keep_small`` as for :func:`decode_image`)."""
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channels-first arrays (torch layout)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise SkipImage("bad_array", f"cannot read an image from an array of shape {arr.shape}")
    if arr.size == 0:
        raise SkipImage("empty", "array has no pixels")
    arr = _to_uint8(arr)
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[arr.ndim if arr.ndim == 2 else arr.shape[-1]]
    im = Image.fromarray(arr, mode=mode)
    return _small_or_resized(to_channels(im, settings.channels), settings, keep_small)


def fit_to_settings(stored: np.ndarray, settings: DecodeSettings) -> np.ndarray:
    """An image kept at its own size by ``keep_small`` decoding, resized to
    ``settings.shape`` exactly as the decoder would have (already that shape: as is)."""
    if stored.shape == settings.shape:
        return stored
    return _resize_array(stored if stored.ndim == 3 else stored[..., None], settings)


def enlarge(images: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """The decoder's enlarging resize of a uint8 batch ``(n, h, w, c)`` to ``hw``, no side
    shrinking: torch's uint8 bilinear kernel, 10x faster than Pillow's per image.

    ``pixsort.features.preprocess.to_float_batch`` resizes with this same call, so a
    network fed native-size rows sees the pixels the decoder would have made
    (``tests/test_decode_resize.py`` holds the two equal)."""
    import torch
    import torch.nn.functional as F

    if not images.flags.c_contiguous or min(images.strides) < 0:  # torch takes no negative strides
        images = images.copy()
    with warnings.catch_warnings():  # read-only rows (memory maps) are fine: nothing writes to them
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        x = torch.from_numpy(images).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=tuple(hw), mode="bilinear", align_corners=False, antialias=True)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def resizes_straight(stored_hw: tuple[int, int], settings: DecodeSettings) -> bool:
    """Whether :func:`fit_to_settings` makes an image stored at ``(h, w)`` by
    :func:`enlarge` straight to the target, with no padding or cropping."""
    h, w = stored_hw
    th, tw = settings.hw
    return h <= th and w <= tw and _scaled_content_size((w, h), settings) == (tw, th)


def _small_or_resized(im: Image.Image, settings: DecodeSettings, keep_small: bool) -> np.ndarray:
    th, tw = settings.hw
    if keep_small and im.width <= tw and im.height <= th:
        arr = np.asarray(im, dtype=np.uint8)
        return arr[..., None] if arr.ndim == 2 else arr
    return _resize(im, settings)


def to_channels(im: Image.Image, channels: Channels) -> Image.Image:
    """Map any Pillow mode to ``RGB`` or ``L``: alpha on white, high bit depths scaled."""
    mode = im.mode
    if mode == channels:
        return im
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        im = Image.fromarray(_to_uint8(np.asarray(im)), mode="L")
    elif mode == "1":
        im = im.convert("L")
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        im = _composite_on_white(im)
    return im if im.mode == channels else im.convert(channels)


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise SkipImage("empty", "zero bytes")
        fp: BinaryIO | str = io.BytesIO(source)
    elif hasattr(source, "read"):
        fp = source  # type: ignore[assignment]
    else:
        path = os.fspath(source)
        if regular_file(path).st_size == 0:
            raise SkipImage("empty", "zero-byte file")
        fp = path
    try:
        return Image.open(fp, formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise _unidentified(fp) from None
    except FileNotFoundError:
        raise SkipImage("missing", "file not found") from None
    except PermissionError as exc:
        raise SkipImage("unreadable", f"permission denied ({exc.strerror})") from None
    except IsADirectoryError:
        raise SkipImage("unreadable", "is a directory") from None
    except Image.DecompressionBombError as exc:
        raise SkipImage("too_many_pixels", str(exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        _raise_if_io_error(exc)
        raise SkipImage("truncated", f"unreadable header: {exc}") from None


_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def regular_file(path: str | os.PathLike) -> os.stat_result:
    """``os.stat`` of ``path`` if it is a regular file (after symlinks), else :class:`SkipImage`.

    Nothing that is not a regular file is ever opened: reading a FIFO would block forever.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            raise SkipImage("missing", f"dangling symlink to {os.readlink(path)}") from None
        raise SkipImage("missing", "file not found") from None
    except PermissionError as exc:
        raise SkipImage("unreadable", f"permission denied ({exc.strerror})") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SkipImage("symlink_loop", "too many levels of symbolic links") from None
        raise SkipImage("unreadable", f"{exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "not a regular file")
        raise SkipImage("not_a_regular_file", kind)
    return st


def _raise_if_io_error(exc: BaseException) -> None:
    """Re-raise an OSError of the system (EIO, ESTALE...: it carries an errno) as it is.

    Pillow's format errors are OSErrors without an errno; only those mean the bytes are bad.
    A system error may pass on a rerun, so the loader must not remember it as a skip.
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        raise exc


def _unidentified(fp: BinaryIO | str) -> SkipImage:
    """``unsupported_format`` when Pillow knows the file as a format outside the allow-list."""
    try:
        if hasattr(fp, "seek"):
            fp.seek(0)  # type: ignore[union-attr]
        # header only: no plugin decodes (or runs Ghostscript) before load()
        with Image.open(fp) as other:
            name = other.format or "unknown"
    except Exception:
        return SkipImage("not_an_image", "Pillow cannot identify this file as an image")
    return SkipImage("unsupported_format", f"{name} is not one of {', '.join(ACCEPTED_FORMATS)}")


def _check_header(im: Image.Image, settings: DecodeSettings) -> None:
    w, h = im.size
    if w < 1 or h < 1:
        raise SkipImage("empty", f"image has no pixels ({w}x{h})")
    if w * h > settings.max_pixels:
        raise SkipImage(
            "too_many_pixels",
            f"{w}x{h} = {w * h:,} pixels exceeds the limit of {settings.max_pixels:,} (possible decompression bomb)",
        )
    aspect = max(w, h) / min(w, h)
    if aspect > settings.max_aspect:
        raise SkipImage("bad_aspect_ratio", f"{w}x{h} has aspect ratio {aspect:.1f} > {settings.max_aspect:g}")


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block must not cost the image
        return 1


def _draft_mode(mode: str, channels: Channels) -> str | None:
    # libjpeg converts YCbCr->L for free while decoding; CMYK must stay CMYK
    if channels == "L" and mode in ("RGB", "L"):
        return "L"
    if channels == "RGB" and mode == "RGB":
        return "RGB"
    return None


def _scaled_content_size(src_wh: tuple[int, int], settings: DecodeSettings) -> tuple[int, int]:
    """(w, h) the whole source image is scaled to before padding/cropping."""
    w, h = src_wh
    th, tw = settings.hw
    if settings.resize == "squash":
        return tw, th
    scale = (min if settings.resize == "pad" else max)(tw / w, th / h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _needed_size(size: tuple[int, int], orientation: int, settings: DecodeSettings) -> tuple[int, int]:
    """Smallest (w, h) in the file's own orientation the decoder must not go below."""
    w, h = size
    if orientation in _TRANSPOSING_ORIENTATIONS:
        cw, ch = _scaled_content_size((h, w), settings)
        return ch, cw
    return _scaled_content_size((w, h), settings)


def _resize(im: Image.Image, settings: DecodeSettings) -> np.ndarray:
    cw, ch = _scaled_content_size(im.size, settings)
    if im.size != (cw, ch) and (cw < im.width or ch < im.height):
        # reducing_gap: a box pre-reduce then bilinear; visually equal and much faster
        im = im.resize((cw, ch), Image.Resampling.BILINEAR, reducing_gap=2.0)
    arr = np.asarray(im, dtype=np.uint8)
    return _resize_array(arr[..., None] if arr.ndim == 2 else arr, settings)


def _resize_array(arr: np.ndarray, settings: DecodeSettings) -> np.ndarray:
    """(h, w, c) uint8 -> ``settings.shape``: enlarged where smaller than the content
    size (:func:`enlarge`), then padded or cropped to the target."""
    th, tw = settings.hw
    h, w, c = arr.shape
    cw, ch = _scaled_content_size((w, h), settings)
    if (w, h) != (cw, ch):  # only enlarging is left here: _resize shrank with Pillow
        arr = enlarge(arr[None], (ch, cw))[0]
    if settings.resize == "pad" and (cw, ch) != (tw, th):
        canvas = np.full((th, tw, c), settings.pad_value, dtype=np.uint8)
        top, left = (th - ch) // 2, (tw - cw) // 2
        canvas[top : top + ch, left : left + cw] = arr
        arr = canvas
    elif settings.resize == "crop" and (cw, ch) != (tw, th):
        left, top = (cw - tw) // 2, (ch - th) // 2
        arr = arr[top : top + th, left : left + tw]
    return np.ascontiguousarray(arr)


def _composite_on_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale any numeric array to uint8 without clipping information away."""
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype in (np.uint16, np.dtype(">u2"), np.dtype("<u2")):
        # full 16-bit range -> 8 bits (rounded), as a 16-bit PNG viewer shows it
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    data = arr.astype(np.float64)
    finite = np.isfinite(data)
    if not finite.any():
        raise SkipImage("bad_array", "no finite pixel values")
    lo, hi = float(data[finite].min()), float(data[finite].max())
    if np.issubdtype(arr.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0  # float images in [0, 1]: keep their absolute brightness
    span = hi - lo if hi > lo else 1.0
    scaled = np.where(finite, (data - lo) / span, 0.0)
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)


__all__ = [
    "CHANNELS",
    "RESIZE_POLICIES",
    "DecodeSettings",
    "ImageInfo",
    "SkipImage",
    "decode_array",
    "decode_image",
    "enlarge",
    "fit_to_settings",
    "regular_file",
    "resizes_straight",
    "to_channels",
]
