"""Outputs of a table clustering: CSVs, plots (matplotlib Agg) and an HTML report.

``write_table_outputs`` is the one entry point; the plot functions are usable alone.
Files written to the output folder::

    clusters.csv            every input row (file order): row, id, cluster, status
    profiles.csv            per cluster x feature: prevalence, lift, test, q-value
    clusters_summary.csv    per cluster: size, central members, defining features
    k_scores.csv            silhouette per k tried
    attributes_by_cluster.csv   joined attributes by cluster (with --join)
    methods.csv             method comparison (when one was run)
    prevalence_heatmap.png, map_2d.png, k_scores.png, dendrogram.png (agglomerative)
    report.html
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pixsort.cluster.table import describe_method
from pixsort.cluster.table.profiles import ClusterProfiles, defining_features
from pixsort.report.figures import plain_text, pyplot, save_figure
from pixsort.report.files import write_csv
from pixsort.report.html import HtmlReport

_NOISE_COLOUR = "#b8bcc6"


@dataclass
class TableRunResult:
    """What ``write_table_outputs`` wrote and found."""

    out_dir: Path
    report: Path
    summary: pd.DataFrame
    descriptions: list[str]
    files: list[Path] = field(default_factory=list)


def write_table_outputs(
    table,
    clusterer,
    described: ClusterProfiles,
    out_dir: str | os.PathLike,
    *,
    view: tuple[np.ndarray, np.ndarray, str],
    comparison: pd.DataFrame | None = None,
) -> TableRunResult:
    """Write every output of a fitted ``TableClusterer``.

    table: ``pixsort.data.tables.EncodedTable`` the clusterer was fitted on (same rows);
    described: its :func:`~pixsort.cluster.table.profiles.profile_clusters`; view: the
    2-D map (rows, coordinates, how) of :func:`~pixsort.cluster.table.views.map_coordinates`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []

    def save_csv(frame: pd.DataFrame, name: str, index: bool = False) -> None:
        files.append(write_csv(frame, out / name, index=index))

    save_csv(clusters_frame(table, clusterer), "clusters.csv")
    save_csv(described.profiles, "profiles.csv")
    save_csv(described.summary, "clusters_summary.csv")
    save_csv(clusterer.k_search_, "k_scores.csv")
    if described.attributes:
        save_csv(pd.concat([a.long() for a in described.attributes], ignore_index=True), "attributes_by_cluster.csv")
    if comparison is not None:
        save_csv(comparison, "methods.csv")

    profiles = described.profiles
    if not profiles.empty and (profiles["kind"] == "binary").any():
        files.append(plot_prevalence_heatmap(profiles, out / "prevalence_heatmap.png"))
    medoids = described.central[described.central["rank"] == 1]
    files.append(plot_map(clusterer, view, out / "map_2d.png", names=dict(zip(medoids["row"], medoids["id"]))))
    if len(clusterer.k_search_) > 1:
        files.append(plot_k_scores(clusterer.k_search_, clusterer.n_clusters_, out / "k_scores.png"))
    if clusterer.linkage_matrix_ is not None:
        files.append(plot_dendrogram(clusterer.linkage_matrix_, clusterer.n_clusters_, out / "dendrogram.png"))

    images = {path.name for path in files if path.suffix == ".png"}
    report = _html_report(
        table,
        clusterer,
        described.summary,
        described.descriptions,
        described.attributes,
        comparison,
        describe_method(clusterer),
        images,
    )
    files.append(report.write(out / "report.html"))
    return TableRunResult(out, out / "report.html", described.summary, described.descriptions, files)


def clusters_frame(table, clusterer) -> pd.DataFrame:
    """Every input row in file order with its cluster and why it has none (-1)."""
    labels = clusterer.labels_
    status = pd.Series(np.where(labels >= 0, "clustered", "noise"), dtype=object)
    status[clusterer.empty_rows_] = "no true feature"
    duplicated = table.ids.duplicated(keep=False).to_numpy()
    return pd.DataFrame(
        {
            "row": np.arange(len(labels)),
            table.ids.name or "id": table.ids.to_numpy(),
            "cluster": labels,
            "status": status.to_numpy(),
            "duplicated_id": duplicated,
        }
    )


