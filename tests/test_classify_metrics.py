"""Metrics and thresholds against scikit-learn and hand-computed values on fixed arrays."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from pixsort.classify.metrics import (
    classification_metrics,
    expected_calibration_error,
    most_confused,
    reliability_table,
)
from pixsort.classify.threshold import choose_threshold, threshold_for_sensitivity, threshold_youden

Y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
P1 = np.array([0.1, 0.35, 0.4, 0.8, 0.2, 0.55, 0.6, 0.7, 0.9, 0.95])
PROBA = np.stack([1 - P1, P1], axis=1)


def test_binary_metrics_match_sklearn():
    m = classification_metrics(Y, PROBA, ["neg", "pos"], threshold=0.5)
    pred = (P1 >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(accuracy_score(Y, pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(Y, pred))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(Y, P1))
    assert m["pr_auc"] == pytest.approx(average_precision_score(Y, P1))
    assert m["log_loss"] == pytest.approx(log_loss(Y, PROBA))
    assert m["confusion_matrix"] == confusion_matrix(Y, pred).tolist()
    assert m["sensitivity"] == pytest.approx(recall_score(Y, pred))  # 5 of 6 positives
    assert m["specificity"] == pytest.approx(recall_score(Y, pred, pos_label=0))  # 3 of 4 negatives
    assert m["per_class"]["pos"]["precision"] == pytest.approx(precision_score(Y, pred))
    assert m["per_class"]["neg"]["f1"] == pytest.approx(f1_score(Y, pred, pos_label=0))
    assert (m["sensitivity"], m["specificity"]) == (pytest.approx(5 / 6), pytest.approx(3 / 4))


def test_threshold_changes_decisions_not_ranking_metrics():
    low = classification_metrics(Y, PROBA, ["neg", "pos"], threshold=0.15)
    high = classification_metrics(Y, PROBA, ["neg", "pos"], threshold=0.5)
    assert low["sensitivity"] == 1.0 and low["specificity"] == 0.25
    assert low["roc_auc"] == high["roc_auc"]


def test_multiclass_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    logits = rng.normal(size=(60, 3)) + 2.0 * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = classification_metrics(y, proba, ["a", "b", "c"])
    pred = proba.argmax(1)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert "sensitivity" not in m


def _onehot_proba(pred: np.ndarray, k: int, sure: float = 0.8) -> np.ndarray:
    """Probabilities whose arg-max is ``pred``: ``sure`` on it, the rest shared."""
    proba = np.full((len(pred), k), (1 - sure) / (k - 1))
    proba[np.arange(len(pred)), pred] = sure
    return proba


def test_most_confused_pairs_by_hand():
    # true a: 6 items, 1 taken for b, 3 for c; true b: 4 items, 2 for a; true c: 5 items, 1 for b, 1 for a
    y = np.array([0] * 6 + [1] * 4 + [2] * 5)
    pred = np.array([0, 0, 1, 2, 2, 2] + [1, 1, 0, 0] + [2, 2, 2, 1, 0])
    m = classification_metrics(y, _onehot_proba(pred, 3), ["a", "b", "c"])
    assert m["most_confused"] == [
        {"true": "a", "predicted": "c", "count": 3, "share": pytest.approx(3 / 6)},
        {"true": "b", "predicted": "a", "count": 2, "share": pytest.approx(2 / 4)},
        {"true": "c", "predicted": "a", "count": 1, "share": pytest.approx(1 / 5)},  # ties: larger share first
        {"true": "c", "predicted": "b", "count": 1, "share": pytest.approx(1 / 5)},  # then matrix order
        {"true": "a", "predicted": "b", "count": 1, "share": pytest.approx(1 / 6)},
    ]
    cm = np.asarray(m["confusion_matrix"])
    assert sum(row["count"] for row in m["most_confused"]) == cm.sum() - np.trace(cm)  # every error, once
    assert most_confused(np.diag([3, 4, 5]), ["a", "b", "c"]) == []  # no errors, no pairs (no diagonal)
    assert "most_confused" not in classification_metrics(Y, PROBA, ["neg", "pos"], threshold=0.5)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # the absent class, on purpose
def test_per_class_metrics_multiclass_include_one_vs_rest_auc():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2, 3], [10, 20, 15, 5])
    logits = rng.normal(size=(50, 4)) + 1.5 * np.eye(4)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    names = ["a", "b", "c", "d"]
    m = classification_metrics(y, proba, names)
    pred = proba.argmax(1)
    for c, name in enumerate(names):
        row = m["per_class"][name]
        assert set(row) == {"precision", "recall", "f1", "support", "roc_auc"}
        assert row["precision"] == pytest.approx(precision_score(y == c, pred == c))
        assert row["recall"] == pytest.approx(recall_score(y == c, pred == c))
        assert row["f1"] == pytest.approx(f1_score(y == c, pred == c))
        assert row["support"] == int((y == c).sum())
        assert row["roc_auc"] == pytest.approx(roc_auc_score(y == c, proba[:, c]))
    aucs = [m["per_class"][n]["roc_auc"] for n in names]
    assert len(set(np.round(aucs, 6))) > 1  # per class, not the macro value repeated
    assert np.mean(aucs) == pytest.approx(m["roc_auc"])  # sklearn's one-vs-rest macro average
    # a class absent from the labels has no AUC of its own, the others keep theirs
    keep = y != 3
    absent = classification_metrics(y[keep], proba[keep], names)
    assert absent["per_class"]["d"]["roc_auc"] is None and absent["per_class"]["d"]["support"] == 0
    assert absent["per_class"]["a"]["roc_auc"] == pytest.approx(roc_auc_score(y[keep] == 0, proba[keep, 0]))


def test_ece_by_hand():
    # two bins used: confidences 0.9 (2 items, 1 right) and 0.6 (2 items, both right)
    y = np.array([1, 0, 1, 0])
    proba = np.array([[0.1, 0.9], [0.1, 0.9], [0.4, 0.6], [0.6, 0.4]])
    expected = (2 * abs(0.5 - 0.9) + 2 * abs(1.0 - 0.6)) / 4
    assert expected_calibration_error(y, proba, n_bins=10) == pytest.approx(expected)
    table = reliability_table(y, proba, n_bins=10)
    assert table["count"].sum() == 4 and table["count"][8] == 2 and table["count"][5] == 2


@pytest.mark.parametrize("target", [0.5, 0.8, 0.95, 1.0])
def test_threshold_hits_target_sensitivity(target):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    scores = rng.normal(size=500) + 1.5 * y
    choice = threshold_for_sensitivity(y, scores, target)
    achieved = np.mean(scores[y == 1] >= choice.threshold)
    assert achieved >= target
    assert choice.sensitivity == pytest.approx(achieved)
    assert choice.specificity == pytest.approx(np.mean(scores[y == 0] < choice.threshold))
    # the highest such operating point: the threshold sits just below the lowest score it
    # keeps; one observed score higher misses the target
    above = np.sort(np.unique(scores[scores > choice.threshold]))
    assert np.mean(scores[y == 1] >= above[0]) == pytest.approx(achieved)
    if len(above) > 1:
        assert np.mean(scores[y == 1] >= above[1]) < target


def test_threshold_on_known_scores():
    # positives' scores 0.2..0.95; 5 of 6 positives are >= 0.55; the threshold lies halfway
    # to the next lower score (0.4 below 0.55, 0.1 below 0.2)
    assert threshold_for_sensitivity(Y, P1, 0.8).threshold == pytest.approx((0.55 + 0.4) / 2)
    assert threshold_for_sensitivity(Y, P1, 0.9).threshold == pytest.approx((0.2 + 0.1) / 2)
    j = threshold_youden(Y, P1)
    assert j.threshold == pytest.approx(0.475) and j.sensitivity + j.specificity - 1 == pytest.approx(5 / 6 + 3 / 4 - 1)
    assert choose_threshold(Y, P1, "fixed", fixed=0.5).threshold == 0.5


def test_threshold_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        threshold_youden(np.ones(5), np.linspace(0, 1, 5))
    with pytest.raises(ValueError):
        threshold_for_sensitivity(Y, P1, 1.5)


# ----------------------------------------------------------------------------- bootstrap intervals


def test_weighted_ranking_metrics_match_sklearn_sample_weights():
    from pixsort.classify.metrics import weighted_average_precision, weighted_roc_auc

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    scores = np.round(rng.normal(size=200) + y, 1)  # rounded: many ties
    w = rng.integers(0, 4, (6, 200)).astype(float)
    auc, ap = weighted_roc_auc(w, y == 1, scores), weighted_average_precision(w, y == 1, scores)
    for row, a, p in zip(w, auc, ap):
        assert a == pytest.approx(roc_auc_score(y, scores, sample_weight=row), abs=1e-12)
        assert p == pytest.approx(average_precision_score(y, scores, sample_weight=row), abs=1e-12)


def _loop_bootstrap(y, proba, threshold, n_resamples, seed):
    """The same stratified draws as bootstrap_intervals, scored one resample at a time by scikit-learn."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(y == c) for c in np.unique(y)]
    drawn = np.concatenate([m[rng.integers(0, len(m), size=(n_resamples, len(m)))] for m in members], axis=1)
    pred = (proba[:, 1] >= threshold).astype(int)
    values = {
        "accuracy": [],
        "balanced_accuracy": [],
        "sensitivity": [],
        "specificity": [],
        "roc_auc": [],
        "pr_auc": [],
    }
    for idx in drawn:
        yy, pp, ss = y[idx], pred[idx], proba[idx, 1]
        values["accuracy"].append(accuracy_score(yy, pp))
        values["balanced_accuracy"].append(balanced_accuracy_score(yy, pp))
        values["sensitivity"].append(recall_score(yy, pp))
        values["specificity"].append(recall_score(yy, pp, pos_label=0))
        values["roc_auc"].append(roc_auc_score(yy, ss))
        values["pr_auc"].append(average_precision_score(yy, ss))
    return {k: np.percentile(v, [2.5, 97.5]) for k, v in values.items()}


