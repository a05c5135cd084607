"""TableClusterer: planted clusters, k choice, stability, predict, edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from pixsort.cluster.labels import NOISE
from pixsort.cluster.table import TableClusterer, compare_methods


def planted_binary(sizes=(60, 40, 25), n_features=50, density=0.2, flip=0.08, seed=0):
    """Rows copied from one random 0/1 prototype per cluster, each bit flipped with
    probability ``flip``.  Returns (X of shape (sum(sizes), n_features), true labels)."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((len(sizes), n_features)) < density
    truth = np.repeat(np.arange(len(sizes)), sizes)
    flips = rng.random((len(truth), n_features)) < flip
    return np.where(flips, ~prototypes[truth], prototypes[truth]).astype(float), truth


PLANTED, TRUTH = planted_binary()

METHODS = {
    "kmodes": {"method": "kmodes", "n_init": 2},
    "agglo-jaccard-average": {"method": "agglomerative", "metric": "jaccard", "linkage": "average"},
    "agglo-jaccard-complete": {"method": "agglomerative", "metric": "jaccard", "linkage": "complete"},
    "agglo-hamming-average": {"method": "agglomerative", "metric": "hamming", "linkage": "average"},
    "agglo-hamming-complete": {"method": "agglomerative", "metric": "hamming", "linkage": "complete"},
    "kmeans-pca": {"method": "kmeans", "scaling": "pca"},
    "kmeans-standard": {"method": "kmeans", "scaling": "standard"},
    "hdbscan": {"method": "hdbscan"},
}
PREDICTING = {name: params for name, params in METHODS.items() if name != "hdbscan"}


@pytest.mark.parametrize("params", METHODS.values(), ids=METHODS.keys())
def test_planted_clusters_are_recovered_with_k_chosen_by_silhouette(params):
    model = TableClusterer(k_range=(2, 5), stability_runs=3, **params).fit(PLANTED)
    assert model.n_clusters_ == 3
    assert adjusted_rand_score(TRUTH, model.labels_) >= 0.9
    assert model.stability_ >= 0.9
    assert 0 < model.silhouette_ <= 1
    assert model.labels_.shape == (len(PLANTED),)
    if params["method"] != "hdbscan":
        assert sorted(model.scores_) == [2, 3, 4, 5]
        assert max(model.scores_, key=model.scores_.get) == 3


def test_labels_are_ordered_by_cluster_size():
    model = TableClusterer("kmeans", 3, stability_runs=0).fit(PLANTED)
    assert np.bincount(model.labels_).tolist() == [60, 40, 25]


@pytest.mark.parametrize("method", ["kmodes", "kmeans"])
def test_same_seed_gives_the_same_result(method):
    noisy, _ = planted_binary(sizes=(30, 30, 30), flip=0.25, seed=3)
    first = TableClusterer(method, 4, n_init=1, stability_runs=3, random_state=7).fit(noisy)
    again = TableClusterer(method, 4, n_init=1, stability_runs=3, random_state=7).fit(noisy)
    np.testing.assert_array_equal(first.labels_, again.labels_)
    assert first.stability_ == again.stability_
    assert first.stability_scores_.shape == (3,)  # 3 runs -> 3 pairs


def test_stability_is_lower_on_structureless_data():
    noise = (np.random.default_rng(0).random((120, 30)) < 0.3).astype(float)
    model = TableClusterer("kmeans", 4, stability_runs=4).fit(noise)
    assert model.stability_ < 0.8


@pytest.mark.parametrize("params", PREDICTING.values(), ids=PREDICTING.keys())
def test_predict_places_training_rows_in_their_own_clusters(params):
    model = TableClusterer(n_clusters=3, stability_runs=0, **params).fit(PLANTED)
    agreement = (model.predict(PLANTED) == model.labels_).mean()
    if params["method"] == "agglomerative":  # the tree was built greedily, the rule is not its inverse
        assert agreement >= 0.95
    else:
        assert agreement == 1.0
    # a fresh noisy copy of a prototype goes with its siblings
    fresh, fresh_truth = planted_binary(sizes=(5, 5, 5), seed=0)
    predicted = model.predict(fresh)
    for cluster in range(3):
        assert len(set(predicted[fresh_truth == cluster])) == 1


def test_hdbscan_cannot_predict_and_takes_no_k():
    model = TableClusterer("hdbscan", stability_runs=0).fit(PLANTED)
    with pytest.raises(NotImplementedError, match="HDBSCAN"):
        model.predict(PLANTED[:3])
    with pytest.raises(ValueError, match="finds its own number"):
        TableClusterer("hdbscan", 3).fit(PLANTED)


