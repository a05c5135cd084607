"""Temperature scaling and ``pixsort calibrate``: the fit on known logits, the
temperature inside ``predict_proba`` (1.0 changes nothing), a model folder whose
weights stay byte-identical, the re-chosen threshold and the calibration report."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from pixsort.classify.calibration import fit_temperature, temperature_nll
from pixsort.classify.estimator import ImageClassifier
from pixsort.classify.training import logits_to_proba
from synthetic import level_images, level_picture, two_class_arrays, write_class_folders

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small trainings: one torch thread (conftest)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- the fit


@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_fit_temperature_recovers_the_temperature_labels_were_drawn_with(true_t):
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, size=(4000, 1))
    y = (rng.random(4000) < 1 / (1 + np.exp(-z[:, 0] / true_t))).astype(int)
    fit = fit_temperature(z, y)
    assert fit.temperature == pytest.approx(true_t, rel=0.1)
    assert fit.nll_after < fit.nll_before and fit.n == 4000
    assert fit.nll_after == pytest.approx(temperature_nll(z, y, fit.temperature))
    # the minimum: a little either side is worse
    assert temperature_nll(z, y, fit.temperature * 1.1) > fit.nll_after
    assert temperature_nll(z, y, fit.temperature / 1.1) > fit.nll_after


def test_fit_temperature_multiclass_softmax():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, size=(3000, 3))
    p = np.exp(z / 2.0) / np.exp(z / 2.0).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    assert fit_temperature(z, y).temperature == pytest.approx(2.0, rel=0.1)
    # the NLL by hand at T = 1: log-sum-exp minus the true class's logit
    by_hand = np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y])
    assert temperature_nll(z, y, 1.0) == pytest.approx(by_hand)
    with pytest.raises(ValueError, match="class indices"):
        fit_temperature(z, np.full(len(z), 3))


# ----------------------------------------------------------------------------- the estimator


@pytest.fixture(scope="module")
def fitted():
    xt, yt, xv, yv = two_class_arrays(n_train=(40, 40), n_val=(30, 30), size=16, seed=2)
    clf = ImageClassifier("seed-cnn", epochs=1, image_size=16, batch_size=16, progress=False).fit(xt, yt, xv, yv)
    return clf, xv, yv


def test_temperature_one_is_todays_probabilities_and_others_divide_the_logit(fitted):
    clf, xv, _ = fitted
    assert clf.temperature_ == 1.0 and clf.calibration_ is None
    logits = clf.predict_logits(xv)
    assert logits.shape == (len(xv), 1) and logits.dtype == np.float32
    plain = logits_to_proba(torch.from_numpy(logits)).double().numpy()
    np.testing.assert_array_equal(clf.predict_proba(xv), plain)  # bit for bit
    try:
        clf.temperature_ = 2.0
        expected = 1 / (1 + np.exp(-logits[:, 0].astype(np.float64) / 2.0))
        np.testing.assert_allclose(clf.predict_proba(xv)[:, 1], expected, rtol=1e-5)
        assert not np.allclose(clf.predict_proba(xv), plain)
    finally:
        clf.temperature_ = 1.0


def test_save_without_weights_rewrites_only_model_json(fitted, tmp_path):
    clf, xv, _ = fitted
    folder = clf.save(tmp_path / "model")
    weights = folder / "weights.safetensors"
    digest, mtime = _sha(weights), weights.stat().st_mtime_ns
    clone = ImageClassifier.load(folder)
    assert clone.temperature_ == 1.0 and clone.calibration_ is None and clone.provenance_ is None
    clone.temperature_, clone.calibration_ = 1.7, {"temperature": 1.7}
    clone.save(folder, weights=False)
    assert _sha(weights) == digest and weights.stat().st_mtime_ns == mtime
    meta = json.loads((folder / "model.json").read_text())
    assert meta["temperature"] == 1.7 and meta["calibration"] == {"temperature": 1.7}
    again = ImageClassifier.load(folder)
    assert again.temperature_ == 1.7
    np.testing.assert_allclose(again.predict_proba(xv), clone.predict_proba(xv))
    with pytest.raises(FileNotFoundError, match="weights"):
        clone.save(tmp_path / "empty", weights=False)


def test_validation_metrics_carry_intervals(fitted):
    clf, _, _ = fitted
    ci = clf.validation_metrics_["ci95"]
    for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc", "pr_auc"):
        lo, hi = ci[key]
        assert lo <= clf.validation_metrics_[key] <= hi


# ----------------------------------------------------------------------------- pixsort calibrate


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A seed CNN trained on level pictures, saved; and a local labelled folder from a
    "scanner" that shifts every level by +25 (the ranking holds, the probabilities do not)."""
    root = tmp_path_factory.mktemp("site")
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    x = np.stack([level_picture(int(c), (16, 16), rng) for c in y])
    yv = np.repeat([0, 1], 20)
    xv = np.stack([level_picture(int(c), (16, 16), rng) for c in yv])
    clf = ImageClassifier("seed-cnn", epochs=2, image_size=16, batch_size=16, progress=False)
    clf.fit(x, y, xv, yv, classes=["NORMAL", "PNEUMONIA"])
    clf.save(root / "run" / "model")
    write_class_folders(root / "local", {"NORMAL": 30, "PNEUMONIA": 30},
                        lambda c, i, hw, r: level_picture(c, hw, r, shift=25), base_size=16, seed=4)  # fmt: skip
    return root


