"""``pixsort embed`` as its own step: an embedding set readable with NumPy and pandas,
clustered later without the images giving the clusters of a direct run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tests.synthetic import blob_image, write_class_folders
from typer.testing import CliRunner

from pixsort.cli import app
from pixsort.features.store import EmbeddingSetError, read_embedding_set
from pixsort.workflows import cluster_images, embed_images


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("blobs")
    write_class_folders(
        root, {"a": 14, "b": 14, "c": 14}, lambda c, i, hw, rng: blob_image(c, hw, rng, 3), broken="x.png"
    )
    return root


def test_embed_writes_a_set_numpy_and_pandas_can_read(folder, tmp_path):
    run = embed_images(folder, tmp_path / "set", features="pixels", cache_dir=tmp_path / "cache", progress=False)
    vectors = np.load(tmp_path / "set" / "vectors.npy", mmap_mode="r")
    items = pd.read_csv(tmp_path / "set" / "items.csv")
    meta = json.loads((tmp_path / "set" / "store.json").read_text())
    assert vectors.shape == (42, 32 * 32 * 3) and vectors.dtype == np.float32
    assert len(items) == 43  # every input file: 42 images and the broken one
    broken = items[items["status"] == "skipped"]
    assert broken["path"].str.endswith("x.png").all() and len(broken) == 1 and broken["row"].isna().all()
    loaded = items[items["status"] == "loaded"]
    assert sorted(loaded["row"].astype(int)) == list(range(42))
    assert meta["features"]["name"] == "pixels" and meta["class_names"] == ["a", "b", "c"]
    assert run.embeddings.labels.tolist().count(0) == 14


def test_clustering_a_set_equals_clustering_the_images(folder, tmp_path):
    cache = tmp_path / "cache"
    common = dict(features="pixels", n_clusters=3, progress=False, cache_dir=cache, view="pca")
    direct = cluster_images(folder, tmp_path / "direct", **common)
    embed_images(folder, tmp_path / "set", features="pixels", cache_dir=cache, progress=False)
    common.pop("features")
    stored = cluster_images(None, tmp_path / "stored", embeddings=tmp_path / "set", **common)
    np.testing.assert_array_equal(stored.clusterer.labels_, direct.clusterer.labels_)
    assert stored.clusterer.train_paths_ == direct.clusterer.train_paths_
    a = pd.read_csv(tmp_path / "direct" / "clusters.csv")
    b = pd.read_csv(tmp_path / "stored" / "clusters.csv")
    pd.testing.assert_frame_equal(a, b)
    assert (tmp_path / "stored" / "montages" / "cluster_0.png").stat().st_size > 1000  # images read from the paths
    assert stored.metrics["accuracy"] == direct.metrics["accuracy"]


def test_a_set_is_refused_for_other_features_and_when_damaged(folder, tmp_path):
    from pixsort.cluster.images import ImageClusterer

    embed_images(folder, tmp_path / "set", features="pixels", cache_dir=tmp_path / "cache", progress=False)
    store = read_embedding_set(tmp_path / "set")
    with pytest.raises(ValueError, match="holds features='pixels'"):
        ImageClusterer(features="efficientnet_lite0").fit(store)
    vectors = tmp_path / "set" / "vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[-3] ^= 0x10
    vectors.write_bytes(bytes(data))
    with pytest.raises(EmbeddingSetError, match="checksum"):
        read_embedding_set(tmp_path / "set")
    with pytest.raises(EmbeddingSetError, match="pixsort embed"):
        read_embedding_set(tmp_path)


def test_cli_embed_then_cluster_embeddings(folder, tmp_path):
    runner = CliRunner()
    cache = str(tmp_path / "cache")
    res = runner.invoke(app, ["embed", str(folder), "--out", str(tmp_path / "set"), "--features", "pixels",
                              "--cache-dir", cache])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "42 images embedded (1 skipped)" in res.output
    res = runner.invoke(app, ["cluster", "--embeddings", str(tmp_path / "set"), "--out", str(tmp_path / "c"),
                              "--k", "3", "--view", "pca", "--score", "--cache-dir", cache])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "42 images" in res.output and "accuracy" in res.output
    res = runner.invoke(app, ["cluster", "--embeddings", str(tmp_path / "set"), "--out", str(tmp_path / "d"),
                              "--features", "efficientnet_lite0"])  # fmt: skip
    assert res.exit_code == 2 and "--embeddings sets the features" in res.output
    res = runner.invoke(app, ["cluster", "--out", str(tmp_path / "e")])
    assert res.exit_code == 2 and "either PATH or --embeddings" in res.output
