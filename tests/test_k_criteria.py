"""The label-free k criteria besides the silhouette (``k_criterion``): they find the
true k where the structure is clear, are seeded, are kept per candidate, and travel
through the estimator, the model folder and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from typer.testing import CliRunner

from pixsort.cli import app
from pixsort.cluster.images import ImageClusterer
from pixsort.cluster.images.criteria import Eigengap, Stability, laplacian_eigenvalues
from pixsort.cluster.images.methods import partition
from pixsort.cluster.images.select import choose_k, select_k
from pixsort.cluster.select import silhouette_sample_index

SIZES = [300, 160, 80, 40]  # uneven: the smallest group is 7% of the points


def _uneven_blobs(seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(SIZES, n_features=6, cluster_std=0.6, center_box=(-25, 25), random_state=seed)
    return X.astype(np.float32), y


def _select(X: np.ndarray, criterion: str, ks=range(2, 9)):
    return select_k(X, ks, lambda k: partition(X, "kmeans", k, 0, n_init=3), sample_size=None, criterion=criterion)


@pytest.mark.parametrize("criterion", ["silhouette", "stability", "eigengap"])
def test_each_criterion_finds_well_separated_uneven_groups(criterion):
    X, _ = _uneven_blobs()
    selection = _select(X, criterion)
    assert selection.best_k == len(SIZES)
    assert selection.criterion == criterion and not selection.at_upper_edge


def test_the_eigengap_counts_the_components_of_the_neighbour_graph():
    X, _ = _uneven_blobs()
    values = laplacian_eigenvalues(X, 8)
    # four separate groups: four (near) zero eigenvalues, then a clear jump
    assert np.all(values[:4] < 1e-6) and values[4] > 0.05
    assert np.all(np.diff(values) >= -1e-9)


def test_stability_and_eigengap_are_seeded_and_deterministic():
    X, _ = make_blobs(600, n_features=5, centers=5, cluster_std=2.5, random_state=0)
    X = X.astype(np.float32)
    sample = silhouette_sample_index(len(X), 400, 0)
    a = [Stability(X, sample, random_state=3)(k) for k in range(2, 7)]
    b = [Stability(X, sample, random_state=3)(k) for k in range(2, 7)]
    assert a == b
    c = [Stability(X, sample, random_state=4)(k) for k in range(2, 7)]
    assert a != c  # the seed draws the subsamples
    g1, g2 = Eigengap(X, sample, 6, random_state=1), Eigengap(X, sample, 6, random_state=1)
    assert [g1(k) for k in range(2, 7)] == [g2(k) for k in range(2, 7)]


def test_the_selection_keeps_the_criterion_per_k_and_notes_speak_of_it():
    X, _ = _uneven_blobs()
    selection = _select(X, "eigengap", ks=range(2, 5))
    table = selection.table()
    assert list(table.columns) == ["k", "silhouette", "davies_bouldin", "calinski_harabasz", "eigengap", "chosen"]
    assert table["eigengap"].tolist() == selection.scores()
    assert selection.best_k == 4 == int(table.loc[table["eigengap"].idxmax(), "k"])
    assert table["chosen"].tolist() == [False, False, True]
    (note,) = selection.notes()  # four groups, k tried up to 4
    assert "largest k tried and the eigengap was still rising" in note and "silhouette" not in note


def test_stability_keeps_the_stable_k_and_the_silhouette_picks_among_them():
    ks, stability = [2, 3, 4, 5, 9], [0.30, 1.0, 0.99, 0.70, 1.0]
    silhouettes = [0.60, 0.99, 0.90, 0.80, 0.75]
    # 3, 4 and 9 are stable (small tight clumps split reproducibly too); the silhouette prefers 3
    assert choose_k(ks, stability, "stability", silhouettes=silhouettes) == 3
    assert choose_k(ks, stability, "stability") == 9  # without silhouettes: the largest stable k
    assert choose_k(ks, stability, "stability", stable_tol=0.001, silhouettes=silhouettes) == 3
    # 2 and 4 stable (0.94, 0.95): the silhouette prefers 4; 0.90 would not have been stable
    assert choose_k(ks, [0.94, 0.5, 0.95, 0.2, 0.1], "stability", silhouettes=silhouettes) == 4
    assert choose_k(ks, [0.94, 0.5, 0.95, 0.2, 0.1], "stability", silhouettes=[0.95, 0, 0.9, 0, 0]) == 2
    assert choose_k(ks, [0.90, 0.5, 0.95, 0.2, 0.1], "stability", silhouettes=[0.95, 0, 0.9, 0, 0]) == 4
    assert choose_k(ks, silhouettes, "silhouette") == choose_k(ks, silhouettes, "eigengap") == 3
    assert choose_k(ks, [np.nan] * 5, "stability") is None


def test_stability_notes_name_the_stable_k():
    X, _ = _uneven_blobs()
    selection = _select(X, "stability", ks=range(2, 7))
    assert selection.best_k == 4 and 4 in selection.stable_ks() and 6 not in selection.stable_ks()
    notes = " ".join(selection.notes())
    if len(selection.stable_ks()) > 1:
        assert "the silhouette chose k = 4 among them" in notes


def test_the_parameter_is_validated_and_saved_with_the_model(tmp_path):
    with pytest.raises(ValueError, match="k_criterion"):
        ImageClusterer(k_criterion="gap").check_params()
    X, y = _uneven_blobs()
    images = np.clip(X[:, :4] * 2 + 128, 0, 255).astype(np.uint8).reshape(-1, 2, 2, 1)
    model = ImageClusterer(
        features="pixels", k_max=6, k_criterion="eigengap", smoothing=0, n_components=None, whiten=False,
        progress=False, cache_dir=tmp_path / "cache",
    ).fit(images)  # fmt: skip
    assert model.selection_.criterion == "eigengap" and "eigengap" in model.selection_.table()
    model.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["params"]["k_criterion"] == "eigengap"
    loaded = ImageClusterer.load(tmp_path / "model")
    assert loaded.k_criterion == "eigengap" and loaded.selection_.criterion == "eigengap"
    assert loaded.selection_.best_k == model.selection_.best_k == model.n_clusters_
    assert loaded.selection_.scores() == pytest.approx(model.selection_.scores())


def test_a_model_saved_before_the_parameter_loads_as_chosen_by_silhouette(tmp_path):
    X, _ = _uneven_blobs()
    images = np.clip(X[:, :4] * 2 + 128, 0, 255).astype(np.uint8).reshape(-1, 2, 2, 1)
    model = ImageClusterer(features="pixels", k_max=5, k_criterion="silhouette", smoothing=0, progress=False,
                           cache_dir=tmp_path / "cache").fit(images)  # fmt: skip
    model.save(tmp_path / "model")
    path = tmp_path / "model" / "model.json"
    meta = json.loads(path.read_text())
    del meta["params"]["k_criterion"]
    path.write_text(json.dumps(meta))
    loaded = ImageClusterer.load(tmp_path / "model")
    assert loaded.k_criterion == "silhouette" and loaded.selection_.criterion == "silhouette"


def test_the_cli_passes_the_criterion_on(tmp_path):
    X, y = _uneven_blobs()
    data = tmp_path / "blobs.npz"
    images = np.clip(X[:, :3] * 2 + 128, 0, 255).astype(np.uint8).reshape(-1, 1, 1, 3).repeat(4, 1).repeat(4, 2)
    np.savez(data, train_images=images, train_labels=y)
    args = ["cluster", str(data), "--features", "pixels", "--k-max", "5", "--view", "pca", "--smoothing", "0",
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "out"), "--k-criterion", "stability"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "out" / "model" / "model.json").read_text())
    assert meta["params"]["k_criterion"] == "stability"
    header = (tmp_path / "out" / "k_selection.csv").read_text().splitlines()[0]
    assert "stability" in header.split(",")
    assert "chosen by stability" in result.output
    bad = runner.invoke(app, [*args, "--out", str(tmp_path / "bad"), "--k-criterion", "gap"])
    assert bad.exit_code != 0 and "k_criterion" in bad.output


def test_too_few_images_for_stability_fall_back_to_the_silhouette(tmp_path):
    images = np.array([[[[0]]], [[[10]]], [[[250]]]], dtype=np.uint8).repeat(2, 1).repeat(2, 2)
    model = ImageClusterer(features="pixels", smoothing=0, n_components=None, whiten=False, progress=False,
                           k_criterion="stability", cache_dir=tmp_path / "cache").fit(images)  # fmt: skip
    selection = model.selection_
    assert selection.criterion == "stability" and selection.fell_back and selection.deciding == "silhouette"
    assert model.n_clusters_ == 2 and np.isnan(selection.best.score("stability"))
    assert any("too few images for the stability criterion" in n for n in selection.notes())
    loaded = ImageClusterer.load(model.save(tmp_path / "model"))
    assert loaded.selection_.fell_back and loaded.selection_.notes() == selection.notes()
