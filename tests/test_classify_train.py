"""Training, saving, resuming and predicting on small real slices (PneumoniaMNIST, chest X-ray)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import shared_path
from pixsort.classify.estimator import ImageClassifier
from pixsort.workflows import evaluate_classifier, predict_images, train_classifier


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train faster on one thread, and much faster when the cores are
    shared (OpenMP barriers across busy cores cost more than the convolutions)."""
    import torch

    from pixsort.base.runtime import tune_cpu

    tune_cpu()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mnist_slice():
    """300 train + 200 val PneumoniaMNIST images (28x28 grey), balanced-ish, as uint8 (n, 28, 28, 1)."""
    path = shared_path("pneumoniamnist", "pneumoniamnist_trainval.npz")
    with np.load(path) as npz:
        xt, yt = npz["train_images"], npz["train_labels"][:, 0]
        xv, yv = npz["val_images"], npz["val_labels"][:, 0]
    rng = np.random.default_rng(0)
    t = np.concatenate([rng.choice(np.flatnonzero(yt == c), 150, replace=False) for c in (0, 1)])
    v = np.concatenate([rng.choice(np.flatnonzero(yv == c), n, replace=False) for c, n in ((0, 80), (1, 120))])
    return xt[t][..., None], yt[t], xv[v][..., None], yv[v]


def _small_cnn(**kw) -> ImageClassifier:
    params = dict(epochs=3, image_size=28, batch_size=32, progress=False, random_state=0)
    params.update(kw)
    return ImageClassifier("seed-cnn", **params)


def test_few_epochs_learn_above_chance(mnist_slice):
    xt, yt, xv, yv = mnist_slice
    clf = _small_cnn(epochs=4, schedule="onecycle", balance="weights").fit(
        xt, yt, xv, yv, classes=["normal", "pneumonia"])
    assert clf.validation_metrics_["roc_auc"] > 0.85
    assert clf.score(xv, yv) > 0.7  # chance is 0.6 (always "pneumonia")
    assert clf.classes_ == ["normal", "pneumonia"] and 0 < clf.threshold_ < 1
    assert clf.decode_settings.hw == (28, 28)
    assert len(clf.history_) == 4 and clf.training_["best_epoch"] >= 1


def test_save_load_predict_identical(mnist_slice, tmp_path):
    xt, yt, xv, yv = mnist_slice
    clf = _small_cnn(epochs=1, target_sensitivity=0.9).fit(xt, yt, xv, yv)
    folder = clf.save(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "weights.safetensors"]
    meta = json.loads((folder / "model.json").read_text())
    assert meta["format"] == "pixsort-model" and meta["kind"] == "classifier"
    assert meta["threshold"] == clf.threshold_ and meta["threshold_info"]["target_sensitivity"] == 0.9
    assert meta["validation_metrics"]["sensitivity"] >= 0.9

    from pixsort.workflows import load_model

    loaded = load_model(folder)
    assert isinstance(loaded, ImageClassifier)
    np.testing.assert_array_equal(loaded.predict_proba(xv), clf.predict_proba(xv))
    np.testing.assert_array_equal(loaded.predict(xv), clf.predict(xv))
    assert loaded.threshold_ == clf.threshold_ and loaded.decode_settings == clf.decode_settings


def test_training_resumes_from_checkpoint(mnist_slice, tmp_path):
    xt, yt, xv, yv = mnist_slice
    reference = _small_cnn(patience=None).fit(xt, yt, xv, yv)

    ckpt = tmp_path / "ckpt"
    interrupted = _small_cnn(patience=None, checkpoint_dir=ckpt, max_minutes=1e-6).fit(xt, yt, xv, yv)
    assert interrupted.training_["stopped"] == "time_budget" and len(interrupted.history_) == 1
    assert (ckpt / "last.safetensors").exists() and json.loads((ckpt / "state.json").read_text())["epoch"] == 1

    resumed = _small_cnn(patience=None, checkpoint_dir=ckpt, resume=True).fit(xt, yt, xv, yv)
    assert resumed.training_["resumed_from_epoch"] == 1 and len(resumed.history_) == 3
    # same batches, same augmentation, same optimizer state: the same model as without interruption
    np.testing.assert_allclose(resumed.predict_proba(xv), reference.predict_proba(xv), atol=1e-5)

    with pytest.raises(ValueError, match="other training settings"):
        _small_cnn(patience=None, lr=0.01, checkpoint_dir=ckpt, resume=True).fit(xt, yt, xv, yv)


def test_balancing_modes_run(mnist_slice):
    xt, yt, xv, yv = mnist_slice
    keep = np.concatenate([np.flatnonzero(yt == 0)[:40], np.flatnonzero(yt == 1)])  # 40 vs 150
    for balance in ("sampler", "oversample"):
        clf = _small_cnn(epochs=1, balance=balance).fit(xt[keep], yt[keep], xv, yv)
        counts = clf.training_["train_counts"]
        if balance == "oversample":
            assert counts == [150, 150]
        assert clf.validation_metrics_["n"] == len(yv)


def test_multiclass_and_string_labels(mnist_slice):
    xt, yt, xv, yv = mnist_slice
    names = np.array(["a", "b", "c"])
    y3 = names[(np.arange(len(yt)) % 3)]
    clf = _small_cnn(epochs=1, augment="light").fit(xt, y3)  # validation carved from train
    assert clf.classes_ == ["a", "b", "c"] and clf.threshold_ is None
    assert clf.predict_proba(xv[:5]).shape == (5, 3)
    assert clf.training_["n_val"] == pytest.approx(0.15 * len(yt), abs=1)