def _copy_model(site, tmp_path):
    import shutil

    shutil.copytree(site / "run" / "model", tmp_path / "run" / "model")
    return tmp_path / "run" / "model"


def test_calibrate_fits_t_rechooses_the_threshold_and_keeps_the_weights(site, tmp_path):
    from pixsort.classify.threshold import choose_threshold
    from pixsort.data import load_images, open_dataset
    from pixsort.workflows import calibrate_classifier

    model = _copy_model(site, tmp_path)
    weights = model / "weights.safetensors"
    digest, mtime = _sha(weights), weights.stat().st_mtime_ns
    old = ImageClassifier.load(model)
    outcome = calibrate_classifier(model, site / "local", cache_dir=tmp_path / "cache", workers=0, progress=False)

    assert _sha(weights) == digest and weights.stat().st_mtime_ns == mtime  # the weights never move
    meta = json.loads((model / "model.json").read_text())
    t = meta["temperature"]
    cal = meta["calibration"]
    assert t == outcome.fit.temperature == cal["temperature"] and abs(np.log(t)) > 0.05
    assert cal["data"] == str(site / "local") and cal["n"] == 60
    assert cal["class_counts"] == {"NORMAL": 30, "PNEUMONIA": 30}
    assert cal["nll_after"] < cal["nll_before"] and cal["threshold_before"] == old.threshold_
    for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc", "pr_auc"):
        assert cal["before"]["ci95"][key] is not None and cal["after"]["ci95"][key] is not None
    assert cal["after"]["roc_auc"] == pytest.approx(cal["before"]["roc_auc"])  # T changes no ranking
    assert cal["after"]["log_loss"] == pytest.approx(cal["nll_after"], rel=1e-3)

    # the reloaded model applies T, and its threshold is Youden's on the calibrated local probabilities
    reloaded = ImageClassifier.load(model)
    images = load_images(open_dataset(site / "local"), reloaded.decode_settings, cache_dir=tmp_path / "cache",
                         workers=0, progress=False)  # fmt: skip
    y = np.array([reloaded.classes_.index(images.class_names[i]) for i in images.labels])
    z = reloaded.predict_logits(images.images)[:, 0].astype(np.float64)
    p = reloaded.predict_proba(images.images)[:, 1]
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-z / t)), rtol=1e-5)
    assert meta["threshold"] == choose_threshold(y, p, "youden").threshold
    assert meta["threshold_info"]["method"] == "youden" and "calibration set" in meta["threshold_info"]["chosen_on"]
    assert meta["validation_metrics"]["n"] == 60  # the threshold's own record: the calibration set

    files = outcome.files
    default_out = tmp_path / "run" / "calibration"  # beside the model folder
    for key in ("report", "calibration", "predictions", "reliability_before", "reliability_after"):
        assert files[key].exists() and default_out in files[key].parents
    report = files["report"].read_text()
    assert f"1 -&gt; {t:.4g}" in report  # the temperature, before and after
    assert json.loads(files["calibration"].read_text())["temperature"] == t
    card = (model / "MODEL_CARD.md").read_text()
    assert f"temperature T = {t:.3f}" in card and f"Temperature: {t:.4f}" in card
    assert f">= {meta['threshold']:.4f}, chosen by Youden's J" in card and "calibration set" in card


