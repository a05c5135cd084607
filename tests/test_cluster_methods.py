"""Image clustering with every partition method and the SCAN head, end to end on
synthetic groups (no ../shared needed): ``pixsort cluster --method agglomerative |
hdbscan | spectral`` and ``--head scan`` through the CLI, and ``ImageClusterer(head="scan")``
placing new images.

The data: three groups (red stripes, green checks, blue rings; noise sd 20 and a
brightness offset per image) as PNG and JPEG files of 16 to 32 px in class folders,
plus a broken file.  With pixel features every method recovers the groups exactly
(accuracy = ARI = 1.0 when measured); the thresholds below leave a margin.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pixsort.cli import app
from pixsort.cluster.images import ImageClusterer
from synthetic import PATTERN_GROUPS, pattern_groups, pattern_image, write_class_folders

runner = CliRunner()
N_PER_GROUP = 40


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small trainings: one torch thread (conftest)


def _write_groups(root: Path, n_per_group: int, seed: int = 0) -> dict[str, list[Path]]:
    return write_class_folders(
        root,
        dict.fromkeys(PATTERN_GROUPS, n_per_group),
        lambda c, i, hw, rng: pattern_image(c, hw, rng),
        base_size=20,
        grey_every=0,
        broken="broken.png",
        seed=seed,
    )


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    """(folder, files per group, cache folder): 3 x 40 images and red_stripes/broken.png."""
    base = tmp_path_factory.mktemp("groups")
    return base / "images", _write_groups(base / "images", N_PER_GROUP), base / "cache"


def _cluster(folder: Path, out: Path, cache: Path, *extra: str):
    args = [
        "cluster",
        str(folder),
        "--out",
        str(out),
        "--features",
        "pixels",
        "--size",
        "16",
        "--score",
        "--view",
        "pca",
        "--seed",
        "0",
        "--cache-dir",
        str(cache),
        *extra,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def _check_outputs(out: Path, files: dict[str, list[Path]], method: str) -> tuple[pd.DataFrame, dict]:
    """The outputs every run writes; returns clusters.csv and metrics.json."""
    for name in (
        "clusters.csv",
        "manifest.csv",
        "clusters_summary.csv",
        "metrics.json",
        "cluster_by_class.csv",
        "report.html",
        "scatter.png",
        "model/model.json",
        "model/weights.safetensors",
    ):
        assert (out / name).is_file(), name
    clusters = pd.read_csv(out / "clusters.csv", keep_default_na=False)
    written = {str(p) for paths in files.values() for p in paths}
    assert len(clusters) == len(written) and set(clusters["path"]) == written  # one row per readable image
    assert (clusters["label"] == clusters["path"].map(lambda p: Path(p).parent.name)).all()
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    skipped = manifest[manifest["status"] == "skipped"]
    assert [Path(p).name for p in skipped["path"]] == ["broken.png"] and skipped["reason"].str.len().gt(0).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["n_images"] == len(written) and metrics["n_skipped"] == 1
    found = sorted(set(clusters["cluster"].astype(int)) - {-1})
    assert found == list(range(metrics["n_clusters"]))
    assert sorted(p.name for p in (out / "montages").glob("*.png")) == sorted(f"cluster_{c}.png" for c in found)
    html = (out / "report.html").read_text()
    assert "montages/cluster_0.png" in html and "scatter.png" in html
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["kind"] == "clusterer" and meta["params"]["method"] == method
    assert meta["n_clusters"] == metrics["n_clusters"]
    return clusters, metrics


def _check_assign_round_trip(out: Path, folder: Path, cache: Path, clusters: pd.DataFrame, tmp_path: Path) -> None:
    """The saved model places the training images in their own clusters (nearest training image)."""
    target = tmp_path / "assignments.csv"
    result = runner.invoke(
        app, ["assign", str(out / "model"), str(folder), "--out", str(target), "--cache-dir", str(cache)]
    )
    assert result.exit_code == 0, result.output
    placed = pd.read_csv(target, keep_default_na=False)
    ok = placed[placed["status"] == "assigned"].set_index("path")
    fitted = clusters.set_index("path")["cluster"].astype(int)
    assert len(ok) == len(fitted)
    assert (ok["cluster"].astype(int) == fitted.loc[ok.index]).all()


@pytest.mark.filterwarnings("ignore:Graph is not fully connected")  # spectral: the groups are that far apart
@pytest.mark.parametrize(
    "method, extra, chosen_k",
    [
        ("agglomerative", [], 3),  # k chosen by silhouette over 2..10
        ("agglomerative", ["--k", "3"], None),
        ("spectral", ["--k", "3"], None),
    ],
)
def test_cluster_method_recovers_the_groups(groups, tmp_path, method, extra, chosen_k):
    folder, files, cache = groups
    out = tmp_path / "out"
    _cluster(folder, out, cache, "--method", method, *extra)
    clusters, metrics = _check_outputs(out, files, method)
    assert metrics["n_clusters"] == 3 and metrics.get("chosen_k") == chosen_k
    assert metrics["accuracy"] >= 0.95 and metrics["ari"] >= 0.9  # measured: 1.0 and 1.0
    assert (clusters["cluster"] >= 0).all()  # only HDBSCAN has noise
    # each group is (almost all) one cluster
    table = pd.crosstab(clusters["label"], clusters["cluster"])
    assert (table.max(axis=1) >= 0.95 * N_PER_GROUP).all() and table.idxmax(axis=1).nunique() == 3
    if chosen_k is not None:
        assert (out / "k_selection.csv").is_file() and (out / "silhouette" / "k3.png").is_file()
    _check_assign_round_trip(out, folder, cache, clusters, tmp_path)


def test_hdbscan_without_smoothing_finds_the_three_groups(groups, tmp_path):
    folder, files, cache = groups
    out = tmp_path / "out"
    _cluster(folder, out, cache, "--method", "hdbscan", "--smoothing", "0")
    clusters, metrics = _check_outputs(out, files, "hdbscan")
    assert metrics["n_clusters"] == 3 and "chosen_k" not in metrics  # found, not chosen
    assert metrics["accuracy"] >= 0.95 and metrics["ari"] >= 0.9  # measured: 1.0 and 1.0
    assert metrics["internal"]["n_noise"] == int((clusters["cluster"] == -1).sum())


def test_hdbscan_with_default_smoothing_splits_groups_into_pure_clusters_and_marks_noise(groups, tmp_path):
    """With the default neighbour smoothing HDBSCAN splits each group into tight pieces
    (13 clusters and 6 noise images when measured), so the stated property is looser:
    no cluster mixes two groups, every group is found, noise is -1 and reported as such."""
    folder, files, cache = groups
    out = tmp_path / "out"
    _cluster(folder, out, cache, "--method", "hdbscan")
    clusters, metrics = _check_outputs(out, files, "hdbscan")
    clusters["cluster"] = clusters["cluster"].astype(int)
    kept = clusters[clusters["cluster"] >= 0]
    assert metrics["n_clusters"] >= 3
    assert (kept.groupby("cluster")["label"].nunique() == 1).all()  # every cluster is pure
    assert set(kept["label"]) == set(PATTERN_GROUPS)
    noise = clusters[clusters["cluster"] == -1]
    assert metrics["internal"]["n_noise"] == len(noise) and 0 < len(noise) <= 0.2 * len(clusters)
    # noise rows carry no centre distance or silhouette and are never representatives
    assert (noise["distance_to_centre"] == "").all() and (noise["silhouette"] == "").all()
    assert not noise["representative"].astype(str).eq("True").any()
    assert (kept["distance_to_centre"] != "").all()
    summary = pd.read_csv(out / "clusters_summary.csv", keep_default_na=False)
    assert summary["cluster"].astype(str).tolist()[-1] == "noise"
    assert int(summary["size"].iloc[-1]) == len(noise)
    assert metrics["purity"] == pytest.approx(1 - len(noise) / len(clusters))  # noise counts as wrong
    _check_assign_round_trip(out, folder, cache, clusters, tmp_path)


@pytest.fixture(scope="module")
def large_groups(tmp_path_factory):
    """3 x 300 images: the SCAN head trains epochs x ceil(n / 256) steps and needs
    about 900 images to move away from its initialisation (see the xfail below)."""
    base = tmp_path_factory.mktemp("large_groups")
    return base / "images", _write_groups(base / "images", 300, seed=1), base / "cache"


def test_cluster_with_scan_head_recovers_the_groups(large_groups, tmp_path):
    folder, files, cache = large_groups
    out = tmp_path / "out"
    _cluster(folder, out, cache, "--head", "scan", "--k", "3")
    clusters, metrics = _check_outputs(out, files, "kmeans")
    assert metrics["params"]["head"] == "scan" and metrics["n_clusters"] == 3
    assert metrics["accuracy"] >= 0.95 and metrics["ari"] >= 0.9  # measured: 1.0 and 1.0
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["head"] is not None and meta["head"]["n_clusters"] == 3


def _majority_cluster_of_each_group(labels: np.ndarray, groups: np.ndarray) -> dict[int, int]:
    return {int(g): int(np.bincount(labels[groups == g]).argmax()) for g in np.unique(groups)}


def test_scan_head_places_new_images_in_the_cluster_of_their_group(tmp_path):
    X, y = pattern_groups(300, size=16, seed=0)
    clusterer = ImageClusterer(
        features="pixels", head="scan", n_clusters=3, cache_dir=tmp_path / "cache", progress=False, random_state=0
    ).fit(X, y)
    assert clusterer.head_ is not None and clusterer.n_clusters_ == 3
    assert clusterer.score()["accuracy"] >= 0.95  # measured: 1.0
    cluster_of = _majority_cluster_of_each_group(clusterer.labels_, y)
    assert len(set(cluster_of.values())) == 3

    new, new_groups = pattern_groups(15, size=16, seed=7)  # unseen images of the same groups
    expected = np.array([cluster_of[int(g)] for g in new_groups])
    np.testing.assert_array_equal(clusterer.predict(new), expected)
    assert (clusterer.transform(new).argmin(axis=1) == expected).mean() >= 0.95  # and near that centre
    np.testing.assert_array_equal(clusterer.assign(new, n_neighbors=0).clusters, expected)

    reloaded = ImageClusterer.load(clusterer.save(tmp_path / "model"))
    assert reloaded.head_ is not None
    np.testing.assert_array_equal(reloaded.predict(new), expected)


@pytest.mark.xfail(
    strict=True,
    reason="the SCAN head makes epochs x ceil(n/256) = 40 Adam steps (lr 1e-3) on 120 "
    "images and stays near its initialisation: 2 clusters found, accuracy 0.67",
)
def test_scan_head_recovers_three_groups_of_forty(tmp_path):
    X, y = pattern_groups(N_PER_GROUP, size=16, seed=0)
    clusterer = ImageClusterer(
        features="pixels", head="scan", n_clusters=3, cache_dir=tmp_path / "cache", progress=False
    ).fit(X, y)
    assert clusterer.n_clusters_ == 3 and clusterer.score()["accuracy"] >= 0.95
