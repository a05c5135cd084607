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
from synthetic import two_class_arrays


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    from pixsort.base.runtime import tune_cpu

    tune_cpu()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
