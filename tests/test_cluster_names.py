"""Named clusters: the backbone's ImageNet head names what a cluster's members share
(or says there is no common label), users rename clusters, and the names travel with
the saved model into assign, the summary and the server's answer."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images
from typer.testing import CliRunner

from pixsort.base.errors import ModelFileError
from pixsort.cli import app
from pixsort.cluster.images import ImageClusterer
from pixsort.cluster.images.names import MIN_PROB, MIN_SHARE, NO_COMMON_LABEL, describe_clusters, display_names
from pixsort.features.backbones.imagenet import IMAGENET_GROUPS, imagenet_labels
from pixsort.features.cache import EmbeddingCache
from pixsort.features.embed import PretrainedExtractor
from pixsort.features.extract import embedding_cache_dir
from pixsort.report.image_clusters import cluster_summary

runner = CliRunner()


def test_the_imagenet_vocabulary_has_1000_distinct_names_and_disjoint_groups():
    vocab = imagenet_labels()
    assert len(vocab.class_names) == 1000 and len({n.lower() for n in vocab.class_names}) == 1000
    assert vocab.class_names[281] == "tabby" and vocab.class_names[207] == "golden retriever"
    assert vocab.group_matrix.shape == (1000, len(IMAGENET_GROUPS)) and vocab.group_matrix.sum(axis=1).max() == 1
    group = {name: set(members) for name, members in IMAGENET_GROUPS.items()}
    assert 281 in group["cat"] and 207 in group["dog"] and 817 in group["car"] and 780 in group["watercraft"]


def _photos(size: int = 224) -> np.ndarray:
    """Four crops of scikit-learn's two bundled photos (a temple, a flower)."""
    crops = []
    for photo in load_sample_images().images:
        h, w = photo.shape[:2]
        for top, left in ((0, 0), (h // 3, w // 3)):
            crop = Image.fromarray(photo[top : top + h // 2, left : left + w // 2]).resize((size, size))
            crops.append(np.asarray(crop))
    return np.stack(crops)


def test_class_guesses_from_the_embedding_equal_the_backbones_own_classifier():
    extractor = PretrainedExtractor("efficientnet_lite0", layers=2, runtime="torch", precision="fp32", progress=False)
    images = _photos()
    guesses = extractor.class_guesses(extractor.transform(images))
    net = extractor.backbone_
    with torch.inference_mode():
        probs = torch.softmax(net.classify(extractor._float_batch(images, channels_last=False)), dim=1).numpy()
    np.testing.assert_array_equal(guesses.class_index, probs.argmax(axis=1))
    np.testing.assert_allclose(guesses.class_prob, probs.max(axis=1), rtol=1e-4, atol=1e-5)
    group_probs = probs @ imagenet_labels().group_matrix
    np.testing.assert_allclose(guesses.group_prob, group_probs.max(axis=1), rtol=1e-4, atol=1e-5)


def test_no_guesses_without_the_imagenet_head():
    no_head = PretrainedExtractor("efficientnet_lite0", layers=("stage7",), runtime="torch", progress=False)
    assert no_head.class_guesses(np.zeros((2, no_head.n_features_out), np.float32)) is None
    with_head = PretrainedExtractor("efficientnet_lite0", layers=2, runtime="torch", progress=False)
    with pytest.raises(ValueError, match="expected features of shape"):
        with_head.class_guesses(np.zeros((2, 7), np.float32))


def _guesses(rows: list[tuple[int, float, int, float]]) -> SimpleNamespace:
    ci, cp, gi, gp = (np.array(col) for col in zip(*rows))
    return SimpleNamespace(class_index=ci, class_prob=cp, group_index=gi, group_prob=gp)


def test_a_cluster_is_named_by_its_shared_class_else_its_group_else_no_common_label():
    vocab = imagenet_labels()
    cat, dog = list(IMAGENET_GROUPS).index("cat"), list(IMAGENET_GROUPS).index("dog")
    sure = max(MIN_PROB, 0.5)
    rows = (
        [(207, sure, dog, sure)] * 6
        + [(208, sure, dog, sure)] * 4  # cluster 0: golden retrievers
        + [(281, sure, cat, sure), (282, sure, cat, sure), (283, sure, cat, sure), (285, sure, cat, sure)] * 2
        + [(999, sure, -1, 0.0)] * 2  # cluster 1: four kinds of cat, no class shared by a quarter
        + [(281, MIN_PROB / 2, cat, MIN_PROB / 2)] * 10  # cluster 2: too unsure to vote
        + [(207, sure, dog, sure)] * 3
        + [(i, sure, dog, sure) for i in range(151, 156)]
        + [(999, sure, -1, 0.0)] * 2
    )  # fmt: skip  (cluster 3: 30% golden retrievers but 80% dogs: the group names it)
    labels = np.repeat([0, 1, 2, 3], 10)
    described = describe_clusters(_guesses(rows), labels, 4, vocab.class_names, vocab.group_names)
    assert described[3]["name"] == "dog" and described[3]["share"] == 0.8 and described[3]["classes"][0]["share"] == 0.3
    described = described[:3]
    assert described[0]["name"] == "golden retriever" and described[0]["level"] == "class"
    assert described[0]["share"] == 0.6 and described[0]["groups"][0] == {"label": "dog", "share": 1.0}
    assert described[1]["name"] == "cat" and described[1]["level"] == "group" and described[1]["share"] == 0.8
    assert all(t["share"] < MIN_SHARE for t in described[1]["classes"])
    assert described[2] == {"name": NO_COMMON_LABEL, "share": 0.0, "level": None, "classes": [], "groups": []}
    assert display_names(described) == ["golden retriever", "cat", NO_COMMON_LABEL]
    assert display_names([described[2], described[2]]) is None  # nothing shared anywhere: numbers stay
    assert display_names([described[1], described[1]]) == ["cat", "cat 2"]


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    """Two kinds of picture: crops of the temple photo and of the flower photo."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name, photo in zip(("temple", "flower"), load_sample_images().images):
        (root / name).mkdir()
        h, w = photo.shape[:2]
        for i in range(8):
            top, left = int(rng.integers(0, h // 3)), int(rng.integers(0, w // 3))
            crop = photo[top : top + 2 * h // 3, left : left + 2 * w // 3]
            Image.fromarray(crop).resize((96, 64)).save(root / name / f"{name}{i}.jpg")
    return root


@pytest.fixture(scope="module")
def named_run(photo_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("named") / "out"
    args = ["cluster", str(photo_folder), "--out", str(out), "--features", "efficientnet_lite0", "--k", "2"]
    args += ["--runtime", "torch", "--cache-dir", str(out.parent / "cache"), "--view", "pca"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def test_cluster_writes_what_the_imagenet_head_sees_in_each_cluster(named_run):
    summary = pd.read_csv(named_run / "clusters_summary.csv")
    for column in ("imagenet_name", "imagenet_share", "imagenet_classes", "imagenet_groups"):
        assert column in summary.columns
    clusterer = ImageClusterer.load(named_run / "model")
    described = clusterer.cluster_descriptions_
    assert len(described) == clusterer.n_clusters_ == 2
    for row, d in zip(summary.itertuples(), described):
        assert row.imagenet_name == d["name"] and row.imagenet_share == pytest.approx(d["share"])
        assert (d["level"] is None) == (d["name"] == NO_COMMON_LABEL)
    assert clusterer.cluster_names_ == display_names(described) and clusterer.cluster_names_ is not None
    clusters = pd.read_csv(named_run / "clusters.csv")
    want = [clusterer.cluster_names_[c] for c in clusters["cluster"]]
    assert clusters["cluster_name"].tolist() == want


def _cached_views(cache: Path, clusterer: ImageClusterer) -> int:
    return len(EmbeddingCache(embedding_cache_dir(cache), clusterer.extractor_.extractor_id))


def test_the_default_embeds_each_image_once_and_tta_adds_the_mirror_views(named_run, photo_folder):
    cache = named_run.parent / "cache"
    assert _cached_views(cache, ImageClusterer.load(named_run / "model")) == 16  # no mirror view by default
    out = named_run.parent / "with-tta"
    args = ["cluster", str(photo_folder), "--out", str(out), "--features", "efficientnet_lite0", "--k", "2", "--tta"]
    result = runner.invoke(app, [*args, "--runtime", "torch", "--cache-dir", str(cache), "--view", "pca"])
    assert result.exit_code == 0, result.output
    mirrored = ImageClusterer.load(out / "model")
    assert mirrored.tta is True and _cached_views(cache, mirrored) == 32  # the 16 mirror views added


def test_rename_clusters_from_the_edited_summary_travels_with_the_model(named_run, photo_folder, tmp_path):
    model = tmp_path / "model"
    ImageClusterer.load(named_run / "model").save(model)
    summary = pd.read_csv(named_run / "clusters_summary.csv")
    summary["name"] = ["Old town", ""]  # the second row left empty: cluster 1 keeps its name
    edited = tmp_path / "names.csv"
    summary.to_csv(edited, index=False)
    before = ImageClusterer.load(model).cluster_names_
    result = runner.invoke(app, ["rename-clusters", str(model), str(edited)])
    assert result.exit_code == 0, result.output
    renamed = ImageClusterer.load(model)
    assert renamed.cluster_names_[0] == "Old town"
    assert renamed.cluster_names_[1] == (before[1] if before else "cluster 1")
    assert renamed.cluster_descriptions_ == ImageClusterer.load(named_run / "model").cluster_descriptions_
    out = tmp_path / "assigned.csv"
    result = runner.invoke(app, ["assign", str(model), str(photo_folder / "temple"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    placed = pd.read_csv(out)
    assert placed["cluster_name"].tolist() == [renamed.cluster_names_[c] for c in placed["cluster"]]


def test_rename_clusters_refuses_bad_tables_with_a_clear_message(named_run, tmp_path):
    model = tmp_path / "model"
    ImageClusterer.load(named_run / "model").save(model)
    cases = {
        "cluster,label\n0,x\n": "no 'name' column",
        "cluster,name\n7,x\n": "cluster 7 does not exist",
        "cluster,name\nfirst,x\n": "is not a cluster number",
        "cluster,name\n0," + "x" * 200 + "\n": "printable characters",
    }
    for text, message in cases.items():
        names = tmp_path / "names.csv"
        names.write_text(text)
        result = runner.invoke(app, ["rename-clusters", str(model), str(names)])
        assert result.exit_code == 2 and message in result.output, (text, result.output)
        assert "Traceback" not in result.output
    with pytest.raises(ValueError, match="printable"):
        ImageClusterer.load(model).rename_clusters({0: "tab\there"})


def test_a_model_folder_with_the_wrong_number_of_names_is_refused(named_run, tmp_path):
    model = tmp_path / "model"
    ImageClusterer.load(named_run / "model").rename_clusters({0: "a", 1: "b"}).save(model)
    meta = json.loads((model / "model.json").read_text())
    meta["cluster_names"] = ["a", "b", "c"]
    (model / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="cluster_names"):
        ImageClusterer.load(model)


def test_pixel_features_have_no_imagenet_names(tmp_path):
    rng = np.random.default_rng(0)
    images = np.concatenate([rng.integers(0, 60, (10, 8, 8, 3)), rng.integers(190, 255, (10, 8, 8, 3))])
    clusterer = ImageClusterer(features="pixels", n_clusters=2, progress=False, cache_dir=tmp_path)
    clusterer.fit(images.astype(np.uint8))
    assert clusterer.cluster_descriptions_ is None and clusterer.cluster_names_ is None
    assert "imagenet_name" not in cluster_summary(clusterer).columns
    assert "cluster_name" not in clusterer.assignments().columns


def test_the_server_answers_with_the_clusters_names(named_run, photo_folder, tmp_path):
    from tests.test_serve_app import local_client, upload

    from pixsort.serve.app import create_app

    model = tmp_path / "model"
    ImageClusterer.load(named_run / "model").rename_clusters({0: "Old town", 1: "Garden"}).save(model)
    files = sorted((photo_folder / "flower").glob("*.jpg"))[:2] + sorted((photo_folder / "temple").glob("*.jpg"))[:2]
    with local_client(create_app(model)) as client:
        assert client.get("/model").json()["cluster_names"] == ["Old town", "Garden"]
        response = client.post("/predict", files=upload(*files))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["cluster_name"] for r in results] == [["Old town", "Garden"][r["cluster"]] for r in results]


def test_captions_give_the_share_only_beside_the_imagenet_name(named_run):
    from pixsort.report.image_clusters import cluster_caption

    clusterer = ImageClusterer.load(named_run / "model")
    named = next(c for c, d in enumerate(clusterer.cluster_descriptions_) if d["level"])
    d = clusterer.cluster_descriptions_[named]
    assert cluster_caption(clusterer, named) == (
        f"cluster {named}: {clusterer.cluster_names_[named]} ({d['share']:.0%} of its images)"
    )
    clusterer.rename_clusters({named: d["name"] + "s of mine"})  # starts like the ImageNet name
    assert cluster_caption(clusterer, named) == f"cluster {named}: {d['name']}s of mine"
