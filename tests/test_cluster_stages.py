"""The clustering stages on their own: reduction, neighbour smoothing, nearest-row
search, and the ImageClusterer API (fit / predict / save / load) on a real slice."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import shared_path

from pixsort.cluster.images.methods import partition
from pixsort.cluster.images.neighbours import nearest_rows
from pixsort.cluster.images.smooth import NeighbourSmoothing
from pixsort.features.reduce import EmbeddingReducer, l2_normalize


def _noisy_directions(rng, n_per=150, k=4, d=64, noise=1.3):
    centres = l2_normalize(rng.normal(size=(k, d)))
    y = np.repeat(np.arange(k), n_per)
    X = centres[y] + noise * rng.normal(size=(len(y), d)) / np.sqrt(d)
    return l2_normalize(X), y


def test_pca_on_wide_data_matches_an_svd(rng):
    # n < d takes the Gram-matrix path: same spectrum and components as a plain SVD
    X = (rng.normal(size=(120, 30)) * np.linspace(8, 1, 30)) @ rng.normal(size=(30, 500))
    red = EmbeddingReducer(10, whiten=False, renormalize=False).fit(X)
    centred = l2_normalize(X).astype(np.float64)
    centred -= centred.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(red.explained_variance_, s[:10] ** 2 / 119, rtol=1e-5)
    np.testing.assert_allclose(np.abs(red.components_), np.abs(vt[:10]), atol=1e-5)


def test_block_sizes_give_each_layer_equal_weight(rng):
    small = rng.normal(size=(50, 8))
    large = 1000.0 * rng.normal(size=(50, 24))
    X = np.hstack([small, large])
    red = EmbeddingReducer(None, block_sizes=[8, 24], renormalize=False).fit(X)
    Z = red.transform(X)
    # after per-block and global normalisation each block holds half the squared length
    np.testing.assert_allclose((Z[:, :8] ** 2).sum(1), 0.5, rtol=1e-5)
    with pytest.raises(ValueError, match="add up"):
        EmbeddingReducer(None, block_sizes=[8, 20]).fit(X)


def test_nearest_rows_orders_near_duplicates_exactly(rng):
    base = rng.normal(size=256)
    base /= np.linalg.norm(base)
    # three unit rows within ~1e-4 of the query: 1 - cos ~ 1e-8 is below float32 resolution
    ref = np.stack([base + 1e-5 * rng.normal(size=256) for _ in range(3)] + [rng.normal(size=256)])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    d = np.linalg.norm(ref - base, axis=1)
    f32 = ref[:3].astype(np.float32) @ base.astype(np.float32)
    assert len(np.unique(f32)) < 3 or f32.argsort()[::-1].tolist() != np.argsort(d)[:3].tolist()
    _, idx = nearest_rows(base[None], ref, 3)
    assert idx[0].tolist() == np.argsort(d)[:3].tolist()


def test_smoothing_tightens_groups_and_keeps_unit_rows(rng):
    from sklearn.metrics import silhouette_score

    X, y = _noisy_directions(rng, noise=4.0)
    S = NeighbourSmoothing(n_neighbors=10, iterations=10).fit_transform(X)
    # points move towards their neighbourhoods: the true groups separate more clearly
    assert silhouette_score(S, y) > silhouette_score(X, y) + 0.03
    np.testing.assert_allclose(np.linalg.norm(S, axis=1), 1.0, rtol=1e-5)
    assert NeighbourSmoothing(n_neighbors=10, iterations=1, alpha=0.0).fit_transform(X).shape == X.shape


def test_smoothing_steps_are_the_mean_of_each_rows_graph_neighbours(rng):
    Z = l2_normalize(rng.normal(size=(120, 6)))
    sm = NeighbourSmoothing(n_neighbors=5, iterations=1, alpha=0.25)
    S = sm.fit_transform(Z)
    _, nb = nearest_rows(Z, Z, 5, exclude_self=True)
    assert np.array_equal(sm.neighbours_, nb)
    by_hand = l2_normalize(0.25 * Z + 0.75 * Z[nb].mean(axis=1))  # one step, written out
    np.testing.assert_allclose(S, by_hand, atol=1e-6)


def test_smoothing_transform_gives_training_rows_their_own_embedding(rng):
    X, _ = _noisy_directions(rng, n_per=30)
    sm = NeighbourSmoothing(n_neighbors=5, iterations=4)
    S = sm.fit_transform(X)
    np.testing.assert_array_equal(sm.transform(X[:20]), S[:20])
    # a new point moves towards its neighbourhood: closer to its neighbours' smoothed mean than before
    q = l2_normalize(X[:1] + 0.3 * rng.normal(size=X[:1].shape))
    _, nb = nearest_rows(q, X, 5)
    target = S[nb[0]].mean(0)
    assert sm.transform(q)[0] @ target > q[0] @ target
    with pytest.raises(ValueError):
        NeighbourSmoothing(alpha=1.0)


@pytest.fixture(scope="module")
def pneumonia_slice():
    data = np.load(shared_path("pneumoniamnist", "pneumoniamnist_trainval.npz"))
    images, labels = data["train_images"], data["train_labels"].ravel()
    idx = np.concatenate([np.flatnonzero(labels == c)[:60] for c in (0, 1)])
    return images[idx][..., None].astype(np.uint8), labels[idx].astype(np.int64)


def test_clusterer_round_trip_keeps_selection_and_assignments(pneumonia_slice, tmp_path):
    from pixsort.cluster.images import ImageClusterer

    images, y = pneumonia_slice
    cl = ImageClusterer(features="pixels", k_min=2, k_max=4, random_state=0, progress=False).fit(images, y)
    assert cl.smoother_ is not None  # 120 images: smoothing is on (6 neighbours)
    assert cl.selection_ is not None and cl.n_clusters_ == cl.selection_.best_k
    np.testing.assert_array_equal(cl.predict(images), cl.labels_)

    loaded = ImageClusterer.load(cl.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.predict(images), cl.labels_)
    np.testing.assert_allclose(loaded.silhouette_values_, cl.silhouette_values_, rtol=1e-6)
    assert loaded.selection_.table().equals(cl.selection_.table())
    for a, b in zip(loaded.selection_.candidates, cl.selection_.candidates):
        np.testing.assert_array_equal(a.partition.labels, b.partition.labels)
    dist, idx = loaded.kneighbors(images[:5], 3)
    assert idx[:, 0].tolist() == [0, 1, 2, 3, 4] and np.allclose(dist[:, 0], 0.0, atol=1e-3)


def test_chosen_k_is_refit_with_full_restarts(pneumonia_slice):
    from pixsort.cluster.images import ImageClusterer

    images, y = pneumonia_slice
    cl = ImageClusterer(features="pixels", k_min=2, k_max=3, smoothing=0, random_state=0, progress=False)
    cl.fit(images, y)
    full = partition(cl.embeddings_, "kmeans", cl.n_clusters_, random_state=0)  # default n_init=10
    np.testing.assert_array_equal(cl.labels_, full.labels)
    np.testing.assert_array_equal(cl.selection_.best.partition.labels, full.labels)


def test_autoencoder_run_reports_curves_and_reconstructions(pneumonia_slice, tmp_path):
    from PIL import Image

    from pixsort.workflows import cluster_images

    images, y = pneumonia_slice
    out = cluster_images(
        images,
        tmp_path / "out",
        labels=y,
        view="pca",
        progress=False,
        features="autoencoder",
        n_clusters=2,
        autoencoder={"epochs": 3, "image_size": 16, "latent_dim": 8},
    ).outputs
    history = __import__("pandas").read_csv(tmp_path / "out" / "autoencoder_history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]  # it learned something
    assert 0.5 <= history["accuracy"].iloc[-1] <= 1.0  # scored against the labels after the last epoch
    with Image.open(out.files["reconstructions"]) as sheet:
        assert sheet.size == (64 * 10, 128)  # ten originals above their reconstructions
    assert "reconstructions.png" in out.report.read_text()


def test_cached_flip_embeddings_equal_uncached_ones(tmp_path, rng):
    # the mirrored pass reads a view of the images and copies only cache misses
    from pixsort.features.extract import FeatureSpec, build_extractor, extract_features, image_keys

    images = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    spec = FeatureSpec("efficientnet_lite0", tta=True)
    extractor = build_extractor(spec, progress=False)
    plain = extract_features(extractor, spec, images, None, None)
    keys = image_keys(images)
    cold = extract_features(extractor, spec, images, keys, tmp_path)
    warm = extract_features(extractor, spec, images, keys, tmp_path)
    np.testing.assert_allclose(cold, plain, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(warm, cold)
    unflipped = extract_features(extractor, FeatureSpec("efficientnet_lite0", tta=False), images, None, None)
    assert not np.allclose(plain, unflipped, atol=1e-3)  # the mirror images did count


def test_image_size_sets_a_pretrained_backbones_input_size(rng):
    # --size is the network's input as well as the decode size: 32 px images embedded at
    # 64 px are not those embedded at Lite0's own 224 px
    from pixsort.cluster.images import ImageClusterer
    from pixsort.features import PretrainedExtractor

    sized = ImageClusterer(image_size=64, progress=False)
    spec = sized.check_params()
    assert spec.input_size == 64 and sized.decode_settings.size == 64
    assert ImageClusterer(progress=False).check_params().input_size is None
    assert ImageClusterer(features="pixels", image_size=16).check_params().input_size is None
    from pixsort.features.extract import build_extractor

    images = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    at64 = build_extractor(spec, progress=False)
    assert "/input=64x64/" in at64.extractor_id
    own = PretrainedExtractor(at64.backbone, layers=at64.layers, progress=False)
    explicit = PretrainedExtractor(at64.backbone, layers=at64.layers, progress=False, input_size=64)
    np.testing.assert_allclose(at64.transform(images), explicit.transform(images), rtol=1e-5, atol=1e-5)
    assert not np.allclose(at64.transform(images), own.transform(images), atol=1e-3)