# ------------------------------------------------------------------------ plots


def plot_prevalence_heatmap(
    profiles: pd.DataFrame, path: str | os.PathLike, *, per_cluster: int = 6, max_features: int = 40
) -> Path:
    """Clusters x their defining features, coloured by the share of members with each;
    an "all" column gives the overall share for comparison."""
    plt = pyplot()

    binary = profiles[profiles["kind"] == "binary"]
    clusters = sorted(binary["cluster"].unique())
    chosen: list[str] = []
    for cluster in clusters:
        for feature in defining_features(binary, cluster, n=per_cluster)["feature"]:
            if feature not in chosen:
                chosen.append(feature)
    if len(chosen) < 5:  # nothing stands out: show the most common features instead
        common = binary.drop_duplicates("feature").sort_values("prevalence_overall", ascending=False)["feature"]
        chosen += [f for f in common if f not in chosen][: 10 - len(chosen)]
    chosen = chosen[:max_features]
    grid = binary.pivot(index="feature", columns="cluster", values="prevalence").loc[chosen, clusters]
    overall = binary.drop_duplicates("feature").set_index("feature").loc[chosen, "prevalence_overall"]
    grid["all"] = overall

    fig, ax = plt.subplots(figsize=(1.6 + 0.7 * grid.shape[1], 1.2 + 0.28 * len(grid)))
    image = ax.imshow(grid.to_numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns])
    ax.set_yticks(range(len(grid)), [plain_text(f) for f in grid.index], fontsize=8)
    ax.set_xlabel("cluster")
    for (i, j), value in np.ndenumerate(grid.to_numpy()):
        ax.text(j, i, f"{value:.0%}", ha="center", va="center", fontsize=6.5, color="white" if value < 0.6 else "black")
    fig.colorbar(image, ax=ax, fraction=0.04, label="share of members")
    ax.set_title("Feature prevalence by cluster", fontsize=10)
    return save_figure(fig, path)


def plot_dendrogram(linkage_matrix: np.ndarray, n_clusters: int, path: str | os.PathLike, *, leaves: int = 40) -> Path:
    """The top of the hierarchy (last ``leaves`` merges), coloured at the cut into ``n_clusters``."""
    plt = pyplot()
    from scipy.cluster.hierarchy import dendrogram

    heights = linkage_matrix[:, 2]
    cut = (heights[-n_clusters] + heights[-n_clusters + 1]) / 2 if n_clusters >= 2 else heights[-1]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    dendrogram(linkage_matrix, truncate_mode="lastp", p=leaves, color_threshold=cut, ax=ax, leaf_font_size=7)
    ax.axhline(cut, color="#c33", lw=0.8, ls="--")
    ax.set_ylabel("linkage distance")
    ax.set_title(f"Dendrogram (top {leaves} branches; leaf labels = members), cut into {n_clusters}", fontsize=10)
    return save_figure(fig, path)


def plot_k_scores(k_search: pd.DataFrame, chosen_k: int, path: str | os.PathLike) -> Path:
    """Silhouette per k; k whose smallest cluster is too small are drawn hollow."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(k_search["k"], k_search["silhouette"], color="#4a6fa5", lw=1)
    ok = k_search["eligible"]
    ax.scatter(k_search.loc[ok, "k"], k_search.loc[ok, "silhouette"], color="#4a6fa5", zorder=3, label="eligible")
    ax.scatter(
        k_search.loc[~ok, "k"],
        k_search.loc[~ok, "silhouette"],
        facecolor="white",
        edgecolor="#4a6fa5",
        zorder=3,
        label="a cluster too small",
    )
    ax.axvline(chosen_k, color="#c33", lw=0.8, ls="--")
    ax.set_xlabel("k")
    ax.set_ylabel("silhouette")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(f"Silhouette by k (chosen: {chosen_k})", fontsize=10)
    return save_figure(fig, path)


def plot_map(
    clusterer, view: tuple[np.ndarray, np.ndarray, str], path: str | os.PathLike, *, names: dict[int, str] | None = None
) -> Path:
    """The rows at their 2-D ``view`` coordinates (rows, xy, how), coloured by cluster.
    ``names`` (row position -> text) labels a few points, e.g. each cluster's medoid."""
    plt = pyplot()
    labels = clusterer.labels_
    rows, xy, how = view
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    cmap = plt.get_cmap("tab10" if clusterer.n_clusters_ <= 10 else "tab20")
    shown = labels[rows]
    noise = shown < 0
    if noise.any():
        ax.scatter(xy[noise, 0], xy[noise, 1], s=7, color=_NOISE_COLOUR, label="unclustered")
    for cluster in np.unique(shown[~noise]):
        at = shown == cluster
        ax.scatter(xy[at, 0], xy[at, 1], s=9, color=cmap(cluster % cmap.N), label=f"cluster {cluster}", alpha=0.8)
    position = {row: i for i, row in enumerate(rows)}
    for row, text in (names or {}).items():
        if row in position:
            ax.annotate(plain_text(text), xy[position[row]], fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, frameon=False, markerscale=1.5, loc="best")
    ax.set_title(f"Rows in 2-D ({how}); medoids named", fontsize=10)
    return save_figure(fig, path)


