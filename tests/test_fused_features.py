"""Fused features: backbones joined by ``+`` embed side by side, through one cache entry
per image, name clusters by their mean class probabilities, and travel with a saved
model into assign."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from tests.synthetic import blob_image, write_class_folders
from typer.testing import CliRunner

from pixsort.cli import app
from pixsort.cluster.images import ImageClusterer
from pixsort.features.embed import PretrainedExtractor
from pixsort.features.extract import FeatureSpec, check_feature_name, default_decode_settings, extractor_from_config
from pixsort.features.fused import FusedExtractor
from pixsort.features.names import parse_feature_name

PAIR = ["efficientnet_lite0", "efficientnet_lite1"]
SMALL = 64  # px: the networks run on any input of 16 px and more; small keeps the tests fast


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([blob_image(i % 3, (40, 40), rng, 3) for i in range(9)])


def _part(name: str) -> PretrainedExtractor:
    return PretrainedExtractor(name, layers=2, input_size=SMALL, runtime="torch", precision="fp32", progress=False)


def _fused(**kw) -> FusedExtractor:
    return FusedExtractor(PAIR, layers=2, input_size=SMALL, runtime="torch", precision="fp32", progress=False, **kw)


def test_the_grammar_joins_pretrained_backbones_with_plus():
    parsed = parse_feature_name("efficientnet_lite0+efficientnet_lite2")
    assert parsed.kind == "fused" and parsed.parts == ("efficientnet_lite0", "efficientnet_lite2")
    assert parsed.is_pretrained
    assert parse_feature_name("timm:resnet18+efficientnet_lite0").parts == ("timm:resnet18", "efficientnet_lite0")
    for bad, message in [
        ("efficientnet_lite0+efficientnet_lite0", "twice"),
        ("pixels+efficientnet_lite0", "pretrained backbone"),
        ("efficientnet_lite0+", "pretrained backbone"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_feature_name(bad)
    with pytest.raises(ValueError, match="unknown backbone"):
        check_feature_name("efficientnet_lite0+efficientnet_lite9")


def test_decode_size_is_the_asked_input_or_the_largest_backbones():
    assert default_decode_settings(FeatureSpec("efficientnet_lite0+efficientnet_lite2")).hw == (260, 260)
    assert default_decode_settings(FeatureSpec("efficientnet_lite0+efficientnet_lite2", input_size=160)).hw == (
        160,
        160,
    )


def test_fused_features_are_the_backbones_features_side_by_side(images):
    fused = _fused()
    out = fused.transform(images)
    parts = [_part(name).transform(images) for name in PAIR]
    np.testing.assert_array_equal(out, np.concatenate(parts, axis=1))
    assert fused.feature_blocks == [320, 1280, 320, 1280] and fused.n_features_out == out.shape[1]
    assert fused.extractor_id.count("PretrainedExtractor/") == 2 and "efficientnet_lite1" in fused.extractor_id


def test_one_cache_entry_per_image_and_misses_only_are_computed(images, tmp_path, monkeypatch):
    fused = _fused()
    keys = [f"image{i}" for i in range(len(images))]
    first = fused.transform(images[:6], keys=keys[:6], cache_dir=tmp_path)
    calls = []
    original = PretrainedExtractor._extract
    monkeypatch.setattr(PretrainedExtractor, "_extract", lambda self, x: calls.append(len(x)) or original(self, x))
    again = fused.transform(images, keys=keys, cache_dir=tmp_path)
    assert calls == [3, 3]  # each backbone ran on the three new images only
    np.testing.assert_array_equal(again[:6], first)
    np.testing.assert_allclose(again[6:], _fused().transform(images[6:]), rtol=1e-5, atol=1e-6)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1  # one store: the fused configuration's


def test_class_guesses_are_the_mean_of_the_backbones_probabilities(images):
    fused = _fused()
    guesses = fused.class_guesses(fused.transform(images))
    probs = 0
    for name in PAIR:
        part = _part(name)
        with torch.inference_mode():
            probs = probs + torch.softmax(part.backbone_.classify(part._float_batch(images, False)), dim=1).numpy()
    probs /= len(PAIR)
    np.testing.assert_array_equal(guesses.class_index, probs.argmax(axis=1))
    np.testing.assert_allclose(guesses.class_prob, probs.max(axis=1), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="expected features of shape"):
        fused.class_guesses(np.zeros((2, 5), np.float32))
    no_head = FusedExtractor(PAIR, layers=("stage7",), input_size=SMALL, runtime="torch", progress=False)
    assert no_head.class_guesses(np.zeros((1, no_head.n_features_out), np.float32)) is None


def test_parameters_are_checked_and_the_config_rebuilds_the_extractor(images):
    with pytest.raises(TypeError, match="list of names"):
        FusedExtractor("efficientnet_lite0").fit(images)
    with pytest.raises(ValueError, match="two or more"):
        FusedExtractor(["efficientnet_lite0"]).fit(images)
    with pytest.raises(ValueError, match="batch_size"):
        FusedExtractor(PAIR, batch_size=0).fit(images)
    rebuilt = extractor_from_config(_fused().to_config())
    assert isinstance(rebuilt, FusedExtractor) and rebuilt.extractor_id == _fused().extractor_id


def test_cluster_and_assign_with_fused_features(tmp_path):
    data = tmp_path / "data"
    write_class_folders(data, {"a": 8, "b": 8}, lambda c, i, hw, rng: blob_image(c, hw, rng, 3))
    runner = CliRunner()
    out, cache = tmp_path / "out", tmp_path / "cache"
    res = runner.invoke(app, ["cluster", str(data), "--out", str(out), "--features", "+".join(PAIR),
                              "--size", str(SMALL), "--k", "2", "--cache-dir", str(cache), "--score"])  # fmt: skip
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "clusters.csv")
    assert len(table) == 16 and set(table["cluster"]) == {0, 1}
    model = ImageClusterer.load(out / "model")
    assert isinstance(model.extractor_, FusedExtractor) and model.reducer_.block_sizes == [320, 1280, 320, 1280]
    placed = runner.invoke(app, ["assign", str(out / "model"), str(data), "--out", str(tmp_path / "placed.csv"),
                                 "--cache-dir", str(cache)])  # fmt: skip
    assert placed.exit_code == 0, placed.output
    assigned = pd.read_csv(tmp_path / "placed.csv")
    merged = table.merge(assigned, on="path", suffixes=("", "_assigned"))
    assert len(merged) == 16 and (merged["cluster"] == merged["cluster_assigned"]).all()