def test_calibrate_meets_a_target_sensitivity(site, tmp_path):
    from pixsort.workflows import calibrate_classifier

    model = _copy_model(site, tmp_path)
    outcome = calibrate_classifier(model, site / "local", tmp_path / "cal", target_sensitivity=0.95,
                                   cache_dir=tmp_path / "cache", workers=0, progress=False)  # fmt: skip
    info = outcome.classifier.threshold_info_
    assert info["method"] == "sensitivity" and info["target_sensitivity"] == 0.95
    assert outcome.after["sensitivity"] >= 0.95
    assert (tmp_path / "cal" / "report.html").exists()
    with pytest.raises(ValueError, match="target sensitivity"):
        calibrate_classifier(model, site / "local", target_sensitivity=1.5)


def test_calibrate_a_multiclass_model_fits_t_without_a_threshold(tmp_path):
    from pixsort.workflows import calibrate_classifier

    x, y = level_images((30, 30, 30), size=16)
    clf = ImageClassifier("seed-cnn", epochs=1, image_size=16, batch_size=16, progress=False).fit(x, y)  # "0", "1", "2"
    clf.save(tmp_path / "model")
    xl, yl = level_images((10, 10, 10), size=16, seed=3)
    np.savez(tmp_path / "local.npz", images=xl[..., 0], labels=yl)
    outcome = calibrate_classifier(tmp_path / "model", tmp_path / "local.npz", tmp_path / "cal",
                                   cache_dir=tmp_path / "cache", workers=0, progress=False)  # fmt: skip
    assert outcome.classifier.threshold_ is None and outcome.record["threshold"] is None
    assert outcome.fit.nll_after <= outcome.fit.nll_before
    assert json.loads((tmp_path / "model" / "model.json").read_text())["temperature"] == outcome.fit.temperature


def test_cli_calibrate(site, tmp_path):
    from typer.testing import CliRunner

    from pixsort.cli import app

    model = _copy_model(site, tmp_path)
    runner = CliRunner()
    args = ["calibrate", str(model), str(site / "local"), "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--workers", "0"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    t = json.loads((model / "model.json").read_text())["temperature"]
    text = " ".join(result.output.split())
    assert f"temperature 1 -> {t:.4g}" in text and "before" in text and "after" in text
    assert (tmp_path / "out" / "report.html").exists()
    odd = tmp_path / "odd"
    write_class_folders(odd, {"NORMAL": 2, "COVID": 2}, lambda c, i, hw, r: level_picture(c, hw, r), base_size=16)
    bad = runner.invoke(app, ["calibrate", str(model), str(odd), "--workers", "0"])
    assert bad.exit_code == 2 and "classes the model does not know" in bad.output
    one = tmp_path / "one"
    write_class_folders(one, {"NORMAL": 3}, lambda c, i, hw, r: level_picture(c, hw, r), base_size=16)
    bad = runner.invoke(app, ["calibrate", str(model), str(one), "--workers", "0", "--cache-dir", str(tmp_path / "c")])
    assert bad.exit_code == 2 and "at least two classes" in bad.output
    assert "calibrate" in runner.invoke(app, ["--help"]).output
