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

from pixsort.classify.metrics import classification_metrics, expected_calibration_error, reliability_table
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
    # the highest such threshold: the next observed score above it misses the target
    above = np.sort(np.unique(scores[scores > choice.threshold]))
    if len(above):
        assert np.mean(scores[y == 1] >= above[0]) < target


def test_threshold_on_known_scores():
    # positives' scores 0.2..0.95; 5 of 6 positives are >= 0.55
    assert threshold_for_sensitivity(Y, P1, 0.8).threshold == pytest.approx(0.55)
    assert threshold_for_sensitivity(Y, P1, 0.9).threshold == pytest.approx(0.2)
    j = threshold_youden(Y, P1)
    assert j.threshold == pytest.approx(0.55) and j.sensitivity + j.specificity - 1 == pytest.approx(5 / 6 + 3 / 4 - 1)
    assert choose_threshold(Y, P1, "fixed", fixed=0.5).threshold == 0.5


def test_threshold_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        threshold_youden(np.ones(5), np.linspace(0, 1, 5))
    with pytest.raises(ValueError):
        threshold_for_sensitivity(Y, P1, 1.5)
