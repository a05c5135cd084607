"""The user-facing layer of image clustering: ``pixsort cluster`` / ``assign`` /
``demo``, the output folder, k selection and the scores (tiny real runs: pixel
features on a few generated or real images)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tests.conftest import shared_path
from typer.testing import CliRunner

from pixsort.cli import app

runner = CliRunner()
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
N_PER_CLASS = 6


def _make_folder(root: Path) -> Path:
    """Three visually distinct classes of noisy 12x12 colour patches, and one broken file."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(N_PER_CLASS):
            pixels = np.clip(np.array(colour)[None, None] + rng.normal(0, 12, (12, 12, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{name}{i}.png")
    (root / "red" / "broken.png").write_bytes(b"this is not an image")
    return root


def _cluster(source: Path, out: Path, cache: Path, *extra: str):
    args = [
        "cluster",
        str(source),
        "--out",
        str(out),
        "--features",
        "pixels",
        "--size",
        "12",
        "--k-max",
        "4",
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


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    folder = _make_folder(base / "images")
    out = base / "out"
    _cluster(folder, out, base / "cache", "--copy-to-folders", "copy")
    return folder, out, base / "cache"


def test_cluster_command_writes_every_output(clustered):
    folder, out, _ = clustered
    for name in [
        "clusters.csv",
        "manifest.csv",
        "clusters_summary.csv",
        "metrics.json",
        "cluster_by_class.csv",
        "k_selection.csv",
        "score_vs_k.png",
        "scatter.png",
        "scatter_thumbnails.png",
        "report.html",
        "model/model.json",
        "model/weights.safetensors",
    ]:
        assert (out / name).is_file(), name
    clusters = pd.read_csv(out / "clusters.csv")
    assert list(clusters.columns[:5]) == ["path", "cluster", "distance_to_centre", "silhouette", "representative"]
    k = clusters["cluster"].nunique()
    assert k == 3  # silhouette finds the three colours
    assert sorted(p.name for p in (out / "montages").glob("*.png")) == [f"cluster_{c}.png" for c in range(k)]
    assert len(list((out / "silhouette").glob("k*.png"))) == 3  # k = 2, 3, 4

    # every input file is either clustered or listed as skipped, with a reason
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    skipped = manifest[manifest["status"] == "skipped"]
    assert [Path(p).name for p in skipped["path"]] == ["broken.png"]
    assert skipped["reason"].str.len().gt(0).all()
    files = {str(p) for p in folder.rglob("*.png")}
    assert set(clusters["path"]) | set(skipped["path"]) == files
    assert not set(clusters["path"]) & set(skipped["path"])

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("accuracy", "nmi", "ari", "purity"):
        assert metrics[key] == pytest.approx(1.0)
    assert metrics["n_skipped"] == 1 and metrics["chosen_k"] == 3

    # one folder per cluster, holding copies of exactly its members
    for c, members in clusters.groupby("cluster"):
        copied = sorted(p.name for p in (out / "by_cluster" / f"cluster_{c}").iterdir())
        assert copied == sorted(Path(p).name for p in members["path"])
    html = (out / "report.html").read_text()
    for ref in ("score_vs_k.png", "montages/cluster_0.png", "scatter_thumbnails.png", "silhouette/k3.png"):
        assert ref in html


def test_seeded_run_is_reproducible(clustered, tmp_path):
    folder, out, cache = clustered
    _cluster(folder, tmp_path / "again", cache, "--copy-to-folders", "copy")
    assert (tmp_path / "again" / "clusters.csv").read_bytes() == (out / "clusters.csv").read_bytes()


def test_assign_places_training_images_in_their_clusters(clustered, tmp_path):
    folder, out, cache = clustered
    target = tmp_path / "assignments.csv"
    result = runner.invoke(
        app, ["assign", str(out / "model"), str(folder), "--out", str(target), "--cache-dir", str(cache)]
    )
    assert result.exit_code == 0, result.output
    placed = pd.read_csv(target, keep_default_na=False)
    fitted = pd.read_csv(out / "clusters.csv").set_index("path")["cluster"]
    ok = placed[placed["status"] == "assigned"].set_index("path")
    assert len(ok) == 3 * N_PER_CLASS
    assert (ok["cluster"].astype(int) == fitted.loc[ok.index]).all()
    # the nearest training image of a training image is (a twin of) itself: same cluster
    first = ok["nearest_paths"].str.split(";").str[0]
    assert (fitted.loc[first].to_numpy() == ok["cluster"].astype(int).to_numpy()).all()
    skipped = placed[placed["status"] == "skipped"]
    assert [Path(p).name for p in skipped["path"]] == ["broken.png"]
    assert "not_an_image" in skipped["reason"].iloc[0]


def test_assign_lists_a_broken_image_as_skipped(clustered, tmp_path):
    _, out, cache = clustered
    new = tmp_path / "new"
    new.mkdir()
    Image.fromarray(np.full((12, 12, 3), (30, 200, 40), np.uint8)).save(new / "green.png")
    (new / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    target = tmp_path / "a.csv"
    result = runner.invoke(
        app, ["assign", str(out / "model"), str(new), "--out", str(target), "--cache-dir", str(cache)]
    )
    assert result.exit_code == 0, result.output
    placed = pd.read_csv(target, keep_default_na=False).set_index("path")
    assert placed.loc[str(new / "truncated.jpg"), "status"] == "skipped"
    green = int(placed.loc[str(new / "green.png"), "cluster"])
    fitted = pd.read_csv(out / "clusters.csv")
    assert set(fitted.loc[fitted["cluster"] == green, "label"]) == {"green"}


def test_missing_path_exits_with_usage_error(tmp_path):
    result = runner.invoke(app, ["cluster", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    result = runner.invoke(app, ["assign", str(tmp_path / "nope"), str(tmp_path)])
    assert result.exit_code == 2


def test_silhouette_selection_recovers_true_k_on_blobs():
    from sklearn.datasets import make_blobs

    from pixsort.cluster.images.methods import partition
    from pixsort.cluster.images.select import select_k

    X, _ = make_blobs(n_samples=400, centers=5, n_features=8, cluster_std=0.5, center_box=(-20, 20), random_state=3)
    selection = select_k(X, range(2, 9), lambda k: partition(X, "kmeans", k, 0), sample_size=200)
    assert selection.best_k == 5
    table = selection.table()
    assert table.loc[table["chosen"], "k"].tolist() == [5]
    assert table.loc[table["k"] == 5, "davies_bouldin"].item() == table["davies_bouldin"].min()


def test_scores_match_hand_computed_case():
    from pixsort.cluster.metrics import cluster_class_table, clustering_scores

    y_true = [0, 0, 0, 1, 1, 1]
    y_pred = [1, 1, 0, 0, 0, 0]
    # contingency (cluster x class): c0 = [1, 3], c1 = [2, 0]; best match c0->1, c1->0: 5 of 6
    s = clustering_scores(y_true, y_pred)
    assert s["accuracy"] == pytest.approx(5 / 6)
    assert s["purity"] == pytest.approx(5 / 6)
    # ARI: sum C(n_ij,2) = 3 + 1 = 4; rows C(4,2)+C(2,2) = 7; cols 3+3 = 6; C(6,2) = 15
    expected = 7 * 6 / 15
    assert s["ari"] == pytest.approx((4 - expected) / ((7 + 6) / 2 - expected))
    mi = 1 / 6 * math.log(0.5) + 0.5 * math.log(1.5) + 1 / 3 * math.log(2)
    h_true = math.log(2)
    h_pred = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert s["nmi"] == pytest.approx(mi / ((h_true + h_pred) / 2))
    table = cluster_class_table(y_true, y_pred, ["cat", "dog"])
    assert table.loc[0, ["cat", "dog", "total", "matched_class"]].tolist() == [1, 3, 4, "dog"]
    assert table.loc[1, "matched_class"] == "cat"


def test_scores_permutation_noise_and_unlabeled():
    from pixsort.cluster.metrics import clustering_scores

    perfect = clustering_scores([0, 0, 1, 1, 2, 2], [2, 2, 0, 0, 1, 1])
    assert [perfect[k] for k in ("accuracy", "nmi", "ari", "purity")] == pytest.approx([1, 1, 1, 1])
    # noise (-1) is never matched to a class; unlabeled items (-1 true) are ignored
    s = clustering_scores([0, 0, 1, 1, -1], [-1, 0, 1, 1, 0])
    assert s["accuracy"] == pytest.approx(3 / 4)
    assert s["purity"] == pytest.approx(3 / 4)
    assert s["n_labeled"] == 4
    # more clusters than classes: the extra cluster's items count as errors
    assert clustering_scores([0, 0, 0, 1], [0, 0, 2, 1])["accuracy"] == pytest.approx(3 / 4)


def test_demo_writes_the_digits_once(tmp_path):
    from pixsort.workflows.demo import N_DIGITS, write_digits

    root = write_digits(tmp_path / "digits")
    files = sorted(root.glob("*/*.png"))
    assert len(files) == N_DIGITS
    assert sorted(p.name for p in root.iterdir()) == [str(d) for d in range(10)]
    with Image.open(files[0]) as im:
        assert im.size == (8, 8) and im.mode == "L"
    stamp = files[0].stat().st_mtime_ns
    write_digits(root)
    assert files[0].stat().st_mtime_ns == stamp  # kept, not rewritten


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "clusters" / "report.html").is_file()
    metrics = json.loads((tmp_path / "clusters" / "metrics.json").read_text())
    assert metrics["n_images"] == 1797
    assert metrics["accuracy"] > 0.5  # k-means on digit pixels is far above chance (0.1)
    assert "Report:" in result.output


def test_cluster_a_real_cifar10_slice(tmp_path):
    from pixsort.cluster.metrics import hungarian_accuracy

    source = shared_path("cifar10_sample", "train")
    folder = tmp_path / "cifar"
    for cls in ("airplane", "frog", "ship"):
        files = sorted((source / cls).glob("*.jpg"))[:10]
        if len(files) < 10:
            pytest.skip(f"cifar10_sample lacks class {cls}")
        (folder / cls).mkdir(parents=True)
        for f in files:
            (folder / cls / f.name).symlink_to(f)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "cluster",
            str(folder),
            "--out",
            str(out),
            "--features",
            "pixels",
            "--k",
            "3",
            "--score",
            "--view",
            "pca",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    clusters = pd.read_csv(out / "clusters.csv")
    assert len(clusters) == 30 and clusters["cluster"].nunique() == 3
    metrics = json.loads((out / "metrics.json").read_text())
    classes = clusters["label"].astype("category").cat.codes.to_numpy()
    assert metrics["accuracy"] == pytest.approx(hungarian_accuracy(classes, clusters["cluster"].to_numpy()))
    assert "selection" not in metrics and "chosen_k" not in metrics  # k was given


def test_an_output_folder_inside_the_input_is_never_clustered(tmp_path):
    """``pixsort cluster D --out D/results`` twice: the second run sees the same images, not its own output."""
    folder = _make_folder(tmp_path / "images")
    out = folder / "results"
    _cluster(folder, out, tmp_path / "cache", "--copy-to-folders", "copy")
    first = pd.read_csv(out / "manifest.csv")
    _cluster(folder, out, tmp_path / "cache", "--copy-to-folders", "copy")
    second = pd.read_csv(out / "manifest.csv")
    assert not second["path"].str.contains("/results/").any()
    assert sorted(second["path"]) == sorted(first["path"]) and len(second) == 3 * N_PER_CLASS + 1


def test_open_dataset_excludes_named_folders(tmp_path):
    from pixsort.data import open_dataset

    folder = _make_folder(tmp_path / "images")
    Image.new("RGB", (12, 12)).save(folder / "red" / "plot.png")
    (folder / "red" / "out").mkdir()
    Image.new("RGB", (12, 12)).save(folder / "red" / "out" / "thumb.png")
    paths = open_dataset(folder, exclude=[folder / "red" / "out"]).paths
    assert str(folder / "red" / "plot.png") in paths and not any("/out/" in p for p in paths)


def test_cluster_folders_from_an_earlier_run_are_replaced_not_merged(tmp_path):
    import pandas as pd

    from pixsort.report.image_clusters import copy_into_cluster_folders

    files = []
    for i in range(6):
        path = tmp_path / "src" / f"img{i}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x" * (i + 1))
        files.append(str(path))
    root = tmp_path / "out" / "by_cluster"
    root.mkdir(parents=True)
    (root / "notes.txt").write_text("mine")  # not pixsort's: stays
    (root / "cluster_7").mkdir()  # an old-style folder (before the list) of plain copies: removed
    (root / "cluster_7" / "old.png").write_bytes(b"old")
    (root / "cluster_8").mkdir()  # holds a folder of the user's: not pixsort's, stays
    (root / "cluster_8" / "keep").mkdir()

    copy_into_cluster_folders(pd.DataFrame({"path": files, "cluster": [0, 1, 2, 3, 4, -1]}), root, "copy")
    assert {p.name for p in root.iterdir() if p.is_dir()} == {f"cluster_{c}" for c in range(5)} | {"noise", "cluster_8"}
    copy_into_cluster_folders(pd.DataFrame({"path": files, "cluster": [0, 1, 0, 1, 0, 1]}), root, "link")
    assert {p.name for p in root.iterdir() if p.is_dir()} == {"cluster_0", "cluster_1", "cluster_8"}
    assert sorted(p.name for p in (root / "cluster_0").iterdir()) == ["img0.png", "img2.png", "img4.png"]
    assert all(p.is_symlink() for p in (root / "cluster_1").iterdir())
    assert (root / "notes.txt").read_text() == "mine" and (root / "cluster_8" / "keep").is_dir()
