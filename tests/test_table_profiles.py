"""Cluster profiles against tables worked out by hand (pixsort.cluster.profiles)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import chi2_contingency, fisher_exact, mannwhitneyu

from pixsort.cluster.table.profiles import (
    attribute_tables,
    central_members,
    cluster_summary,
    defining_features,
    describe_clusters,
    feature_profiles,
)

# 4 rows in cluster 0, 6 in cluster 1, and one unclustered row that must not count
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, -1])
FEATURES = pd.DataFrame(
    {
        "a": [1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1],  # cluster 0: 3/4, cluster 1: 2/6, overall 5/10
        "b": [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1],  # cluster 0: 0/4, cluster 1: 6/6, overall 6/10
        "c": [1] * 11,  # everyone: nothing to test
    },
    dtype=float,
)


@pytest.fixture(scope="module")
def profiles() -> pd.DataFrame:
    return feature_profiles(FEATURES, LABELS).set_index(["cluster", "feature"])


def test_prevalence_and_lift_match_the_hand_made_table(profiles):
    expected = {  # (cluster, feature): (count, prevalence, rest, overall, lift)
        (0, "a"): (3, 0.75, 2 / 6, 0.5, 1.5),
        (1, "a"): (2, 2 / 6, 0.75, 0.5, (2 / 6) / 0.5),
        (0, "b"): (0, 0.0, 1.0, 0.6, 0.0),
        (1, "b"): (6, 1.0, 0.0, 0.6, 1 / 0.6),
        (0, "c"): (4, 1.0, 1.0, 1.0, 1.0),
    }
    for key, (count, prevalence, rest, overall, lift) in expected.items():
        row = profiles.loc[key]
        assert row["count"] == count and row["size"] == (4 if key[0] == 0 else 6)
        assert row["prevalence"] == pytest.approx(prevalence)
        assert row["prevalence_rest"] == pytest.approx(rest)
        assert row["prevalence_overall"] == pytest.approx(overall)
        assert row["lift"] == pytest.approx(lift)


def test_fisher_test_and_benjamini_hochberg_by_hand(profiles):
    odds, p_a = fisher_exact([[3, 1], [2, 4]])
    _, p_b = fisher_exact([[0, 4], [6, 0]])
    assert profiles.loc[(0, "a"), "odds_ratio"] == pytest.approx(odds) == pytest.approx(6.0)
    assert profiles.loc[(0, "a"), "p_value"] == pytest.approx(p_a)
    assert profiles.loc[(1, "b"), "p_value"] == pytest.approx(p_b)
    # four tests (a and b in each cluster; c is held by everyone and is not tested):
    # sorted p = p_b, p_b, p_a, p_a; q_(i) = min over j >= i of p_(j) * m / j
    assert np.isnan(profiles.loc[(0, "c"), "p_value"]) and np.isnan(profiles.loc[(0, "c"), "q_value"])
    q_b = min(p_b * 4 / 2, p_a * 4 / 4)
    q_a = min(p_a * 4 / 4, 1.0)
    assert profiles.loc[(0, "b"), "q_value"] == pytest.approx(q_b)
    assert profiles.loc[(1, "a"), "q_value"] == pytest.approx(q_a)


def test_numeric_features_get_means_and_a_rank_test():
    features = FEATURES.assign(height=[150, 160, 170, 180, 190, 200, 210, 220, 230, 240, 999.0])
    kinds = pd.Series({"a": "binary", "b": "binary", "c": "binary", "height": "numeric"})
    table = feature_profiles(features, LABELS, kinds).set_index(["cluster", "feature"])
    row = table.loc[(0, "height")]
    assert row["kind"] == "numeric"
    assert row["mean"] == pytest.approx(165.0)
    assert row["mean_overall"] == pytest.approx(195.0)  # the unclustered 999 left out
    assert row["p_value"] == pytest.approx(mannwhitneyu([150, 160, 170, 180], [190, 200, 210, 220, 230, 240]).pvalue)
    assert np.isnan(row["lift"])


def test_defining_features_need_significance_prevalence_and_rank_by_gain():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    features = pd.DataFrame(
        {
            "common_in_0": np.r_[np.ones(90), np.zeros(100), np.ones(10)],  # +40 points in cluster 0
            "bit_more_in_0": np.r_[np.ones(70), np.zeros(30), np.ones(30), np.zeros(70)],  # +20 points
            "rare_in_0": np.r_[np.ones(4), np.zeros(196)],  # lift 2 but held by 4% of cluster 0
            "noise": (rng.random(200) < 0.5).astype(float),
        }
    )
    table = feature_profiles(features, labels)
    over = defining_features(table, 0, n=5)
    assert over["feature"].tolist() == ["common_in_0", "bit_more_in_0"]
    assert over["gain"].tolist() == pytest.approx([0.4, 0.2])
    under = defining_features(table, 1, over=False)
    assert under["feature"].tolist() == ["common_in_0", "bit_more_in_0"]


def test_central_members_are_in_medoid_order():
    embedding = np.array([[0.0], [1.0], [2.0], [10.0], [50.0], [51.0]])
    labels = np.array([0, 0, 0, 0, 1, 1])
    ids = pd.Series(["zero", "one", "two", "ten", "fifty", "fifty-one"])
    central = central_members(embedding, labels, ids, lambda a, b: cdist(a, b), n=3)
    # mean distance to the other members: zero 13/3, one 11/3, two 11/3, ten 27/3
    assert central.loc[central["cluster"] == 0, "id"].tolist() == ["one", "two", "zero"]
    assert central.loc[central["cluster"] == 0, "mean_distance"].tolist() == pytest.approx([11 / 3, 11 / 3, 13 / 3])
    assert central.loc[central["cluster"] == 1, "rank"].tolist() == [1, 2]
    assert central.loc[central["cluster"] == 0, "row"].tolist() == [1, 2, 0]


def test_summary_and_plain_words():
    table = feature_profiles(pd.concat([FEATURES] * 3, ignore_index=True), np.tile(LABELS, 3))
    central = pd.DataFrame({"cluster": [0, 1], "rank": [1, 1], "row": [0, 4], "id": ["Alpha", "Beta"]})
    summary = cluster_summary(np.tile(LABELS, 3), table, central, true_counts=np.tile(FEATURES.sum(axis=1), 3))
    assert summary["size"].tolist() == [12, 18]
    assert summary["share"].tolist() == pytest.approx([0.4, 0.6])
    assert summary["median_true"].tolist() == [2.0, 2.0]
    lines = describe_clusters(summary, "heroes")
    assert lines[1].startswith("Cluster 1: 18 heroes (60%), e.g. Beta. Typically 2 true features.")
    assert "Marked by b 100% vs 60%" in lines[1]
    assert "Rarer than overall: b 0% vs 60%" in lines[0]


def test_attribute_crosstabs_by_cluster():
    attributes = pd.DataFrame(
        {
            "Publisher": ["Marvel", "Marvel", "DC", np.nan, "DC", "DC", "DC", "Image", "DC", "Marvel", "Marvel"],
            "Weight": [80, 90, 100, np.nan, 60, 70, 50, 65, 55, 75, 500.0],
        }
    )
    publisher, weight = attribute_tables(attributes, LABELS, max_values=2)
    assert publisher.kind == "categorical" and weight.kind == "numeric"
    assert publisher.counts.columns.tolist() == ["DC", "Marvel", "(other)", "(missing)"]
    assert publisher.counts.loc[0].tolist() == [1, 2, 0, 1]
    assert publisher.counts.loc[1].tolist() == [4, 1, 1, 0]
    assert publisher.shares().loc[1].tolist() == pytest.approx([4 / 6, 1 / 6, 1 / 6, 0])
    known = np.array([[1, 2, 0], [4, 1, 1]])
    assert publisher.p_value == pytest.approx(chi2_contingency(known).pvalue)
    assert weight.counts.loc[0, "median"] == 90.0 and weight.counts.loc[0, "count"] == 3
    assert weight.counts.loc[1, "median"] == 62.5  # the unclustered 500 left out
    long = publisher.long()
    assert set(long.columns) == {"attribute", "cluster", "value", "count"}
    assert long["count"].sum() == 10


def test_profiles_refuse_misaligned_labels():
    with pytest.raises(ValueError, match="labels for"):
        feature_profiles(FEATURES, LABELS[:-1])