def test_rows_with_no_true_feature_are_set_aside():
    X = np.vstack([PLANTED, np.zeros((2, PLANTED.shape[1]))])
    model = TableClusterer("agglomerative", 3, stability_runs=0).fit(X)
    assert model.empty_rows_.sum() == 2 and model.empty_rows_[-2:].all()
    assert (model.labels_[-2:] == NOISE).all()
    assert adjusted_rand_score(TRUTH, model.labels_[:-2]) >= 0.9
    assert model.predict(np.zeros((1, X.shape[1]))).tolist() == [NOISE]


def test_a_k_with_a_tiny_cluster_is_passed_over():
    X, truth = planted_binary(sizes=(50, 50), n_features=40, density=0.25)
    X = np.vstack([X, np.ones((2, X.shape[1]))])  # two rows with every feature
    settings = {"method": "kmeans", "scaling": "standard", "k_range": (2, 5), "stability_runs": 0}
    greedy = TableClusterer(min_cluster_share=0.0, **settings).fit(X)
    guarded = TableClusterer(min_cluster_share=0.05, **settings).fit(X)
    assert greedy.n_clusters_ == 3 and np.bincount(greedy.labels_).min() == 2  # silhouette alone
    assert guarded.n_clusters_ == 2
    assert adjusted_rand_score(truth, guarded.labels_[:-2]) >= 0.9
    assert guarded.k_search_.set_index("k").loc[3, "eligible"] == False  # noqa: E712
    assert guarded.k_search_.set_index("k").loc[3, "silhouette"] > guarded.silhouette_


def test_when_no_k_is_eligible_a_note_says_so():
    X = np.vstack([PLANTED, np.ones((1, PLANTED.shape[1]))])
    model = TableClusterer("agglomerative", k_range=(3, 4), min_cluster_share=0.3, stability_runs=0).fit(X)
    assert not model.k_search_["eligible"].any()
    assert any("no k in" in note for note in model.notes_)


def test_numeric_tables_use_kmeans_and_reject_binary_methods():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0], [6, 6, 0], [0, 6, 6]], dtype=float)
    truth = np.repeat(np.arange(3), 40)
    X = pd.DataFrame(centres[truth] + rng.normal(size=(120, 3)), columns=["a", "b", "c"])
    X["height_cm"] = X["a"] * 100  # units must not decide the components
    model = TableClusterer(stability_runs=0).fit(X)
    assert model.method_ == "kmeans" and not model.binary_
    assert adjusted_rand_score(truth, model.labels_) >= 0.9
    assert list(model.feature_names_in_) == ["a", "b", "c", "height_cm"]
    with pytest.raises(ValueError, match="needs 0/1 features"):
        TableClusterer("kmodes").fit(X)
    with pytest.raises(ValueError, match="needs 0/1 features"):
        TableClusterer("agglomerative", metric="jaccard").fit(X)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"method": "spectral"}, "'method' parameter"),
        ({"n_clusters": 1}, "'n_clusters' parameter"),
        ({"k_range": (1, 4)}, "k_range"),
        ({"metric": "cosine"}, "'metric' parameter"),
        ({"linkage": "ward"}, "'linkage' parameter"),
        ({"method": "kmodes", "metric": "jaccard"}, "Hamming"),
        ({"method": "kmeans", "metric": "jaccard"}, "Euclidean"),
        ({"stability_fraction": 0}, "stability_fraction"),
        ({"n_components": 1.5}, "n_components"),
    ],
)
def test_parameters_are_validated_at_fit(params, message):
    model = TableClusterer(**params)  # __init__ only stores: set_params and clone work on any value
    assert model.get_params()[next(iter(params))] == next(iter(params.values()))
    with pytest.raises(ValueError, match=message):
        model.fit(PLANTED)


def test_predict_checks_the_number_of_features():
    model = TableClusterer("kmeans", 3, stability_runs=0).fit(PLANTED)
    with pytest.raises(ValueError, match="features"):
        model.predict(PLANTED[:, :10])


def test_fit_predict_and_sklearn_params():
    model = TableClusterer("kmeans", 3, stability_runs=0)
    labels = model.fit_predict(PLANTED)
    np.testing.assert_array_equal(labels, model.labels_)
    assert model.get_params()["n_clusters"] == 3


def test_compare_methods_tabulates_each_candidate():
    table = compare_methods(
        PLANTED,
        [{"method": "kmeans"}, {"method": "agglomerative", "metric": "hamming"}],
        k_range=(2, 4),
        stability_runs=2,
    )
    assert table["method"].tolist() == ["k-means (PCA 10)", "agglomerative (hamming, average)"]
    assert table["k"].tolist() == [3, 3]
    assert (table["silhouette_jaccard"] > 0.2).all()
    assert table["sizes"].tolist() == ["60 40 25", "60 40 25"]