def test_bootstrap_intervals_equal_a_loop_over_resamples():
    from pixsort.classify.metrics import bootstrap_intervals

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(60, int), np.ones(25, int)]
    p1 = 1 / (1 + np.exp(-(rng.normal(size=85) + 1.2 * y)))
    proba = np.stack([1 - p1, p1], axis=1)
    got = bootstrap_intervals(y, proba, 0.5, n_resamples=100, random_state=7)
    expected = _loop_bootstrap(y, proba, 0.5, 100, 7)
    for key, (lo, hi) in expected.items():
        assert got[key] == pytest.approx([lo, hi], abs=1e-12), key
    assert got == bootstrap_intervals(y, proba, 0.5, n_resamples=100, random_state=7)  # seeded
    assert got["roc_auc"] != bootstrap_intervals(y, proba, 0.5, n_resamples=100, random_state=8)["roc_auc"]


def test_bootstrap_intervals_cover_the_estimate_and_shrink_with_more_data():

    def intervals(n):
        rng = np.random.default_rng(1)
        y = rng.integers(0, 2, n)
        p1 = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * y)))
        proba = np.stack([1 - p1, p1], axis=1)
        return classification_metrics(y, proba, ["neg", "pos"], 0.5, n_resamples=1000)

    small, large = intervals(100), intervals(1600)
    for m in (small, large):
        for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "roc_auc", "pr_auc"):
            lo, hi = m["ci95"][key]
            assert lo <= m[key] <= hi, key
    width = {k: np.diff(small["ci95"][k])[0] / np.diff(large["ci95"][k])[0] for k in ("accuracy", "roc_auc")}
    assert all(2 < r < 8 for r in width.values()), width  # 16x the data: about 4x narrower (3.7, 2.3 here)
    assert small["ci_method"]["n_resamples"] == 1000 and small["ci_method"]["level"] == 0.95
    assert "ci95" not in classification_metrics(Y, PROBA, ["neg", "pos"], 0.5)  # none unless asked


