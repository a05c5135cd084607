"""Interpretation as fastai users expect it: ``lr="auto"`` (a learning-rate range test
that leaves the training it precedes untouched), the top losses with Grad-CAM, the
most-confused pairs and per-class metrics in metrics.json, the report and the CLI.
Synthetic data only (tests/synthetic.py)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from pixsort.classify.estimator import ImageClassifier
from pixsort.classify.evaluation import evaluate
from pixsort.classify.gradcam import grad_cam, overlay
from pixsort.classify.lr_finder import RULE
from pixsort.classify.networks import ClassifierNet
from pixsort.report.classification import write_evaluation
from synthetic import pattern_image, two_class_arrays, write_class_folders

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small trainings: one torch thread (conftest)


@pytest.fixture(scope="module")
def blobs():
    return two_class_arrays()


def _same_training(a: ImageClassifier, b: ImageClassifier) -> None:
    """Two fitted classifiers went through the same epochs to the same weights."""
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in a.history_]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in b.history_]
    sa, sb = a.network_.state_dict(), b.network_.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.train_config_ == b.train_config_ and a.threshold_ == b.threshold_


def test_lr_auto_trains_exactly_like_the_fixed_lr_it_found(blobs):
    """With augmentation on (the search draws its own batches and augmentations): the
    auto run and a run with the found rate fixed go through the same steps."""
    xt, yt, xv, yv = blobs
    params = dict(epochs=1, image_size=28, augment="light", progress=False, random_state=0)
    auto = ImageClassifier("seed-cnn", lr="auto", **params).fit(xt, yt, xv, yv)
    finder = auto.lr_finder_
    assert finder["rule"] == RULE and finder["on_cached_features"] is False
    assert 10 < len(finder["lrs"]) == len(finder["losses"]) == len(finder["smoothed"]) <= 100
    assert finder["lrs"][0] == pytest.approx(1e-7) and np.all(np.diff(finder["lrs"]) > 0)
    assert auto.train_config_["lr"] == finder["chosen"] != auto.recipe.lr  # trained with the found rate

    fixed = ImageClassifier("seed-cnn", lr=finder["chosen"], **params).fit(xt, yt, xv, yv)
    assert fixed.lr_finder_ is None
    _same_training(auto, fixed)  # the search left no trace: same batches, weights, optimizer state
    np.testing.assert_array_equal(auto.predict_proba(xv), fixed.predict_proba(xv))


def test_lr_auto_choice_learns_the_synthetic_task_faster_than_the_recipe(blobs):
    xt, yt, xv, yv = blobs
    params = dict(epochs=1, image_size=28, progress=False, random_state=0)  # the seed recipe: no augmentation
    auto = ImageClassifier("seed-cnn", lr="auto", **params).fit(xt, yt, xv, yv)
    recipe = ImageClassifier("seed-cnn", **params).fit(xt, yt, xv, yv)
    chosen = auto.lr_finder_["chosen"]
    assert auto.lr_finder_["rule"] == RULE and 1e-4 < chosen < 3e-2 and chosen != recipe.train_config_["lr"]
    # after one epoch (measured: 0.99 against 0.94 for the recipe's 1e-3)
    assert auto.history_[0]["val_roc_auc"] > max(0.97, recipe.history_[0]["val_roc_auc"])
    # the rule's own check: the smoothed loss at the chosen rate's neighbourhood is below the start
    lrs, smoothed = np.array(auto.lr_finder_["lrs"]), np.array(auto.lr_finder_["smoothed"])
    assert smoothed[np.argmin(np.abs(np.log(lrs / (10 * chosen))))] == pytest.approx(smoothed[10:-5].min())


def test_lr_auto_on_cached_features_searches_without_the_frozen_part_and_resumes(blobs, tmp_path, monkeypatch):
    xt, yt, xv, yv = blobs
    pick, vpick = np.r_[0:60, 150:210], np.r_[0:20, 80:100]
    xt, yt, xv, yv = xt[pick], yt[pick], xv[vpick], yv[vpick]
    fed = []
    original = ClassifierNet.features

    def counting(self, x):
        fed.append(len(x))
        return original(self, x)

    monkeypatch.setattr(ClassifierNet, "features", counting)
    params = dict(pretrained=False, image_size=32, epochs=2, patience=None, progress=False)
    auto = ImageClassifier("probe:efficientnet_lite0", lr="auto", **params).fit(xt, yt, xv, yv)
    assert auto.training_["cached_features"] is True and auto.lr_finder_["on_cached_features"] is True
    assert len(auto.lr_finder_["lrs"]) > 10
    assert sum(fed) == len(xt) + len(xv)  # each image through the frozen part once: the search ran on the cache

    fed.clear()
    fixed = ImageClassifier("probe:efficientnet_lite0", lr=auto.lr_finder_["chosen"], **params).fit(xt, yt, xv, yv)
    assert sum(fed) == len(xt) + len(xv)
    _same_training(auto, fixed)

    # an interrupted auto run resumes: the repeated search chooses the same rate, so the checkpoint matches
    ckpt = tmp_path / "ckpt"
    cut = ImageClassifier("probe:efficientnet_lite0", lr="auto", checkpoint_dir=ckpt, max_minutes=1e-6, **params)
    assert len(cut.fit(xt, yt, xv, yv).history_) == 1
    resumed = ImageClassifier("probe:efficientnet_lite0", lr="auto", checkpoint_dir=ckpt, resume=True, **params)
    resumed.fit(xt, yt, xv, yv)
    assert resumed.training_["resumed_from_epoch"] == 1 and resumed.train_config_ == auto.train_config_
    assert [h["train_loss"] for h in resumed.history_] == pytest.approx([h["train_loss"] for h in auto.history_])


def test_lr_auto_is_a_valid_parameter_and_is_saved(blobs, tmp_path):
    xt, yt, xv, yv = blobs
    for bad in ("fast", 0.0, -1e-3):
        with pytest.raises(ValueError, match="lr"):
            ImageClassifier(lr=bad).check_params()
    ImageClassifier(lr="auto").check_params()
    clf = ImageClassifier(
        "probe:efficientnet_lite0", pretrained=False, image_size=32, epochs=1, lr="auto", progress=False
    ).fit(xt[::10], yt[::10], xv[::10], yv[::10])
    loaded = ImageClassifier.load(clf.save(tmp_path / "model"))
    assert loaded.lr == "auto" and loaded.lr_finder_ == clf.lr_finder_ and loaded.lr_finder_["lrs"]
    plain = ImageClassifier(epochs=1, image_size=28, progress=False).fit(xt[::10], yt[::10])
    assert plain.lr_finder_ is None and ImageClassifier.load(plain.save(tmp_path / "plain")).lr_finder_ is None


# ----------------------------------------------------------------------------- top losses


@pytest.fixture(scope="module")
def tiny_binary(blobs):
    xt, yt, xv, yv = blobs
    clf = ImageClassifier("seed-cnn", epochs=1, image_size=28, progress=False).fit(xt[::3], yt[::3], xv, yv)
    return clf.set_threshold(threshold=0.2), xv[:10]


def test_top_losses_rank_by_loss_with_titles_and_gradcam_of_the_prediction(tiny_binary, tmp_path):
    clf, images = tiny_binary
    p1 = np.array([0.30, 0.90, 0.05, 0.60, 0.15, 0.50, 0.99, 0.01, 0.25, 0.40])
    labels = np.array([0, 0, 1, 1, 1, -1, 0, -1, 1, 0])  # -1: unlabelled, never a top loss
    proba = np.stack([1 - p1, p1], axis=1)
    paths = [f"img{i}.png" for i in range(10)]
    ev = evaluate(clf, images, labels, paths, proba, n_top=5)

    p_true = np.where(labels == 1, p1, 1 - p1)
    expected = [6, 2, 1, 4, 8]  # p(true) 0.01, 0.05, 0.10, 0.15, 0.25 (7 and 5 are unlabelled)
    assert ev.top_losses.tolist() == expected
    pred = (p1 >= 0.2).astype(int)  # the model's threshold, not 0.5: item 8 (p1 0.25, true 1) is right
    names = clf.classes_
    assert ev.top_loss_titles == [
        f"{names[labels[i]]} / {names[pred[i]]}\n{-np.log(p_true[i]):.2f} / {p_true[i]:.3f}" for i in expected
    ]
    rows = ev.metrics["top_losses"]
    assert [r["path"] for r in rows] == [paths[i] for i in expected]
    assert [r["loss"] for r in rows] == pytest.approx([-np.log(p_true[i]) for i in expected])
    assert [r["predicted"] for r in rows] == [names[pred[i]] for i in expected]
    assert np.all(np.diff([r["loss"] for r in rows]) <= 0)  # highest first

    # each tile: the image with the Grad-CAM of the predicted class (as titled) over it
    assert ev.top_loss_gradcam and ev.top_loss_tiles.shape == (5, *images.shape[1:3], 3)
    shown = images[expected]
    maps, explained = grad_cam(clf.network_, shown, classes=pred[expected])
    assert explained.tolist() == pred[expected].tolist()
    np.testing.assert_array_equal(ev.top_loss_tiles, np.stack([overlay(im, m) for im, m in zip(shown, maps)]))
    assert not np.array_equal(ev.top_loss_tiles, np.repeat(shown, 3, axis=-1))

    write_evaluation(ev, clf, images, tmp_path, title="t")
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert "top_losses.png" in plots and "worst.png" not in plots and "gradcam.png" not in plots
    assert "lr_finder.png" not in plots  # no range test given
    report = (tmp_path / "report.html").read_text()
    assert 'src="plots/top_losses.png"' in report and "Most confused" not in report  # two classes: no pairs table


# ----------------------------------------------------------------------------- the CLI on three classes


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    """Three noisy pattern classes (red stripes, green checks, blue rings) in class
    folders: hard enough after one epoch that some images are confused."""
    root = tmp_path_factory.mktemp("three")
    write_class_folders(
        root / "train",
        {"red": 30, "green": 30, "blue": 30},
        lambda c, i, hw, rng: pattern_image(c, hw, rng, noise=120.0),
        base_size=24,
    )
    return root


def _pairs_by_hand(cm: np.ndarray, names: list[str]) -> list[dict]:
    cells = [(cm[i, j], cm[i, j] / cm[i].sum(), i, j) for i in range(3) for j in range(3) if i != j and cm[i, j]]
    cells.sort(key=lambda c: (-c[0], -c[1], c[2], c[3]))
    return [{"true": names[i], "predicted": names[j], "count": int(n), "share": s} for n, s, i, j in cells]


def test_cli_train_lr_auto_reports_range_test_confused_pairs_per_class_and_top_losses(three_classes, tmp_path):
    from typer.testing import CliRunner

    from pixsort.cli import app

    out = tmp_path / "run"
    args = ["train", str(three_classes), "--out", str(out), "--epochs", "1", "--image-size", "24",
            "--val-fraction", "0.3", "--cache-dir", str(tmp_path / "cache"), "--workers", "0"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--lr", "auto"])
    assert result.exit_code == 0, result.output

    metrics = json.loads((out / "metrics.json").read_text())
    meta = json.loads((out / "model" / "model.json").read_text())
    finder = metrics["lr_finder"]
    assert finder["chosen"] == meta["train_config"]["lr"] == meta["lr_finder"]["chosen"]
    assert len(finder["lrs"]) == len(finder["losses"]) > 10 and finder["rule"] == RULE
    assert f"learning rate {finder['chosen']:.3g} from the range test" in result.output

    # per class and most confused, against the predictions written beside them
    names = metrics["class_names"]
    predictions = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    loaded = predictions[predictions["status"] == "loaded"]
    cm = pd.crosstab(loaded["true"], loaded["predicted"]).reindex(index=names, columns=names, fill_value=0)
    assert cm.to_numpy().tolist() == metrics["confusion_matrix"]
    pairs = _pairs_by_hand(cm.to_numpy(), names)
    assert pairs, "the task should leave some confusions after one epoch"
    assert metrics["most_confused"] == [dict(p, share=pytest.approx(p["share"])) for p in pairs]
    for name in names:
        row = metrics["per_class"][name]
        assert row["roc_auc"] == pytest.approx(roc_auc_score(loaded["true"] == name, loaded[f"p_{name}"]), abs=1e-5)
        assert row["support"] == int((loaded["true"] == name).sum())

    # the CLI prints the top five pairs, in order
    shown = [
        (m.group(1), m.group(2), int(m.group(3)))
        for m in re.finditer(r"│\s*(\w+)\s*│\s*(\w+)\s*│\s*(\d+)\s*│\s*[\d.]+%\s*│", result.output)
    ]
    assert shown == [(p["true"], p["predicted"], p["count"]) for p in pairs[:5]]

    # the report: per-class table with AUC, the pairs table, both figures
    report = (out / "report.html").read_text()
    assert "roc_auc" in report and "Most confused" in report and "share of the true class" in report
    assert 'src="plots/lr_finder.png"' in report and 'src="plots/top_losses.png"' in report
    assert (out / "plots" / "lr_finder.png").stat().st_size > 0
    top = metrics["top_losses"]
    assert len(top) == min(12, len(loaded)) and {r["path"] for r in top} <= set(loaded["path"])

    for bad in ("fast", "0"):
        result = CliRunner().invoke(app, [*args, "--lr", bad])
        assert result.exit_code == 2 and "--lr" in result.output
