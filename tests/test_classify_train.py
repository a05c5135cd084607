"""Training, saving, resuming and predicting.

Every mechanic runs twice: on a synthetic twin generated in the test (always) and on
a small real slice (PneumoniaMNIST, chest X-ray) from ../shared/data (skipped in a
checkout without it).  The balancing tests record what the training loop feeds the
network and assert the promised class shares and loss weights.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import shared_path
from pixsort.classify.estimator import ImageClassifier
from pixsort.workflows import evaluate_classifier, predict_images, train_classifier
from synthetic import (
    blob_image,
    image_means,
    level_class,
    level_images,
    two_class_arrays,
    write_broken_files,
    write_class_folders,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small trainings: one torch thread (conftest)


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


@pytest.fixture(scope="module")
def synthetic_slice():
    """The synthetic twin of ``mnist_slice``: the same layout (150 + 150 train, 80 + 120
    validation, class 0 first; 28x28 grey uint8), class 1 marked by a faint blob
    (learnt over a few epochs, not in one)."""
    return two_class_arrays()


@pytest.fixture(params=["synthetic", "pneumoniamnist"])
def train_slice(request):
    """Each array test runs on the synthetic twin and on the real slice (skipped without ../shared)."""
    return request.getfixturevalue("synthetic_slice" if request.param == "synthetic" else "mnist_slice")


def _small_cnn(**kw) -> ImageClassifier:
    params = dict(epochs=3, image_size=28, batch_size=32, progress=False, random_state=0)
    params.update(kw)
    return ImageClassifier("seed-cnn", **params)


def test_few_epochs_learn_above_chance(train_slice):
    xt, yt, xv, yv = train_slice
    clf = _small_cnn(epochs=4, schedule="onecycle", balance="weights").fit(
        xt, yt, xv, yv, classes=["normal", "pneumonia"]
    )
    assert clf.validation_metrics_["roc_auc"] > 0.85
    assert clf.score(xv, yv) > 0.7  # chance is 0.6 (always "pneumonia")
    assert clf.classes_ == ["normal", "pneumonia"] and 0 < clf.threshold_ < 1
    assert clf.decode_settings.hw == (28, 28)
    assert len(clf.history_) == 4 and clf.training_["best_epoch"] >= 1


def test_save_load_predict_identical(train_slice, tmp_path):
    xt, yt, xv, yv = train_slice
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


def test_training_resumes_from_checkpoint(train_slice, tmp_path):
    xt, yt, xv, yv = train_slice
    reference = _small_cnn(patience=None).fit(xt, yt, xv, yv)

    ckpt = tmp_path / "ckpt"
    interrupted = _small_cnn(patience=None, checkpoint_dir=ckpt, max_minutes=1e-6).fit(xt, yt, xv, yv)
    assert interrupted.training_["stopped"] == "time_budget" and len(interrupted.history_) == 1
    state = json.loads((ckpt / "state.json").read_text())
    assert state["epoch"] == 1 and (ckpt / state["files"]["last"]["file"]).exists()

    resumed = _small_cnn(patience=None, checkpoint_dir=ckpt, resume=True).fit(xt, yt, xv, yv)
    assert resumed.training_["resumed_from_epoch"] == 1 and len(resumed.history_) == 3
    # same batches, same augmentation, same optimizer state: the same epochs and model as without interruption
    assert [h["train_loss"] for h in resumed.history_] == pytest.approx(
        [h["train_loss"] for h in reference.history_], rel=1e-6
    )
    assert resumed.training_["best_epoch"] == reference.training_["best_epoch"]
    np.testing.assert_allclose(resumed.predict_proba(xv), reference.predict_proba(xv), atol=1e-5)

    with pytest.raises(ValueError, match="other training settings"):
        _small_cnn(patience=None, lr=0.01, checkpoint_dir=ckpt, resume=True).fit(xt, yt, xv, yv)


def test_a_checkpoint_is_one_commit_a_crash_between_its_files_leaves_the_old_one(tmp_path, monkeypatch):
    from pathlib import Path
    from types import SimpleNamespace

    from pixsort.classify.training import Checkpointer

    net = torch.nn.Linear(3, 2)
    holder = SimpleNamespace(trainable=net)  # the Checkpointer saves .trainable's weights
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    ckpt = Checkpointer(tmp_path / "ckpt")

    def state(epoch):
        return {"epoch": epoch, "fingerprint": "f"}

    with torch.no_grad():
        net.weight.fill_(1.0)
    ckpt.save(holder, optimizer, state(1), {"w": net.weight.clone()}, improved=True)

    # epoch 2: killed after the first file was renamed into place, before state.json
    with torch.no_grad():
        net.weight.fill_(2.0)
    real_replace, calls = Path.replace, []

    def crashing_replace(self, target):
        calls.append(Path(target).name)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", crashing_replace)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(holder, optimizer, state(2), {"w": net.weight.clone()}, improved=True)
    monkeypatch.setattr(Path, "replace", real_replace)

    loaded_state, last, best = Checkpointer(tmp_path / "ckpt").load("f")
    assert loaded_state["epoch"] == 1
    assert torch.all(last["model.weight"] == 1.0) and torch.all(best["w"] == 1.0)  # epoch 1's, all of it

    # a save that completes commits all of epoch 2 and removes what epoch 1 left
    ckpt.save(holder, optimizer, state(2), {"w": net.weight.clone()}, improved=True)
    loaded_state, last, best = Checkpointer(tmp_path / "ckpt").load("f")
    assert loaded_state["epoch"] == 2 and torch.all(last["model.weight"] == 2.0) and torch.all(best["w"] == 2.0)
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert len(names) == 3 and "state.json" in names


def test_balancing_modes_run(train_slice):
    xt, yt, xv, yv = train_slice
    keep = np.concatenate([np.flatnonzero(yt == 0)[:40], np.flatnonzero(yt == 1)])  # 40 vs 150
    for balance in ("sampler", "oversample"):
        clf = _small_cnn(epochs=1, balance=balance).fit(xt[keep], yt[keep], xv, yv)
        counts = clf.training_["train_counts"]
        if balance == "oversample":
            assert counts == [150, 150]
        assert clf.validation_metrics_["n"] == len(yv)


# ----------------------------------------------------------------------------- what the training loop feeds


@dataclass
class LossCall:
    name: str  # "binary_cross_entropy_with_logits" or "cross_entropy"
    logits: torch.Tensor
    targets: torch.Tensor
    weight: torch.Tensor | None  # pos_weight (binary) or weight (multiclass)
    value: float


class FedRecorder:
    """Records, from outside the package, the input of every training forward pass
    (the outermost module call with gradients on and the module in training mode)
    and every loss computed with gradients."""

    def __init__(self):
        self.batches: list[torch.Tensor] = []
        self.losses: list[LossCall] = []
        self._depth = 0

    def before(self, module, args):
        if self._depth == 0 and module.training and torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            self.batches.append(args[0].detach().clone())
        self._depth += 1

    def after(self, module, args, output):
        self._depth -= 1

    def images(self) -> np.ndarray:
        """Every training input, in order, back as uint8 (n, H, W, C)."""
        x = torch.cat(self.batches)
        return (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def targets(self) -> np.ndarray:
        return torch.cat([c.targets for c in self.losses]).long().numpy()


@pytest.fixture
def fed(monkeypatch):
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

    rec = FedRecorder()
    handles = [register_module_forward_pre_hook(rec.before), register_module_forward_hook(rec.after, always_call=True)]
    for name, weight_key in (("binary_cross_entropy_with_logits", "pos_weight"), ("cross_entropy", "weight")):

        def wrapper(*args, _original=getattr(F, name), _name=name, _key=weight_key, **kwargs):
            value = _original(*args, **kwargs)
            if value.requires_grad:
                rec.losses.append(
                    LossCall(
                        _name,
                        args[0].detach().clone(),
                        args[1].detach().clone(),
                        kwargs.get(_key),
                        float(value.detach()),
                    )
                )
            return value

        monkeypatch.setattr(F, name, wrapper)
    yield rec
    for h in handles:
        h.remove()


def _fit_levels(balance: str, counts=(90, 10), epochs: int = 1):
    """seed-cnn on :func:`level_images` (class = brightness band, one level per image),
    no augmentation, so what the network is fed is exactly the training pixels."""
    x, y = level_images(counts, size=16)
    xv, yv = level_images((10,) * len(counts), size=16, seed=1)
    clf = ImageClassifier(
        "seed-cnn",
        epochs=epochs,
        batch_size=25,
        image_size=16,
        balance=balance,
        augment="none",
        patience=None,
        precision="fp32",
        progress=False,
        random_state=0,
    ).fit(x, y, xv, yv)
    return x, y, clf


def _byte_counts(images: np.ndarray) -> Counter:
    return Counter(im.tobytes() for im in images)


def _binary_loss_by_hand(call: LossCall, pos_weight: float | None) -> float:
    """Mean binary cross-entropy of the recorded logits and targets, positives weighted by ``pos_weight``."""
    z, t = call.logits.double().reshape(-1), call.targets.double()
    pw = 1.0 if pos_weight is None else pos_weight
    return float((-(pw * t * F.logsigmoid(z) + (1 - t) * F.logsigmoid(-z))).mean())


def _check_epoch_losses(fed: FedRecorder, clf: ImageClassifier, by_hand: list[float]) -> None:
    """Each loss the loop computed equals the hand computation, and so does each epoch's
    reported ``train_loss`` (the batch-size weighted mean of what was backpropagated)."""
    assert len(by_hand) == len(fed.losses)
    for call, value in zip(fed.losses, by_hand):
        assert call.value == pytest.approx(value, rel=1e-4, abs=1e-7)  # float32 against float64
    sizes = np.array([len(c.targets) for c in fed.losses])
    epochs = np.split(np.arange(len(sizes)), len(clf.history_))
    for row, steps in zip(clf.history_, epochs):
        expected = float((np.array(by_hand)[steps] * sizes[steps]).sum() / sizes[steps].sum())
        assert row["train_loss"] == pytest.approx(expected, rel=1e-4, abs=1e-7)


def _check_fed_in_data_order(fed: FedRecorder, x: np.ndarray, epochs: int) -> np.ndarray:
    """Every epoch shows each training image exactly once; returns the fed images."""
    images = fed.images()
    assert len(images) == epochs * len(x)
    for epoch in np.split(images, epochs):
        assert _byte_counts(epoch) == _byte_counts(x)
    return images


def test_balance_none_feeds_the_data_as_it_is_unweighted(fed):
    x, y, clf = _fit_levels("none", epochs=2)
    images = _check_fed_in_data_order(fed, x, epochs=2)
    np.testing.assert_array_equal(level_class(images, 2), fed.targets())  # pixels and labels travel together
    assert np.bincount(fed.targets()).tolist() == [180, 20]  # 90/10, as in the data
    assert fed.losses and all(c.name == "binary_cross_entropy_with_logits" and c.weight is None for c in fed.losses)
    _check_epoch_losses(fed, clf, [_binary_loss_by_hand(c, None) for c in fed.losses])
    assert clf.training_["train_counts"] == [90, 10]


def test_balance_weights_feeds_the_data_and_weights_the_loss(fed):
    x, y, clf = _fit_levels("weights", epochs=2)
    images = _check_fed_in_data_order(fed, x, epochs=2)
    np.testing.assert_array_equal(level_class(images, 2), fed.targets())
    assert np.bincount(fed.targets()).tolist() == [180, 20]
    # class_weights n / (K count_c) = 100 / (2 * [90, 10]) = [0.556, 5.0]; binary: pos_weight = w1 / w0 = 9
    w = 100 / (2 * np.array([90, 10]))
    assert w[1] / w[0] == pytest.approx(9.0)
    for call in fed.losses:
        assert call.weight is not None and float(call.weight) == pytest.approx(w[1] / w[0])
    _check_epoch_losses(fed, clf, [_binary_loss_by_hand(c, w[1] / w[0]) for c in fed.losses])


def test_balance_weights_multiclass_uses_class_weights(fed):
    x, y, clf = _fit_levels("weights", counts=(60, 30, 10))
    images = _check_fed_in_data_order(fed, x, epochs=1)
    np.testing.assert_array_equal(level_class(images, 3), fed.targets())
    w = 100 / (3 * np.array([60, 30, 10]))  # n / (K count_c)
    by_hand = []
    for call in fed.losses:
        assert call.name == "cross_entropy"
        np.testing.assert_allclose(call.weight.numpy(), w, rtol=1e-6)
        nll = -F.log_softmax(call.logits.double(), dim=1)[torch.arange(len(call.targets)), call.targets]
        wy = torch.as_tensor(w)[call.targets]
        by_hand.append(float((wy * nll).sum() / wy.sum()))  # torch's weighted mean
    _check_epoch_losses(fed, clf, by_hand)


def test_balance_sampler_feeds_both_classes_equally(fed):
    epochs = 4
    x, y, clf = _fit_levels("sampler", epochs=epochs)
    images = fed.images()
    classes = level_class(images, 2)
    np.testing.assert_array_equal(classes, fed.targets())
    assert len(images) == epochs * len(x)  # an epoch draws as many images as there are
    # 400 draws at p = 0.5: binomial sd 0.025; the seeded run gives 0.47 (epochs 0.42-0.50; the data: 0.1)
    assert abs(classes.mean() - 0.5) < 0.1
    for epoch in np.split(classes, epochs):
        assert abs(epoch.mean() - 0.5) < 0.2
    # drawn with replacement: the 10 bright images are fed ~19 times each (188 draws)
    bright = images[classes == 1]
    assert len(bright) > 100 and len(_byte_counts(bright)) <= 10
    assert set(_byte_counts(images)) <= set(_byte_counts(x))  # only training images, unaugmented
    assert all(c.weight is None for c in fed.losses)  # balanced once: no loss weights on top
    _check_epoch_losses(fed, clf, [_binary_loss_by_hand(c, None) for c in fed.losses])
    assert clf.training_["train_counts"] == [90, 10]


def test_balance_oversample_feeds_a_balanced_set_with_augmented_minority_copies(fed):
    x, y, clf = _fit_levels("oversample")
    assert clf.training_["train_counts"] == [90, 90]
    images = fed.images()
    assert len(images) == 180  # one epoch over 90 + 10 originals + 80 copies
    classes = level_class(images, 2)
    np.testing.assert_array_equal(classes, fed.targets())
    assert np.bincount(classes).tolist() == [90, 90]
    # every original once; the 80 others are new images
    originals = _byte_counts(x)
    fed_counts = _byte_counts(images)
    assert all(fed_counts[key] == 1 for key in originals)
    extra = np.stack([im for im in images if im.tobytes() not in originals])
    assert len(extra) == 80
    assert (level_class(extra, 2) == 1).all()  # copies of the minority class only
    assert len(_byte_counts(extra)) == 80  # no two copies alike: augmented, not duplicated
    # each copy keeps the brightness level of one minority original (levels ~7 apart, copies within ~1),
    # and every original is copied equally often (80 / 10)
    levels = image_means(x[y == 1])
    gap = np.diff(np.sort(levels)).min()
    dist = np.abs(image_means(extra)[:, None] - levels[None, :])
    assert dist.min(axis=1).max() < gap / 4
    assert np.bincount(dist.argmin(axis=1), minlength=10).tolist() == [8] * 10
    assert all(c.weight is None for c in fed.losses)  # the seed's recipe: no loss weights
    _check_epoch_losses(fed, clf, [_binary_loss_by_hand(c, None) for c in fed.losses])


def test_multiclass_and_string_labels(train_slice):
    xt, yt, xv, yv = train_slice
    names = np.array(["a", "b", "c"])
    y3 = names[(np.arange(len(yt)) % 3)]
    clf = _small_cnn(epochs=1, augment="light").fit(xt, y3)  # validation carved from train
    assert clf.classes_ == ["a", "b", "c"] and clf.threshold_ is None
    assert clf.predict_proba(xv[:5]).shape == (5, 3)
    assert clf.training_["n_val"] == pytest.approx(0.15 * len(yt), abs=1)


def test_linear_probe_on_random_backbone_trains_on_cached_features(train_slice):
    xt, yt, xv, yv = train_slice
    clf = ImageClassifier("probe:efficientnet_lite0", pretrained=False, image_size=32, epochs=5, progress=False)
    pick = np.r_[0:60, 150:210]  # both classes
    clf.fit(xt[pick], yt[pick], xv[::4], yv[::4])
    assert clf.training_["cached_features"] is True
    assert clf.predict_proba(xv[:4]).shape == (4, 2)


def test_invalid_parameters_fail_at_fit_and_check_params():
    X, y = np.zeros((4, 28, 28, 1), np.uint8), [0, 1, 0, 1]
    for params, message in (
        ({"balance": "magic"}, "balance"),
        ({"augment": "wild"}, "augmentation"),
        ({"target_sensitivity": 2}, "target_sensitivity"),
        ({"model": "nope"}, "unknown model"),
    ):
        clf = ImageClassifier(**{"model": "seed-cnn", **params})  # __init__ only stores
        assert clf.get_params()[next(iter(params))] == next(iter(params.values()))
        with pytest.raises(ValueError, match=message):
            clf.check_params()
        with pytest.raises(ValueError, match=message):
            clf.fit(X, y)
    with pytest.raises(ValueError, match="uint8"):
        _small_cnn().fit(np.zeros((4, 28, 28, 1), np.float32), [0, 1, 0, 1])


@dataclass
class ImageFolder:
    """A labelled folder ``root/train/<class>/<file>`` and what a run on it must report."""

    root: Path
    files: dict[str, list[Path]]  # the readable images, per class
    skipped: set[str]  # names of the files that must be listed as skipped
    group_pattern: str  # a regex over file names giving a patient id

    @property
    def n_images(self) -> int:
        return sum(len(v) for v in self.files.values())

    def group(self, path: str | Path) -> str:
        name = Path(path).name
        match = re.search(self.group_pattern, name)
        return match.group(0) if match else name


@pytest.fixture(scope="module")
def xray_slice(tmp_path_factory) -> ImageFolder:
    """40 + 40 chest X-rays as symlinks in class folders."""
    src = shared_path("chest_xray", "train")
    root = tmp_path_factory.mktemp("xray")
    files = {}
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / "train" / cls).mkdir(parents=True)
        files[cls] = []
        for f in sorted((src / cls).iterdir())[:40]:
            (root / "train" / cls / f.name).symlink_to(f)
            files[cls].append(root / "train" / cls / f.name)
    return ImageFolder(root, files, set(), r"(person\d+|IM-\d+|NORMAL2-IM-\d+)")


@pytest.fixture(scope="module")
def synthetic_xray(tmp_path_factory) -> ImageFolder:
    """The synthetic twin of ``xray_slice``: 32 + 32 blob images in train/NORMAL and
    train/PNEUMONIA, PNG and JPEG, grey and RGB, 24 to 40 px and not all square,
    two files per "patient" (``NORMAL_pt03_06.png``), and a broken file."""
    root = tmp_path_factory.mktemp("synthetic_xray")
    files = write_class_folders(
        root / "train",
        {"NORMAL": 32, "PNEUMONIA": 32},
        lambda c, i, hw, rng: blob_image(c, hw, rng, channels=3),
        base_size=28,
        name="{cls}_pt{group:02d}_{i:02d}",
        broken="broken.png",
    )
    return ImageFolder(root, files, {"broken.png"}, r"[A-Z]+_pt\d+")


@pytest.fixture(params=["synthetic", "chest_xray"])
def image_folder(request) -> ImageFolder:
    """Each folder test runs on the synthetic twin and on the real slice (skipped without ../shared)."""
    return request.getfixturevalue("synthetic_xray" if request.param == "synthetic" else "xray_slice")


def test_synthetic_folder_mixes_formats_modes_and_sizes(synthetic_xray):
    from PIL import Image

    seen = set()
    for path in (p for paths in synthetic_xray.files.values() for p in paths):
        with Image.open(path) as im:
            seen.add((im.format, im.mode, im.size))
    assert {f for f, _, _ in seen} == {"PNG", "JPEG"} and {m for _, m, _ in seen} == {"L", "RGB"}
    assert len({s for _, _, s in seen}) >= 3 and any(w != h for _, _, (w, h) in seen)
    assert (synthetic_xray.root / "train" / "NORMAL" / "broken.png").is_file()


def test_pipeline_train_evaluate_predict_with_corrupt_file(image_folder, tmp_path):
    data = image_folder
    out = tmp_path / "run"
    outcome = train_classifier(
        data.root,
        out,
        "seed-cnn",
        epochs=2,
        image_size=48,
        validation_fraction=0.25,
        cache_dir=tmp_path / "cache",
        workers=0,
        progress=False,
        group_pattern=data.group_pattern,
    )
    for name in (
        "metrics.json",
        "predictions.csv",
        "report.html",
        "model/model.json",
        "plots/roc.png",
        "plots/confusion.png",
        "plots/curves.png",
        "plots/reliability.png",
        "plots/top_losses.png",
    ):
        assert (out / name).exists(), name
    for gone in ("plots/worst.png", "plots/gradcam.png", "plots/lr_finder.png"):  # one top-losses figure; no lr search
        assert not (out / gone).exists(), gone
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["n_val"] == outcome.evaluation.metrics["n"]
    assert metrics["n_train"] + metrics["n_val"] == data.n_images and metrics["n_skipped"] == len(data.skipped)
    assert outcome.classifier.decode_settings.hw == (48, 48)  # decoded at the network input size

    # predictions.csv: one row per validation image, then every file that could not be read, with its reason
    predictions = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    loaded = predictions[predictions["status"] == "loaded"]
    skipped = predictions[predictions["status"] == "skipped"]
    assert len(loaded) == metrics["n_val"] and set(loaded["true"]) == set(data.files)
    assert {Path(p).name for p in skipped["path"]} == data.skipped and skipped["reason"].str.len().gt(0).all()
    if data.skipped:
        listed = pd.read_csv(out / "skipped.csv", keep_default_na=False)
        assert {Path(p).name for p in listed["path"]} == data.skipped and listed["reason"].str.len().gt(0).all()
    else:
        assert not (out / "skipped.csv").exists()
    # no patient has images on both sides of the split
    every = {str(p) for paths in data.files.values() for p in paths}
    val_paths = set(loaded["path"])
    assert val_paths <= every
    assert {data.group(p) for p in val_paths}.isdisjoint({data.group(p) for p in every - val_paths})

    # the model folder reloads into the same predictions
    reloaded = ImageClassifier.load(out / "model")
    val = outcome.validation.images
    np.testing.assert_array_equal(reloaded.predict_proba(val), outcome.classifier.predict_proba(val))
    assert reloaded.threshold_ == outcome.classifier.threshold_ and reloaded.classes_ == sorted(data.files)

    images = tmp_path / "new"
    images.mkdir()
    first = data.files[sorted(data.files)[0]][:3]
    for f in first:
        shutil.copy(f, images / f.name)
    broken = {p.name for p in write_broken_files(images, good=first[-1])}  # corrupt.jpeg, truncated.<suffix>
    frame = predict_images(
        out / "model", images, tmp_path / "pred.csv", cache_dir=tmp_path / "cache", workers=0, progress=False
    )
    assert len(frame) == 5 and (frame["status"] == "loaded").sum() == 3
    bad = frame[frame["status"] == "skipped"].set_index(
        frame.loc[frame["status"] == "skipped", "path"].map(lambda p: p.rsplit("/", 1)[-1])
    )
    assert set(bad.index) == broken and len(broken) == 2 and bad["reason"].str.len().min() > 0
    assert pd.read_csv(tmp_path / "pred.csv").shape[0] == 5

    ev = evaluate_classifier(
        out / "model", data.root, tmp_path / "eval", cache_dir=tmp_path / "cache", workers=0, progress=False
    )
    assert ev.metrics["n"] == data.n_images and ev.metrics["roc_auc"] is not None


def test_cli_train_and_predict(image_folder, tmp_path):
    from typer.testing import CliRunner

    from pixsort.cli import app

    data = image_folder
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(
        app,
        [
            "train",
            str(data.root),
            "--model",
            "seed-cnn",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--image-size",
            "32",
            "--target-sensitivity",
            "0.95",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["threshold_info"]["method"] == "sensitivity"
    assert meta["validation_metrics"]["sensitivity"] >= 0.95  # the threshold was chosen for it
    result = runner.invoke(
        app,
        [
            "predict",
            str(out / "model"),
            str(data.root),
            "--out",
            str(tmp_path / "p.csv"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert len(predicted) == data.n_images + len(data.skipped)
    assert (predicted["status"] == "loaded").sum() == data.n_images
    assert {Path(p).name for p in predicted.loc[predicted["status"] == "skipped", "path"]} == data.skipped
    result = runner.invoke(app, ["train", str(data.root), "--model", "nope", "--out", str(out)])
    assert result.exit_code == 2 and "unknown model" in result.output


def test_train_from_npz_arrays_keeps_their_validation_split_and_native_size(tmp_path):
    """MedMNIST-style .npz (no ../shared needed): the source's own val split is used
    (>= 50 items, >= 5 a class) and images smaller than the network stay at 28x28."""
    xt, yt, xv, yv = two_class_arrays(n_train=(40, 40), n_val=(30, 30), seed=3)
    source = tmp_path / "blobs.npz"
    np.savez(source, train_images=xt[..., 0], train_labels=yt[:, None], val_images=xv[..., 0], val_labels=yv[:, None])
    outcome = train_classifier(
        source,
        tmp_path / "run",
        "seed-cnn",
        epochs=1,
        image_size=64,
        cache_dir=tmp_path / "cache",
        workers=0,
        progress=False,
    )
    assert outcome.classifier.decode_settings.hw == (28, 28)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["n_train"], metrics["n_val"]) == (80, 60)
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert len(predictions) == 60 and predictions["path"].str.contains("val_images").all()
    assert outcome.classifier.training_["train_counts"] == [40, 40]


def test_tta_is_mirror_invariant(train_slice):
    xt, yt, xv, yv = train_slice
    clf = _small_cnn(epochs=1).fit(xt, yt, xv, yv)
    mirrored = np.ascontiguousarray(xv[:16, :, ::-1])
    np.testing.assert_allclose(clf.predict_proba(xv[:16], tta=True), clf.predict_proba(mirrored, tta=True), atol=1e-5)
    assert not np.allclose(clf.predict_proba(xv[:16]), clf.predict_proba(mirrored))


def test_threshold_can_be_rechosen_after_fit(train_slice):
    xt, yt, xv, yv = train_slice
    clf = _small_cnn(epochs=1).fit(xt, yt, xv, yv)
    clf.set_threshold(target_sensitivity=0.99)
    assert clf.validation_metrics_["sensitivity"] >= 0.99
    assert clf.threshold_info_["method"] == "sensitivity"
    clf.set_threshold(threshold=0.5)
    assert clf.threshold_ == 0.5 and clf.threshold_info_["method"] == "fixed"
