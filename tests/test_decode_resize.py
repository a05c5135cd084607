"""One enlarging resize: the decoder's pixels and a network's own resize of native-size
rows are the same, so a lazy set can hand the extractor its small stored rows."""

from __future__ import annotations

import numpy as np
import pytest

from pixsort.data import DecodeSettings
from pixsort.data.decode import decode_array, enlarge, fit_to_settings, resizes_straight
from pixsort.data.lazy import MirroredImages, PackedImages
from pixsort.features.preprocess import to_float_batch


def _sizes(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        th, tw = (int(v) for v in rng.integers(2, 260, 2))
        yield (int(rng.integers(1, th + 1)), int(rng.integers(1, tw + 1))), (th, tw), int(rng.choice([1, 3]))


def test_the_networks_resize_makes_the_decoders_pixels():
    rng = np.random.default_rng(1)
    for (h, w), target, c in _sizes(120):
        stored = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
        settings = DecodeSettings(size=target, channels="L" if c == 1 else "RGB")
        decoded = fit_to_settings(stored, settings)
        # mean 0, std 1/255: the float batch holds the resized levels themselves
        net = to_float_batch(stored[None], target, (0.0,) * 3, (1 / 255,) * 3, rgb=False, channels_last=False)
        np.testing.assert_array_equal(net[0].permute(1, 2, 0).round().to(dtype=net.dtype).numpy(), decoded)


def test_enlarging_commutes_with_mirroring():
    rng = np.random.default_rng(2)
    for (h, w), target, c in _sizes(120, seed=3):
        stored = rng.integers(0, 256, (1, h, w, c), dtype=np.uint8)
        np.testing.assert_array_equal(enlarge(stored[:, :, ::-1], target), enlarge(stored, target)[:, :, ::-1])


def test_pad_and_crop_still_frame_the_enlarged_picture():
    stored = np.random.default_rng(4).integers(0, 256, (10, 20, 3), dtype=np.uint8)
    pad = fit_to_settings(stored, DecodeSettings(size=40, resize="pad", pad_value=7))
    assert pad.shape == (40, 40, 3) and (pad[:10] == 7).all() and (pad[30:] == 7).all()
    np.testing.assert_array_equal(pad[10:30], enlarge(stored[None], (20, 40))[0])
    crop = fit_to_settings(stored, DecodeSettings(size=40, resize="crop"))
    np.testing.assert_array_equal(crop, enlarge(stored[None], (40, 80))[0][:, 20:60])
    assert not resizes_straight((10, 20), DecodeSettings(size=40, resize="pad"))
    assert resizes_straight((10, 20), DecodeSettings(size=40)) and resizes_straight((20, 20), DecodeSettings(size=40))
    assert not resizes_straight((50, 20), DecodeSettings(size=40))


def test_shrinking_still_goes_through_pillow():
    big = np.random.default_rng(5).integers(0, 256, (300, 120, 3), dtype=np.uint8)  # taller: shrinks
    out = decode_array(big, DecodeSettings(size=100))
    assert out.shape == (100, 100, 3) and out.dtype == np.uint8


def _packed(stored: list[np.ndarray], settings: DecodeSettings) -> PackedImages:
    offsets = np.cumsum([0] + [a.size for a in stored[:-1]])
    shapes = np.array([a.shape[:2] for a in stored])
    return PackedImages(np.concatenate([a.ravel() for a in stored]), offsets, shapes, settings)


def test_native_rows_are_the_stored_rows_where_one_resize_gives_the_images():
    rng = np.random.default_rng(6)
    settings = DecodeSettings(size=24)
    same = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(4)]
    packed = _packed(same, settings)
    rows = packed.native_rows(np.array([2, 0]))
    np.testing.assert_array_equal(rows, np.stack([same[2], same[0]]))
    np.testing.assert_array_equal(enlarge(rows, (24, 24)), packed[np.array([2, 0])])
    mirrored = MirroredImages(packed).native_rows(np.arange(4))
    np.testing.assert_array_equal(enlarge(mirrored, (24, 24)), MirroredImages(packed)[np.arange(4)])
    mixed = _packed([*same[:2], rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)], settings)
    assert mixed.native_rows(np.arange(3)) is None and mixed.native_rows(np.arange(2)) is not None
    assert _packed(same, DecodeSettings(size=24, resize="pad")).native_rows(np.arange(4)) is not None
    tall = _packed([rng.integers(0, 256, (8, 4, 3), dtype=np.uint8)], DecodeSettings(size=24, resize="pad"))
    assert tall.native_rows(np.arange(1)) is None  # padded: the extractor cannot do that


@pytest.fixture(scope="module")
def lite0():
    from pixsort.features import PretrainedExtractor

    return PretrainedExtractor("efficientnet_lite0", precision="fp32", runtime="torch", progress=False)


def test_a_cached_embedding_from_native_rows_equals_the_one_from_full_size_pixels(lite0, tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    settings = DecodeSettings(size=lite0._prepared()[1].size)
    stored = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    packed = _packed(stored, settings)
    fed = []
    extract = type(lite0)._extract
    monkeypatch.setattr(type(lite0), "_extract", lambda self, images: fed.append(images.shape) or extract(self, images))
    keys = [f"k{i}" for i in range(3)]
    lazy = lite0.transform(packed, keys=keys, cache_dir=tmp_path / "a")
    full = lite0.transform(np.asarray(packed), keys=keys, cache_dir=tmp_path / "b")
    assert fed == [(3, 32, 32, 3), (3, *settings.shape)]  # native rows, then the enlarged array
    np.testing.assert_allclose(lazy, full, rtol=0, atol=1e-5)