def test_bootstrap_is_stratified_so_rare_classes_keep_an_auc():
    from pixsort.classify.metrics import bootstrap_intervals

    y = np.r_[np.zeros(97, int), np.ones(3, int)]  # 3 positives: unstratified resamples would often have none
    p1 = np.linspace(0.01, 0.99, 100)
    got = bootstrap_intervals(y, np.stack([1 - p1, p1], axis=1), 0.5, n_resamples=500)
    assert got["roc_auc"] is not None and got["roc_auc"][1] == 1.0
    assert got["sensitivity"] == [1.0, 1.0]  # the 3 positives score 0.97-0.99: every resample finds them all


def test_bootstrap_multiclass_and_undefined_metrics():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    logits = rng.normal(size=(90, 3)) + 2.0 * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = classification_metrics(y, proba, ["a", "b", "c"], n_resamples=200)
    assert m["ci95"]["sensitivity"] is None and m["ci95"]["ppv"] is None
    lo, hi = m["ci95"]["roc_auc"]
    assert lo <= m["roc_auc"] <= hi < 1.0
    one_class = classification_metrics(np.ones(10, int), PROBA, ["neg", "pos"], 0.5, n_resamples=50)
    assert one_class["ci95"]["roc_auc"] is None and one_class["ci95"]["specificity"] is None
    assert one_class["ci95"]["sensitivity"] is not None


def test_disagreements_need_intervals_that_do_not_overlap():
    from pixsort.classify.metrics import disagreements

    a = {
        "roc_auc": 0.99,
        "balanced_accuracy": 0.97,
        "ci95": {"roc_auc": [0.98, 1.0], "balanced_accuracy": [0.95, 0.98]},
    }
    b = {
        "roc_auc": 0.88,
        "balanced_accuracy": 0.93,
        "ci95": {"roc_auc": [0.84, 0.92], "balanced_accuracy": [0.9, 0.96]},
    }
    found = disagreements(a, b)
    assert [d["metric"] for d in found] == ["roc_auc"]  # balanced accuracy intervals overlap
    assert found[0]["a_ci95"] == [0.98, 1.0] and found[0]["b"] == 0.88
    assert disagreements(a, {"roc_auc": 0.5}) == []  # no interval: nothing to compare


def test_a_chosen_threshold_lies_between_two_scores_so_rounding_cannot_flip_an_image():
    from pixsort.classify.threshold import threshold_for_sensitivity, threshold_youden

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200, int), np.ones(400, int)]
    scores = np.clip(np.r_[rng.normal(0.3, 0.15, 200), rng.normal(0.7, 0.15, 400)], 0, 1)
    for choice in (threshold_for_sensitivity(y, scores, 0.95), threshold_youden(y, scores)):
        assert not np.isin(choice.threshold, scores)  # never exactly an image's score
        for stored in (scores, np.round(scores, 6), scores.astype(np.float32)):
            pred = stored >= choice.threshold
            assert pred[y == 1].mean() == pytest.approx(choice.sensitivity)
            assert (~pred[y == 0]).mean() == pytest.approx(choice.specificity)
