"""The fitted reduce and smooth stages are kept by content: a re-clustering reads them back,
gives what a refit gives, and a damaged entry is refitted, never trusted."""

from __future__ import annotations

import numpy as np
import pytest

from pixsort.cluster.images import ImageClusterer
from pixsort.cluster.images import estimator as estimator_module
from pixsort.cluster.images.memory import KEEP_ENTRIES, StageMemory
from pixsort.cluster.images.smooth import NeighbourSmoothing
from pixsort.features.reduce import EmbeddingReducer


def _blobs(rng, n=240, groups=3, size=12):
    """``groups`` kinds of small images (a different colour and stripe each) with noise."""
    base = rng.integers(0, 256, (groups, size, size, 3))
    which = np.arange(n) % groups
    noise = rng.normal(0, 18, (n, size, size, 3))
    return np.clip(base[which] + noise, 0, 255).astype(np.uint8), which


@pytest.fixture
def remember_small(monkeypatch):
    monkeypatch.setattr(estimator_module, "REMEMBER_MIN_ROWS", 10)


def _fit(images, cache_dir, **params):
    settings = dict(features="pixels", image_size=12, n_clusters=3, progress=False, cache_dir=cache_dir)
    return ImageClusterer(**{**settings, **params}).fit(images)


def test_a_refit_of_the_same_embeddings_reads_the_stages_back(rng, cache_dir, remember_small):
    images, _ = _blobs(rng)
    first = _fit(images, cache_dir)
    assert not first.stages_from_cache_
    assert len(list((cache_dir / "stages").glob("*.safetensors"))) == 1
    again = _fit(images, cache_dir, n_clusters=2)  # another k: the stages before it are the same
    assert again.stages_from_cache_
    fresh = _fit(images, cache_dir.parent / "elsewhere", n_clusters=2)  # refitted: the same answer
    np.testing.assert_array_equal(again.reducer_.components_, first.reducer_.components_)
    np.testing.assert_array_equal(again.smoother_.neighbours_, first.smoother_.neighbours_)
    np.testing.assert_allclose(again.embeddings_, first.embeddings_, atol=1e-6)
    assert not fresh.stages_from_cache_
    np.testing.assert_array_equal(again.labels_, fresh.labels_)
    np.testing.assert_allclose(again.embeddings_, fresh.embeddings_, atol=1e-6)
    # a read-back model predicts its own training images as a fitted one does
    np.testing.assert_array_equal(again.predict(images[:20]), again.labels_[:20])


def test_other_stage_parameters_or_embeddings_are_another_entry(rng, cache_dir, remember_small):
    images, _ = _blobs(rng)
    _fit(images, cache_dir)
    other = _fit(images, cache_dir, smoothing=3)
    assert not other.stages_from_cache_
    shifted = _fit(images[::-1].copy(), cache_dir)
    assert not shifted.stages_from_cache_
    assert len(list((cache_dir / "stages").glob("*.safetensors"))) == 3


def test_a_damaged_entry_is_refitted(rng, cache_dir, remember_small):
    images, _ = _blobs(rng)
    first = _fit(images, cache_dir)
    (entry,) = (cache_dir / "stages").glob("*.safetensors")
    data = bytearray(entry.read_bytes())
    data[-40] ^= 0xFF  # a flipped byte inside the last array: the header still parses
    entry.write_bytes(bytes(data))
    again = _fit(images, cache_dir)
    assert not again.stages_from_cache_
    np.testing.assert_allclose(again.embeddings_, first.embeddings_, atol=1e-6)
    entry.write_bytes(b"not safetensors")
    assert not _fit(images, cache_dir).stages_from_cache_


def test_small_sets_keep_no_entry(rng, cache_dir):
    images, _ = _blobs(rng)
    assert len(images) < estimator_module.REMEMBER_MIN_ROWS
    _fit(images, cache_dir)
    assert not (cache_dir / "stages").exists()


def test_only_the_most_recent_entries_stay(rng, tmp_path):
    memory = StageMemory(tmp_path)
    for _ in range(KEEP_ENTRIES + 2):
        raw = rng.normal(size=(30, 6)).astype(np.float32)
        reducer, smoother = EmbeddingReducer(3), NeighbourSmoothing(4, 2)
        smoother.fit_transform(reducer.fit_transform(raw))
        memory.save(memory.key(raw, reducer, smoother), reducer, smoother)
        fitted, graph = memory.load(memory.key(raw, reducer, smoother), reducer, smoother)
        np.testing.assert_array_equal(graph, smoother.neighbours_)
        np.testing.assert_array_equal(fitted.components_, reducer.components_)
    assert len(list((tmp_path / "stages").glob("*.safetensors"))) == KEEP_ENTRIES
    assert memory.load(memory.key(raw, reducer, None), reducer, None) is None  # unsmoothed: not stored


def test_an_entry_is_the_reducer_and_the_graph_only(rng, cache_dir, remember_small):
    """Small beside the embeddings: the reduced rows are projected again, not stored."""
    images, _ = _blobs(rng)
    first = _fit(images, cache_dir)
    from safetensors.numpy import load_file

    (entry,) = (cache_dir / "stages").glob("*.safetensors")
    arrays = load_file(str(entry))
    assert set(arrays) == {"neighbours"} | {f"reducer.{k}" for k in first.reducer_.get_arrays()}
    assert arrays["neighbours"].shape == (len(images), first.smoother_.n_neighbors)  # neither row set


def test_without_smoothing_the_reducer_alone_is_read_back(rng, cache_dir, remember_small):
    images, _ = _blobs(rng)
    first = _fit(images, cache_dir, smoothing=0)
    again = _fit(images, cache_dir, smoothing=0)
    assert again.stages_from_cache_ and again.smoother_ is None
    np.testing.assert_array_equal(again.labels_, first.labels_)
    np.testing.assert_allclose(again.embeddings_, first.embeddings_, atol=1e-6)
