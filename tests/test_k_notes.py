"""Choosing k says what a user should know: a choice at the top of the range, a flat
silhouette curve, other k about as good, and (when asked) a widened range."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from pixsort.cluster.images import ImageClusterer
from pixsort.cluster.images.methods import partition
from pixsort.cluster.images.select import FLAT_SPREAD, select_k


def _select(X: np.ndarray, ks) -> object:
    return select_k(X, ks, lambda k: partition(X, "kmeans", k, 0), sample_size=None)


def test_a_clear_choice_inside_the_range_has_no_notes():
    X, _ = make_blobs(300, centers=3, cluster_std=0.3, random_state=0)
    selection = _select(X.astype(np.float32), range(2, 8))
    assert selection.best_k == 3 and not selection.at_upper_edge and not selection.flat
    assert selection.notes() == []


def test_a_choice_at_the_top_of_the_range_is_said():
    X, _ = make_blobs(400, centers=8, cluster_std=0.2, center_box=(-20, 20), random_state=1)
    selection = _select(X.astype(np.float32), range(2, 6))
    assert selection.best_k == 5 and selection.at_upper_edge
    assert any("largest k tried" in note for note in selection.notes())


@pytest.mark.parametrize(("ks", "hint"), [(range(2, 7), "give --k"), (range(3, 7), "lower --k-min")])
def test_a_choice_at_the_bottom_of_the_range_is_said(ks, hint):
    # two far-apart groups, each of three close blobs: the coarse split wins
    X, _ = make_blobs(
        600, centers=[(0, 0), (1.5, 0), (0, 1.5), (40, 40), (41.5, 40), (40, 41.5)], cluster_std=0.3, random_state=0
    )
    selection = _select(X.astype(np.float32), ks)
    assert selection.best_k == min(ks) and selection.at_lower_edge and not selection.at_upper_edge
    (note,) = [n for n in selection.notes() if "smallest k tried" in n]
    assert hint in note and f"k = {min(ks)}" in note


def test_a_flat_curve_is_said_with_the_best_three():
    X = np.random.default_rng(0).uniform(size=(400, 6)).astype(np.float32)  # no structure at all
    selection = _select(X, range(2, 9))
    scores = [c.silhouette for c in selection.candidates]
    assert max(scores) - min(scores) < FLAT_SPREAD and selection.flat
    (note,) = [n for n in selection.notes() if "flat" in n]
    assert note.count("k = ") == 4  # the range and the best three
    assert [c.k for c in selection.ranked(3)][0] == selection.best_k


def _blob_images(n_centres: int, n: int = 320) -> tuple[np.ndarray, np.ndarray]:
    """uint8 'images' (n, 2, 2, 1) whose four pixels are the coordinates of separated blobs."""
    X, y = make_blobs(n, n_features=4, centers=n_centres, cluster_std=1.0, center_box=(-60, 60), random_state=3)
    return np.clip(X + 128, 0, 255).astype(np.uint8).reshape(n, 2, 2, 1), y


@pytest.mark.parametrize("widen", [False, True])
def test_the_clusterer_widens_the_range_only_when_asked(widen, tmp_path):
    images, _ = _blob_images(7)
    clusterer = ImageClusterer(
        features="pixels", k_max=4, k_widen=widen, smoothing=0, n_components=None, whiten=False,
        progress=False, cache_dir=tmp_path,
    )  # fmt: skip
    clusterer.fit(images)
    ks = [c.k for c in clusterer.selection_.candidates]
    notes = clusterer.selection_.notes()
    if widen:
        assert ks == list(range(2, 9)) and clusterer.n_clusters_ == 7
        assert any("widened to 2..8" in n for n in notes) and not clusterer.selection_.at_upper_edge
    else:
        assert ks == [2, 3, 4] and clusterer.n_clusters_ == 4
        assert any("largest k tried" in n for n in notes)


def test_tsne_kmeans_partitions_the_t_sne_layout_and_places_new_images_by_neighbours(tmp_path):
    images, truth = _blob_images(4, n=200)
    clusterer = ImageClusterer(features="pixels", method="tsne-kmeans", k_max=6, smoothing=0, progress=False,
                               cache_dir=tmp_path).fit(images)  # fmt: skip
    assert clusterer.layout_.shape == (200, 2) and clusterer.n_clusters_ == 4
    assert clusterer.score(truth)["accuracy"] == 1.0
    # every candidate k was fitted on the one layout: the chosen partition is k-means of it
    from sklearn.cluster import KMeans

    again = KMeans(n_clusters=4, n_init=10, random_state=0).fit_predict(clusterer.layout_)
    assert clusterer.score(again)["accuracy"] == 1.0
    np.testing.assert_array_equal(clusterer.predict(images[:20]), clusterer.labels_[:20])


def _scored(silhouettes: dict[int, float]):
    from pixsort.cluster.images.select import KCandidate, KSelection

    candidates = [KCandidate(k, None, s, 1.0, 1.0, np.zeros(0)) for k, s in silhouettes.items()]
    best = max(candidates, key=lambda c: c.silhouette).k
    return KSelection(candidates, best, np.arange(0))


@pytest.mark.parametrize(
    ("silhouettes", "said"),
    [
        ({2: 0.255, 3: 0.261, 4: 0.188, 5: 0.191, 6: 0.165, 7: 0.166}, True),  # 7 uneven CIFAR classes
        ({2: 0.131, 3: 0.158, 4: 0.126, 5: 0.126, 6: 0.118}, False),  # k = 2 well below: a clear choice
        ({2: 0.20, 3: 0.21, 4: 0.22, 5: 0.15, 6: 0.14}, False),  # the best is not next to the edge
    ],
)
def test_a_choice_next_to_the_bottom_with_the_bottom_as_good_is_said(silhouettes, said):
    selection = _scored(silhouettes)
    notes = [n for n in selection.notes() if "next to the smallest k tried" in n]
    assert selection.next_to_lower_edge is said and len(notes) == int(said)
    if said:
        assert "k = 2 scored nearly as well (0.255 against 0.261" in notes[0] and "give --k" in notes[0]
