"""Neighbour search at any n: the three engines agree, the approximate one keeps its
recall, and no engine needs an n x n matrix."""

from __future__ import annotations

import numpy as np
import pytest

from pixsort.cluster.images import neighbours
from pixsort.cluster.images.neighbours import NeighbourSearch, nearest_rows, recall_at_k
from pixsort.features import reduce as reduce_module
from pixsort.features.reduce import EmbeddingReducer, l2_normalize

pytest.importorskip("faiss")


def _clustered(n: int, d: int = 32, k: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    return l2_normalize(centres[rng.integers(0, k, n)] + 0.6 * rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.parametrize("method", ["flat", "hnsw"])
def test_faiss_engines_agree_with_exact_search(method):
    Z = _clustered(6000)
    _, exact = nearest_rows(Z[:500], Z, 10)
    sims, idx = NeighbourSearch(Z, method=method).search(Z[:500], 10)
    recall = recall_at_k(idx, exact)
    assert recall >= (0.999 if method == "flat" else 0.95), recall
    assert np.all(np.diff(sims, axis=1) <= 1e-6)  # best first


def test_excluding_self_drops_the_row_itself():
    Z = _clustered(3000)
    for method in ("exact", "flat", "hnsw"):
        _, idx = NeighbourSearch(Z, method=method).search(Z, 5, exclude_self=True)
        assert idx.shape == (3000, 5)
        assert not (idx == np.arange(3000)[:, None]).any(), method


def test_the_graph_index_answers_alike_on_a_rebuild_and_asks_deep_enough():
    Z = _clustered(5000)
    first = NeighbourSearch(Z, method="hnsw")
    _, a = first.search(Z, 40, exclude_self=True)
    assert first._index.hnsw.efSearch >= 41  # a search depth below k could not return k answers
    _, b = NeighbourSearch(Z, method="hnsw").search(Z, 40, exclude_self=True)
    np.testing.assert_array_equal(a, b)
    assert (a >= 0).all()
    _, exact = nearest_rows(Z, Z, 40, exclude_self=True)
    assert recall_at_k(a, exact) >= 0.95


def test_auto_picks_by_size(monkeypatch):
    monkeypatch.setattr(neighbours, "EXACT_MAX", 100)
    monkeypatch.setattr(neighbours, "FLAT_MAX", 1000)
    assert NeighbourSearch(_clustered(100)).method == "exact"
    assert NeighbourSearch(_clustered(500)).method == "flat"
    assert NeighbourSearch(_clustered(2000)).method == "hnsw"


def test_the_reducer_fits_on_a_sample_and_projects_in_chunks(monkeypatch):
    rng = np.random.default_rng(1)
    scales = np.linspace(3, 1, 10)[None]  # ten strong directions over weak noise
    X = (rng.normal(size=(3000, 10)) * scales) @ rng.normal(size=(10, 40)) + 0.05 * rng.normal(size=(3000, 40))
    X = X.astype(np.float32)
    whole = EmbeddingReducer(10).fit(X)
    monkeypatch.setattr(reduce_module, "CHUNK_ROWS", 256)
    chunked = EmbeddingReducer(10).fit(X)
    np.testing.assert_allclose(chunked.components_, whole.components_, atol=1e-5)
    np.testing.assert_allclose(chunked.transform(X), whole.transform(X), atol=1e-5)
    monkeypatch.setattr(reduce_module, "FIT_SAMPLE", 1500)
    sampled = EmbeddingReducer(10).fit(X)
    Z = sampled.transform(X)
    assert Z.shape == (3000, 10)
    # a half sample spans nearly the same subspace: the projections' principal angles are small
    cos = np.linalg.svd(sampled.components_ @ whole.components_.T, compute_uv=False)
    assert cos.min() > 0.99


def test_quadratic_methods_refuse_large_sets_before_any_feature_is_computed(monkeypatch):
    from pixsort.cluster.images import ImageClusterer, methods

    monkeypatch.setattr(methods, "SIZE_LIMITS", {"agglomerative": (50, "merges clusters pairwise")})
    images = np.random.default_rng(0).integers(0, 255, (60, 8, 8, 3), dtype=np.uint8)
    called = []
    monkeypatch.setattr("pixsort.cluster.images.estimator.extract_features", lambda *a, **k: called.append(1) or None)
    with pytest.raises(ValueError, match="refused above 50 images \\(got 60\\); use method='kmeans'"):
        ImageClusterer(features="pixels", method="agglomerative", n_clusters=3, progress=False).fit(images)
    assert called == []


def test_the_reducer_reads_a_memory_map_a_chunk_at_a_time(monkeypatch, tmp_path):
    rng = np.random.default_rng(2)
    X = (rng.normal(size=(3000, 6)) * np.linspace(3, 1, 6)) @ rng.normal(size=(6, 24))
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=X.shape)
    mm[:] = X
    mm.flush()
    whole = EmbeddingReducer(6, block_sizes=[8, 16]).fit(np.asarray(X, dtype=np.float32))
    monkeypatch.setattr(reduce_module, "CHUNK_ROWS", 256)
    seen = []
    prepare = EmbeddingReducer._prepare
    monkeypatch.setattr(EmbeddingReducer, "_prepare", lambda self, A: seen.append(len(A)) or prepare(self, A))
    chunked = EmbeddingReducer(6, block_sizes=[8, 16]).fit(np.load(tmp_path / "x.npy", mmap_mode="r"))
    assert max(seen) <= 256 and sum(seen) == 2 * 3000  # two passes, never the whole matrix
    np.testing.assert_allclose(chunked.components_, whole.components_, atol=1e-5)


def test_faiss_kmeans_restarts_on_a_sample_then_refines_on_every_row(monkeypatch):
    import faiss

    from pixsort.cluster.images import methods

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(4, 16)) * 4
    truth = rng.integers(0, 4, 3000)
    X = (centres[truth] + rng.normal(size=(3000, 16))).astype(np.float32)
    monkeypatch.setattr(methods, "RESTART_SAMPLE", 1000)
    trained = []
    train = faiss.Kmeans.train
    monkeypatch.setattr(
        faiss.Kmeans, "train", lambda self, x, **kw: trained.append((len(x), self.cp.nredo)) or train(self, x, **kw)
    )
    part = methods.kmeans(X, 4, random_state=0, backend="faiss")
    assert trained == [(1000, 10), (3000, 1)]  # ten restarts on the sample, one refinement on all rows
    from pixsort.cluster.metrics import clustering_scores

    assert clustering_scores(truth, part.labels)["accuracy"] > 0.99
    np.testing.assert_array_equal(methods.kmeans(X, 4, random_state=0, backend="faiss").labels, part.labels)
