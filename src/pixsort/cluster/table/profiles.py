"""What sets each cluster apart: feature prevalence and lift with a corrected test,
the members nearest the centre, and cross-tabs of joined attributes by cluster.

All functions take ``labels`` of shape (n_rows,) with -1 for rows outside every
cluster (HDBSCAN noise, rows with no true feature); those rows are left out, so
"overall" means "over the clustered rows" and in-cluster vs rest is a partition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, false_discovery_control, fisher_exact, kruskal, mannwhitneyu

from pixsort.cluster.labels import NOISE


def feature_profiles(features: pd.DataFrame, labels: np.ndarray, kinds: pd.Series | None = None) -> pd.DataFrame:
    """One row per (cluster, feature): how common the feature is inside vs overall.

    Binary features: ``count`` of rows with it, ``prevalence`` in the cluster,
    ``prevalence_rest`` (other clusters), ``prevalence_overall``, ``lift`` =
    prevalence / prevalence_overall, the Fisher exact test of cluster vs rest
    (``odds_ratio``, ``p_value``).  Numeric features (``kinds == "numeric"``):
    ``mean``, ``mean_overall`` and the Mann-Whitney U test.  ``q_value`` is the
    Benjamini-Hochberg correction over every test in the table.

    features: (n_rows, n_features); returns (n_clusters * n_features, ...) sorted by
    cluster, then q-value.
    """
    labels = np.asarray(labels)
    if len(labels) != len(features):
        raise ValueError(f"{len(labels)} labels for {len(features)} rows")
    kinds = kinds if kinds is not None else pd.Series("binary", index=features.columns)
    clustered = labels != NOISE
    values = features.to_numpy(dtype=float)[clustered]
    labels = labels[clustered]
    numeric = (kinds.reindex(features.columns) == "numeric").to_numpy()
    n_total = len(labels)
    totals = values.sum(axis=0)

    records = []
    for cluster in np.unique(labels):
        inside = labels == cluster
        size = int(inside.sum())
        counts = values[inside].sum(axis=0)
        for j, name in enumerate(features.columns):
            kind = "numeric" if numeric[j] else "binary"
            row = {"cluster": int(cluster), "feature": name, "kind": kind, "size": size}
            if numeric[j]:
                row.update(_numeric_test(values[inside, j], values[~inside, j]))
            else:
                row.update(_binary_test(int(counts[j]), size, int(totals[j]), n_total))
            records.append(row)
    table = pd.DataFrame.from_records(records)
    if table.empty:
        return table
    tested = table["p_value"].notna()
    table["q_value"] = np.nan
    table.loc[tested, "q_value"] = false_discovery_control(table.loc[tested, "p_value"].to_numpy(), method="bh")
    return table.sort_values(["cluster", "q_value", "feature"], kind="stable").reset_index(drop=True)


def defining_features(
    profiles: pd.DataFrame,
    cluster: int,
    *,
    n: int = 5,
    alpha: float = 0.05,
    min_prevalence: float = 0.2,
    over: bool = True,
) -> pd.DataFrame:
    """The binary features that set ``cluster`` apart, most telling first.

    ``over=True``: significantly more common in the cluster (q < ``alpha``, lift > 1)
    and held by at least ``min_prevalence`` of it, since a power held by two of 200
    members can have a large lift yet describes no one; ranked by how many points
    of prevalence the cluster gains.  ``over=False``: significantly rarer, ranked by
    the points lost.
    """
    rows = profiles[(profiles["cluster"] == cluster) & (profiles["kind"] == "binary") & (profiles["q_value"] < alpha)]
    rows = rows.assign(gain=rows["prevalence"] - rows["prevalence_overall"])
    if over:
        picked = rows[(rows["gain"] > 0) & (rows["prevalence"] >= min_prevalence)]
        return picked.sort_values(["gain", "feature"], ascending=[False, True]).head(n)
    picked = rows[(rows["gain"] < 0) & (rows["prevalence_overall"] >= min_prevalence)]
    return picked.sort_values(["gain", "feature"], ascending=[True, True]).head(n)


def central_members(
    embedding: np.ndarray,
    labels: np.ndarray,
    ids: pd.Series,
    distance: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n: int = 5,
) -> pd.DataFrame:
    """The ``n`` members of each cluster with the smallest mean distance to the rest
    of it (medoid order), under the clusterer's own ``distance(A, B)``.

    embedding: (n_rows, n_dims) as from ``TableClusterer.embedding_``.  Returns
    columns cluster, rank (1 = medoid), row (position in the table), id, mean_distance.
    """
    labels = np.asarray(labels)
    records = []
    for cluster in np.unique(labels[labels != NOISE]):
        members = np.flatnonzero(labels == cluster)
        dist = distance(embedding[members], embedding[members])
        spread = dist.sum(axis=1) / max(len(members) - 1, 1)
        for rank, pos in enumerate(np.argsort(spread, kind="stable")[:n], start=1):
            row = int(members[pos])
            records.append(
                {"cluster": int(cluster), "rank": rank, "row": row, "id": ids.iloc[row], "mean_distance": spread[pos]}
            )
    return pd.DataFrame.from_records(records, columns=["cluster", "rank", "row", "id", "mean_distance"])


def cluster_summary(
    labels: np.ndarray,
    profiles: pd.DataFrame,
    central: pd.DataFrame,
    *,
    true_counts: np.ndarray | None = None,
    n_features: int = 5,
) -> pd.DataFrame:
    """One row per cluster: size, share, central members, the defining features
    ("Flight 95% vs 32%") and the notably absent ones.

    ``true_counts`` (n_rows,): true binary features per row; adds their median per
    cluster, which on presence/absence data often separates clusters by itself.
    """
    labels = np.asarray(labels)
    n_clustered = int((labels != NOISE).sum())
    records = []
    for cluster in np.unique(labels[labels != NOISE]):
        inside = labels == cluster
        size = int(inside.sum())
        records.append(
            {
                "cluster": int(cluster),
                "size": size,
                "share": size / n_clustered,
                **({"median_true": float(np.median(true_counts[inside]))} if true_counts is not None else {}),
                "central_members": ", ".join(map(str, central.loc[central["cluster"] == cluster, "id"])),
                "defining": _feature_phrases(defining_features(profiles, cluster, n=n_features)),
                "rarer": _feature_phrases(defining_features(profiles, cluster, n=3, over=False)),
            }
        )
    return pd.DataFrame.from_records(records)


def describe_clusters(summary: pd.DataFrame, noun: str = "rows") -> list[str]:
    """Plain-words lines, one per cluster, from :func:`cluster_summary`."""
    lines = []
    for row in summary.itertuples():
        text = f"Cluster {row.cluster}: {row.size} {noun} ({row.share:.0%}), e.g. {row.central_members}."
        if hasattr(row, "median_true"):
            text += f" Typically {row.median_true:g} true features."
        text += f" Marked by {row.defining}." if row.defining else " No feature is markedly more common here."
        if row.rarer:
            text += f" Rarer than overall: {row.rarer}."
        lines.append(text)
    return lines


@dataclass
class AttributeTable:
    """A joined attribute by cluster: ``counts`` (clusters x values) or, for a numeric
    attribute, per-cluster count/median/mean; with a test of "same across clusters"."""

    name: str
    kind: str  # "categorical" or "numeric"
    counts: pd.DataFrame
    test: str
    p_value: float

    def shares(self) -> pd.DataFrame:
        """Row shares (each cluster's members across the values) for categorical."""
        if self.kind != "categorical":
            return self.counts
        return self.counts.div(self.counts.sum(axis=1).replace(0, np.nan), axis=0)

    def long(self) -> pd.DataFrame:
        """Long format for a CSV: attribute, cluster, value, count/statistic."""
        frame = self.counts.rename_axis(index="cluster", columns="value").stack().rename("count").reset_index()
        if self.kind == "numeric":
            frame = frame.rename(columns={"value": "statistic", "count": "value"})
        return frame.assign(attribute=self.name)


def attribute_tables(attributes: pd.DataFrame, labels: np.ndarray, *, max_values: int = 8) -> list[AttributeTable]:
    """Cross-tab each joined attribute by cluster.

    Categorical: counts of the ``max_values`` most common values, the rest as
    "(other)" and missing as "(missing)", with the chi-square test of independence
    over the known values.  Numeric: count, median and mean per cluster, with the
    Kruskal-Wallis test.  attributes: (n_rows, n_attributes) aligned with labels.
    """
    labels = np.asarray(labels)
    keep = labels != NOISE
    frame = attributes.loc[keep].reset_index(drop=True)
    cluster = pd.Series(labels[keep], name="cluster")
    out = []
    for name in frame.columns:
        values = frame[name]
        if pd.api.types.is_numeric_dtype(values):
            out.append(_numeric_attribute(name, values, cluster))
        else:
            out.append(_categorical_attribute(name, values, cluster, max_values))
    return out


def _binary_test(count: int, size: int, total: int, n_total: int) -> dict:
    rest_count, rest_size = total - count, n_total - size
    prevalence = count / size
    overall = total / n_total
    odds, p = (np.nan, np.nan)
    if rest_size and 0 < total < n_total:  # a feature everyone or no one has cannot differ
        odds, p = fisher_exact([[count, size - count], [rest_count, rest_size - rest_count]])
    return {
        "count": count,
        "prevalence": prevalence,
        "prevalence_rest": rest_count / rest_size if rest_size else np.nan,
        "prevalence_overall": overall,
        "lift": prevalence / overall if overall else np.nan,
        "odds_ratio": float(odds),
        "p_value": float(p),
    }


def _numeric_test(inside: np.ndarray, rest: np.ndarray) -> dict:
    p = np.nan
    if len(rest) and np.ptp(np.concatenate([inside, rest])) > 0:
        p = mannwhitneyu(inside, rest).pvalue
    return {"mean": inside.mean(), "mean_overall": np.concatenate([inside, rest]).mean(), "p_value": float(p)}


def _feature_phrases(rows: pd.DataFrame) -> str:
    return ", ".join(f"{r.feature} {r.prevalence:.0%} vs {r.prevalence_overall:.0%}" for r in rows.itertuples())


def _categorical_attribute(name: str, values: pd.Series, cluster: pd.Series, max_values: int) -> AttributeTable:
    top = values.value_counts().index[:max_values]
    grouped = values.where(values.isin(top) | values.isna(), "(other)").astype(object).fillna("(missing)")
    counts = pd.crosstab(cluster, grouped)
    order = [v for v in [*top, "(other)", "(missing)"] if v in counts.columns]
    counts = counts[order]
    known = counts.drop(columns=["(missing)"], errors="ignore")
    known = known.loc[known.sum(axis=1) > 0, known.sum(axis=0) > 0]
    p = chi2_contingency(known).pvalue if min(known.shape) >= 2 else np.nan
    return AttributeTable(name, "categorical", counts, "chi-square", float(p))


def _numeric_attribute(name: str, values: pd.Series, cluster: pd.Series) -> AttributeTable:
    table = values.groupby(cluster).agg(["count", "median", "mean"])
    groups = [g.dropna().to_numpy() for _, g in values.groupby(cluster)]
    groups = [g for g in groups if len(g)]
    p = np.nan
    if len(groups) >= 2 and np.ptp(np.concatenate(groups)) > 0:
        p = kruskal(*groups).pvalue
    return AttributeTable(name, "numeric", table, "Kruskal-Wallis", float(p))


@dataclass
class ClusterProfiles:
    """Everything that describes the clusters of one table clustering (see :func:`profile_clusters`)."""

    profiles: pd.DataFrame
    central: pd.DataFrame
    summary: pd.DataFrame
    attributes: list[AttributeTable]
    descriptions: list[str]


def profile_clusters(table, clusterer, noun: str = "rows") -> ClusterProfiles:
    """Profiles, central members, the per-cluster summary, joined attributes by cluster
    and plain-words descriptions for a ``TableClusterer`` fitted on the
    :class:`~pixsort.data.tables.EncodedTable` ``table``."""
    labels = clusterer.labels_
    profiles = feature_profiles(table.features, labels, table.feature_kinds)
    central = central_members(clusterer.embedding_, labels, table.ids, clusterer.distances)
    binary = table.features.loc[:, table.feature_kinds == "binary"]
    true_counts = binary.to_numpy().sum(axis=1) if binary.shape[1] else None
    summary = cluster_summary(labels, profiles, central, true_counts=true_counts)
    attributes = attribute_tables(table.attributes, labels) if table.attributes is not None else []
    return ClusterProfiles(profiles, central, summary, attributes, describe_clusters(summary, noun))