# ------------------------------------------------------------------------ HTML


def _html_report(table, clusterer, summary, descriptions, attributes, comparison, method_name, images) -> HtmlReport:
    source = Path(table.source).name or "table"
    how_k = (
        "given"
        if clusterer.n_clusters is not None
        else ("found by HDBSCAN" if clusterer.method_ == "hdbscan" else "chosen by silhouette")
    )
    report = HtmlReport(f"Clusters of {source}", subtitle=f"{method_name}; k = {clusterer.n_clusters_} ({how_k})")
    report.key_values(
        {
            "rows": len(table.ids),
            "features": table.features.shape[1],
            "clusters": clusterer.n_clusters_,
            f"silhouette ({clusterer.metric_})": round(clusterer.silhouette_, 3),
            "stability (mean ARI)": round(clusterer.stability_, 3),
            "unclustered rows": int((clusterer.labels_ < 0).sum()),
        }
    )
    report.section("Data")
    for note in table.notes():
        report.paragraph(note)

    report.section("Clusters")
    for line in descriptions:
        report.paragraph(line)
    for note in clusterer.notes_:
        report.paragraph(note, "note")
    report.table(
        summary,
        caption="Per cluster: central members (medoid first) and the features that set it apart "
        "(share in the cluster vs overall; q < 0.05, Benjamini-Hochberg).",
        index=False,
    )
    for name, caption in [
        ("prevalence_heatmap.png", "Share of members with each defining feature"),
        ("map_2d.png", "2-D view"),
        ("dendrogram.png", "Hierarchy"),
    ]:
        if name in images:
            report.image(name, caption=caption)

    report.section("Choosing k")
    report.paragraph(
        f"Silhouette under {clusterer.metric_} distance. A k is eligible when its smallest cluster holds at least "
        f"{clusterer.min_cluster_share:.0%} of the rows. Stability: mean adjusted Rand index between "
        f"{clusterer.stability_runs} refits, each on a random {clusterer.stability_fraction:.0%} of the rows with "
        "its own seed (1 = the same partition every time)."
    )
    if "k_scores.png" in images:
        report.image("k_scores.png", caption="Silhouette by k")
    report.table(clusterer.k_search_, index=False)

    if attributes:
        report.section(
            "Joined attributes by cluster",
            "Shares of each cluster's members (rows sum to 1); "
            "the test asks whether the attribute differs between clusters.",
        )
        for attribute in sorted(attributes, key=lambda a: (np.isnan(a.p_value), a.p_value)):
            caption = f"{attribute.name}: {attribute.test} p = {attribute.p_value:.3g}"
            report.table(attribute.shares(), caption=caption)

    if comparison is not None:
        report.section(
            "Method comparison",
            "Silhouettes under different distances are not comparable with each "
            "other; silhouette_jaccard scores every method's clusters under one distance.",
        )
        report.table(comparison, index=False)
    report.section("Files")
    report.paragraph(
        "clusters.csv (every row with its cluster), profiles.csv (every cluster x feature test), "
        "cluster_summary.csv, k_scores.csv"
        + (", attributes_by_cluster.csv" if attributes else "")
        + (", methods.csv" if comparison is not None else "")
        + ".",
        "note",
    )
    return report
