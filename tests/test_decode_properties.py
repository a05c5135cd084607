"""Property tests for the decoder: whatever the bytes, the answer is an image or SkipImage, fast."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pixsort.data import DecodeSettings, SkipImage, decode_image
from pixsort.data.formats import ACCEPTED_FORMATS

# Pillow warns about the corrupt EXIF and TIFF tags these tests are made of
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SMALL = DecodeSettings(size=16, channels="RGB", max_pixels=4_000_000)


def _seed_files() -> list[bytes]:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)
    out = []
    for fmt in ACCEPTED_FORMATS:
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _seed_files()


def _check(data: bytes) -> None:
    start = time.monotonic()
    try:
        array, _ = decode_image(data, SMALL)
    except SkipImage as skip:
        assert skip.reason
    else:
        assert array.shape == (16, 16, 3) and array.dtype == np.uint8
    assert time.monotonic() - start < 5.0


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_never_raise_anything_but_skip_image(data):
    _check(data)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(range(len(SEEDS))),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=8),
    st.one_of(st.none(), st.integers(0, 4096)),
)
def test_corrupted_headers_and_truncations_never_raise_anything_but_skip_image(which, flips, cut):
    data = bytearray(SEEDS[which])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    if cut is not None:
        data = data[:cut]
    _check(bytes(data))
