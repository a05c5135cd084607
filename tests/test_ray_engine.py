"""The Ray engine (``--engine ray``) against the local one: the same embeddings (within
float32 tolerance), the same clusters, the same assignments, every input in the results
or the skipped list with the same reason; a worker killed mid-run is retried and the
result is complete; asking for Ray where it is not installed is one clear error.

A local Ray starts inside this module (``ray.init(num_cpus=2)``); no outside service.
The tests that need Ray skip where the ``pixsort[ray]`` extra is not installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from pixsort.cli import app
from pixsort.data import open_dataset
from pixsort.features.cache import EmbeddingCache
from pixsort.features.extract import FeatureSpec, build_extractor, default_decode_settings, embedding_cache_dir
from pixsort.workflows import assign_images, cluster_images, embed_images
from synthetic import pattern_groups, pattern_image, write_broken_files, write_class_folders

runner = CliRunner()
N_PER_GROUP = 8


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """3 groups of distinct patterns (PNG and JPEG, sizes varied) and broken files:
    not an image, a truncated PNG, an empty file."""
    root = tmp_path_factory.mktemp("ray-data")
    groups = dict.fromkeys(("red", "green", "blue"), N_PER_GROUP)
    written = write_class_folders(
        root, groups, lambda c, i, hw, rng: pattern_image(c, hw, rng), grey_every=0, broken="notes.png"
    )
    write_broken_files(root / "red", good=written["red"][0])
    (root / "green" / "empty.png").write_bytes(b"")
    # a file name that is not UTF-8 (Python holds it with surrogates, which Arrow strings cannot)
    pixels = pattern_image(2, (24, 24), np.random.default_rng(7))
    Image.fromarray(pixels).save(root / "blue" / os.fsdecode(b"caf\xe9.png"), format="PNG")
    return root


def skipped(items: pd.DataFrame) -> dict[str, str]:
    rows = items[items["status"] != "loaded"]
    return dict(zip(rows["path"].astype(str), rows["reason"].astype(str)))


def shard_files(cache: Path) -> set[Path]:
    return set((cache / "embeddings").rglob("*.npy"))


# ----------------------------------------------------------------------------- embed


@pytest.fixture(scope="module")
def ray_pixels(ray_cluster, folder, tmp_path_factory):
    """The pixels set of ``folder`` embedded by the Ray engine, and its cache."""
    work = tmp_path_factory.mktemp("ray-pixels")
    cache = work / "cache"
    run = embed_images(folder, work / "set", features="pixels", cache_dir=cache, progress=False, engine="ray")
    return run, cache, shard_files(cache)


@pytest.mark.parametrize("features", ["pixels", pytest.param("efficientnet_lite0", marks=pytest.mark.slow)])
def test_embed_gives_the_local_engines_set(ray_cluster, ray_pixels, folder, tmp_path, features):
    local = embed_images(folder, tmp_path / "local", features=features, cache_dir=tmp_path / "c1", progress=False)
    if features == "pixels":
        remote = ray_pixels[0]
    else:  # a backbone: float32 sums in other batches, equal within float32 tolerance
        remote = embed_images(
            folder, tmp_path / "ray", features=features, cache_dir=tmp_path / "c2", progress=False, engine="ray"
        )
    a, b = local.embeddings, remote.embeddings
    assert remote.decoded is None  # the Ray workers decoded the images, not this process
    assert a.vectors.shape == b.vectors.shape and len(a) == 3 * N_PER_GROUP + 1
    np.testing.assert_allclose(b.vectors, a.vectors, rtol=1e-4, atol=1e-5)  # float32 tolerance
    pd.testing.assert_frame_equal(a.items, b.items)  # paths, rows, status, reasons, sizes, content hashes
    assert a.meta["extractor_id"] == b.meta["extractor_id"] and a.meta["decode"] == b.meta["decode"]
    # nothing lost: every input is a row, loaded or skipped with the local engine's reason
    reasons = skipped(b.items)
    assert len(b.items) == len(open_dataset(folder)) == len(a) + len(reasons)
    assert {Path(p).name for p in reasons} == {"notes.png", "corrupt.jpeg", "truncated.png", "empty.png"}
    assert os.fsdecode(b"caf\xe9.png") in {Path(p).name for p in b.paths}  # a name that is not UTF-8, whole
    assert reasons == skipped(a.items)


@pytest.mark.slow
def test_array_sources_give_the_local_engines_set(ray_cluster, tmp_path):
    """.npz items travel to the Ray tasks as arrays and are converted as the local engine does."""
    images, labels = pattern_groups(6, size=16)
    np.savez(tmp_path / "set.npz", train_images=images, train_labels=labels)
    options = dict(features="pixels", progress=False)
    local = embed_images(tmp_path / "set.npz", tmp_path / "local", cache_dir=tmp_path / "c1", **options)
    remote = embed_images(tmp_path / "set.npz", tmp_path / "ray", cache_dir=tmp_path / "c2", engine="ray", **options)
    np.testing.assert_array_equal(remote.embeddings.vectors, local.embeddings.vectors)
    pd.testing.assert_frame_equal(remote.embeddings.items, local.embeddings.items)


def test_the_ray_engine_fills_the_local_store(ray_pixels, folder, tmp_path):
    """The vectors live in the content-keyed store: a later local run there computes nothing."""
    remote, cache, shards = ray_pixels
    assert shards  # written by the Ray actors
    store = EmbeddingCache(embedding_cache_dir(cache), remote.embeddings.meta["extractor_id"])
    assert len(store) == len(remote.embeddings)  # one entry per loaded image, under the local engine's keys
    local = embed_images(folder, tmp_path / "local", features="pixels", cache_dir=cache, progress=False)
    assert shard_files(cache) == shards  # warm: no new shard
    np.testing.assert_array_equal(local.embeddings.vectors, remote.embeddings.vectors)


def test_a_warm_ray_run_decodes_no_pixel(ray_pixels, folder, tmp_path):
    """Files whose features are stored are hashed and their headers read, not decoded; the
    run gives the same set, with the same entries, and adds no shard."""
    from pixsort.base.engines import ray_session
    from pixsort.data.ray_source import PIXELS_COLUMN, decoded_images, iter_batches
    from pixsort.features.ray_embed import StoredKeys

    remote, cache, shards = ray_pixels
    warm = embed_images(folder, tmp_path / "warm", features="pixels", cache_dir=cache, progress=False, engine="ray")
    pd.testing.assert_frame_equal(warm.embeddings.items, remote.embeddings.items)
    np.testing.assert_array_equal(warm.embeddings.vectors, remote.embeddings.vectors)
    assert shard_files(cache) == shards

    spec = FeatureSpec("pixels")
    settings = default_decode_settings(spec)
    known = StoredKeys(remote.embeddings.meta["extractor_id"], spec, str(cache.resolve()), settings.to_dict())
    with ray_session():
        batches = list(iter_batches(decoded_images(open_dataset(folder), settings, known)))
        full = list(iter_batches(decoded_images(open_dataset(folder), settings)))
    rows = {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}
    cold = {name: np.concatenate([b[name] for b in full]) for name in full[0]}
    loaded = rows["loaded"].astype(bool)
    assert loaded.sum() == len(remote.embeddings) and not rows[PIXELS_COLUMN].any()
    assert not rows["image"].any()  # no pixel decoded
    assert cold[PIXELS_COLUMN][loaded].all() and cold["image"][loaded].any()
    for name in ("index", "key", "loaded", "reason", "width", "height", "mode", "format"):
        assert rows[name].tolist() == cold[name].tolist(), name  # the header says what the decoder said


# ----------------------------------------------------------------------------- cluster and assign


def test_cluster_and_assign_agree_with_the_local_engine(ray_cluster, folder, tmp_path):
    options = dict(features="pixels", n_clusters=3, view="pca", smoothing=0, progress=False)
    local = cluster_images(folder, tmp_path / "local", cache_dir=tmp_path / "c1", **options)
    remote = cluster_images(folder, tmp_path / "ray", cache_dir=tmp_path / "c2", engine="ray", **options)
    assert (tmp_path / "ray" / "embeddings" / "store.json").is_file()  # fitted here from the set Ray wrote
    a, b = local.clusterer, remote.clusterer
    assert a.train_paths_ == b.train_paths_
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert len(set(a.labels_.tolist())) == 3
    assert local.metrics["n_skipped"] == remote.metrics["n_skipped"] == 4

    model = tmp_path / "local" / "model"
    here = assign_images(model, folder, tmp_path / "a1.csv", cache_dir=tmp_path / "c3", progress=False)
    there = assign_images(model, folder, tmp_path / "a2.csv", progress=False, engine="ray")
    pd.testing.assert_frame_equal(here, there)
    assert len(there) == len(open_dataset(folder))  # every input: assigned or skipped with its reason
    assert (there["status"] == "skipped").sum() == 4 and there.loc[there["status"] == "skipped", "reason"].all()


# ----------------------------------------------------------------------------- a killed worker


def test_a_worker_killed_mid_run_is_retried_and_the_result_is_complete(ray_cluster, folder, tmp_path):
    from pixsort.base.engines import ray_session
    from pixsort.features.ray_embed import EmbedBatches, embed_with_ray

    marker = tmp_path / "killed-once"

    class DiesOnce(EmbedBatches):  # pickled by value into the actors (a local class)
        def __call__(self, batch):
            if not os.path.exists(marker):
                marker.write_text(str(os.getpid()))
                os._exit(1)  # the actor's process dies mid-batch, as a crash or an OOM kill would
            return super().__call__(batch)

    spec = FeatureSpec("pixels")
    settings = default_decode_settings(spec)
    dataset = open_dataset(folder)
    extractor = build_extractor(spec, progress=False, size=settings.size)
    with ray_session():
        made = embed_with_ray(dataset, spec, extractor, settings, tmp_path / "cache", actor_class=DiesOnce)
    assert marker.is_file()  # an actor did die
    assert int(marker.read_text()) != os.getpid()
    local = embed_images(folder, tmp_path / "local", features="pixels", cache_dir=tmp_path / "c2", progress=False)
    assert len(made.manifest) == len(dataset)
    columns = ["path", "status", "reason", "content_hash"]
    assert made.manifest[columns].astype(str).equals(local.embeddings.items[columns].astype(str))
    np.testing.assert_array_equal(made.vectors(), local.embeddings.vectors)


# ----------------------------------------------------------------------------- without Ray


@pytest.mark.parametrize("command", ["embed", "cluster", "assign"])
def test_asking_for_ray_without_ray_is_one_clear_error(folder, tmp_path, monkeypatch, command):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    args = {
        "embed": ["embed", str(folder), "--out", str(tmp_path / "out")],
        "cluster": ["cluster", str(folder), "--out", str(tmp_path / "out"), "--features", "pixels"],
        "assign": ["assign", str(tmp_path / "fitted" / "model"), str(folder), "--out", str(tmp_path / "a.csv")],
    }[command]
    if command == "assign":  # a real model, so the engine is what fails
        cluster_images(folder, tmp_path / "fitted", features="pixels", n_clusters=3, view="pca", progress=False)
    result = runner.invoke(app, [*args, "--engine", "ray"])
    assert result.exit_code == 2, result.output
    assert "pip install 'pixsort[ray]'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "store.json").exists() and not (tmp_path / "a.csv").exists()


def test_a_ray_address_without_the_ray_engine_is_a_clear_error(folder, tmp_path):
    result = runner.invoke(app, ["embed", str(folder), "--out", str(tmp_path / "o"), "--ray-address", "auto"])
    assert result.exit_code == 2 and "--engine ray" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["embed", str(folder), "--out", str(tmp_path / "o"), "--engine", "spark"])
    assert result.exit_code == 2 and "local, ray" in result.output