def test_linear_probe_on_random_backbone_trains_on_cached_features(mnist_slice):
    xt, yt, xv, yv = mnist_slice
    clf = ImageClassifier("probe:efficientnet_lite0", pretrained=False, image_size=32, epochs=5, progress=False)
    pick = np.r_[0:60, 150:210]  # both classes
    clf.fit(xt[pick], yt[pick], xv[::4], yv[::4])
    assert clf.training_["cached_features"] is True
    assert clf.predict_proba(xv[:4]).shape == (4, 2)


def test_invalid_parameters_fail_at_fit_and_check_params():
    X, y = np.zeros((4, 28, 28, 1), np.uint8), [0, 1, 0, 1]
    for params, message in (({"balance": "magic"}, "balance"), ({"augment": "wild"}, "augmentation"),
                            ({"target_sensitivity": 2}, "target_sensitivity"), ({"model": "nope"}, "unknown model")):
        clf = ImageClassifier(**{"model": "seed-cnn", **params})  # __init__ only stores
        assert clf.get_params()[next(iter(params))] == next(iter(params.values()))
        with pytest.raises(ValueError, match=message):
            clf.check_params()
        with pytest.raises(ValueError, match=message):
            clf.fit(X, y)
    with pytest.raises(ValueError, match="uint8"):
        _small_cnn().fit(np.zeros((4, 28, 28, 1), np.float32), [0, 1, 0, 1])


@pytest.fixture(scope="module")
def xray_slice(tmp_path_factory):
    """40 + 40 chest X-rays as symlinks in class folders, plus a corrupt file."""
    src = shared_path("chest_xray", "train")
    root = tmp_path_factory.mktemp("xray")
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / "train" / cls).mkdir(parents=True)
        for f in sorted((src / cls).iterdir())[:40]:
            (root / "train" / cls / f.name).symlink_to(f)
    return root


def test_pipeline_train_evaluate_predict_with_corrupt_file(xray_slice, tmp_path):
    out = tmp_path / "run"
    outcome = train_classifier(xray_slice, out, "seed-cnn", epochs=2, image_size=48, validation_fraction=0.25,
                               cache_dir=tmp_path / "cache", workers=0, progress=False,
                               group_pattern=r"(person\d+|IM-\d+|NORMAL2-IM-\d+)")
    for name in ("metrics.json", "predictions.csv", "report.html", "model/model.json", "plots/roc.png",
                 "plots/confusion.png", "plots/curves.png", "plots/reliability.png", "plots/worst.png",
                 "plots/gradcam.png"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["n_val"] == outcome.evaluation.metrics["n"]
    assert outcome.classifier.decode_settings.hw == (48, 48)  # decoded at the network input size

    images = tmp_path / "new"
    images.mkdir()
    for f in sorted((xray_slice / "train" / "NORMAL").iterdir())[:3]:
        shutil.copy(f, images / f.name)
    (images / "corrupt.jpeg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (images / "truncated.jpeg").write_bytes((images / f.name).read_bytes()[:400])
    frame = predict_images(out / "model", images, tmp_path / "pred.csv", cache_dir=tmp_path / "cache", workers=0,
                           progress=False)
    assert len(frame) == 5 and (frame["status"] == "loaded").sum() == 3
    bad = frame[frame["status"] == "skipped"].set_index(frame.loc[frame["status"] == "skipped", "path"]
                                                        .map(lambda p: p.rsplit("/", 1)[-1]))
    assert set(bad.index) == {"corrupt.jpeg", "truncated.jpeg"} and bad["reason"].str.len().min() > 0
    assert pd.read_csv(tmp_path / "pred.csv").shape[0] == 5

    ev = evaluate_classifier(out / "model", xray_slice, tmp_path / "eval", cache_dir=tmp_path / "cache", workers=0,
                             progress=False)
    assert ev.metrics["n"] == 80 and ev.metrics["roc_auc"] is not None


def test_cli_train_and_predict(xray_slice, tmp_path):
    from typer.testing import CliRunner

    from pixsort.cli import app

    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["train", str(xray_slice), "--model", "seed-cnn", "--out", str(out), "--epochs", "1",
                                 "--image-size", "32", "--target-sensitivity", "0.95",
                                 "--cache-dir", str(tmp_path / "cache"), "--workers", "0"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["threshold_info"]["method"] == "sensitivity"
    result = runner.invoke(app, ["predict", str(out / "model"), str(xray_slice), "--out", str(tmp_path / "p.csv"),
                                 "--cache-dir", str(tmp_path / "cache"), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "p.csv")) == 80
    result = runner.invoke(app, ["train", str(xray_slice), "--model", "nope", "--out", str(out)])
    assert result.exit_code == 2 and "unknown model" in result.output


def test_tta_is_mirror_invariant(mnist_slice):
    xt, yt, xv, yv = mnist_slice
    clf = _small_cnn(epochs=1).fit(xt, yt, xv, yv)
    mirrored = np.ascontiguousarray(xv[:16, :, ::-1])
    np.testing.assert_allclose(clf.predict_proba(xv[:16], tta=True), clf.predict_proba(mirrored, tta=True), atol=1e-5)
    assert not np.allclose(clf.predict_proba(xv[:16]), clf.predict_proba(mirrored))


def test_threshold_can_be_rechosen_after_fit(mnist_slice):
    xt, yt, xv, yv = mnist_slice
    clf = _small_cnn(epochs=1).fit(xt, yt, xv, yv)
    clf.set_threshold(target_sensitivity=0.99)
    assert clf.validation_metrics_["sensitivity"] >= 0.99
    assert clf.threshold_info_["method"] == "sensitivity"
    clf.set_threshold(threshold=0.5)
    assert clf.threshold_ == 0.5 and clf.threshold_info_["method"] == "fixed"
