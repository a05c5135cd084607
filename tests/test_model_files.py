"""Model folders are checked as a whole on load: one ModelFileError naming the folder
and the problem, never a raw KeyError/TypeError/RuntimeError from deep inside."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pixsort.base.errors import ModelFileError
from pixsort.base.modelfile import WEIGHTS_HASH_KEY
from pixsort.workflows import load_model


def _images(n: int, low: int, high: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, (n, 32, 32, 3)).astype(np.uint8)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    from pixsort.classify.estimator import ImageClassifier

    images = np.concatenate([_images(16, 0, 60, 0), _images(16, 195, 256, 1)])
    clf = ImageClassifier("seed-cnn", epochs=1, image_size=32, progress=False)
    clf.fit(images, np.repeat([0, 1], 16), classes=["dark", "bright"])
    folder = tmp_path_factory.mktemp("models") / "clf"
    clf.save(folder)
    return folder


@pytest.fixture(scope="module")
def clusterer_dir(tmp_path_factory) -> Path:
    from pixsort.cluster.images import ImageClusterer

    images = np.concatenate([_images(10, 0, 60, 0), _images(10, 100, 150, 1), _images(10, 195, 256, 2)])
    clusterer = ImageClusterer(features="pixels", n_clusters=3, progress=False)
    clusterer.fit(images)
    folder = tmp_path_factory.mktemp("models") / "clu"
    clusterer.save(folder)
    return folder


def edited(src: Path, tmp_path: Path, change) -> Path:
    folder = tmp_path / src.name
    shutil.copytree(src, folder)
    meta = json.loads((folder / "model.json").read_text())
    change(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def refused(folder: Path, *words: str) -> str:
    with pytest.raises(ModelFileError) as info:
        load_model(folder)
    message = str(info.value)
    assert str(folder) in message, message
    for word in words:
        assert word in message, message
    return message


def test_saved_models_record_and_pass_their_weights_checksum(classifier_dir, clusterer_dir):
    for folder in (classifier_dir, clusterer_dir):
        assert len(json.loads((folder / "model.json").read_text())[WEIGHTS_HASH_KEY]) == 64
        load_model(folder)


def test_truncated_or_missing_weights(classifier_dir, clusterer_dir, tmp_path):
    for src in (classifier_dir, clusterer_dir):
        folder = tmp_path / ("cut-" + src.name)
        shutil.copytree(src, folder)
        data = (folder / "weights.safetensors").read_bytes()
        (folder / "weights.safetensors").write_bytes(data[: len(data) - 100])
        refused(folder, "weights.safetensors")
        (folder / "weights.safetensors").unlink()
        refused(folder, "missing")


def test_old_files_without_a_checksum_still_load(classifier_dir, tmp_path):
    load_model(edited(classifier_dir, tmp_path, lambda m: m.pop(WEIGHTS_HASH_KEY)))


def test_clusterer_count_that_disagrees_with_its_centres(clusterer_dir, tmp_path):
    refused(edited(clusterer_dir, tmp_path, lambda m: m.update(n_clusters=9)), "n_clusters=9", "3 cluster centres")


def test_clusterer_without_its_params(clusterer_dir, tmp_path):
    refused(edited(clusterer_dir, tmp_path, lambda m: m.pop("params")), "params")


def test_classifier_classes_that_disagree_with_its_output_layer(classifier_dir, tmp_path):
    three = edited(classifier_dir, tmp_path / "a", lambda m: m.update(classes=["a", "b", "c"]))
    refused(three, "3 classes", "output")


def test_classifier_text_threshold_and_missing_architecture(classifier_dir, tmp_path):
    refused(edited(classifier_dir, tmp_path / "t", lambda m: m.update(threshold="0.5")), "threshold")
    refused(edited(classifier_dir, tmp_path / "a", lambda m: m.pop("architecture")), "architecture")
    refused(edited(classifier_dir, tmp_path / "n", lambda m: m["architecture"].update(n_outputs=4)), "output")


def test_the_cli_says_one_clear_error(clusterer_dir, tmp_path):
    from typer.testing import CliRunner

    from pixsort.cli import app

    folder = edited(clusterer_dir, tmp_path, lambda m: m.update(n_clusters=9))
    result = CliRunner().invoke(app, ["serve", str(folder)])
    assert result.exit_code == 2 and "n_clusters=9" in " ".join(result.output.split())
    assert "Traceback" not in result.output
