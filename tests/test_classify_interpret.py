"""Interpretation as fastai users expect it: ``lr="auto"`` (a learning-rate range test
that leaves the training it precedes untouched).  Synthetic data only (tests/synthetic.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixsort.classify.estimator import ImageClassifier
from pixsort.classify.lr_finder import RULE
from pixsort.classify.networks import ClassifierNet
from synthetic import two_class_arrays


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train faster on one thread when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
