"""``pixsort cluster-table``: cluster the records of a CSV (e.g. heroes by their powers)."""

from __future__ import annotations

from pathlib import Path

import typer

from pixsort.cli._common import existing_path, fail


def register(app: typer.Typer) -> None:
    app.command("cluster-table")(cluster_table)


def cluster_table(
    csv: Path = typer.Argument(..., help="CSV of records: one id column, the rest features."),
    id_column: str = typer.Option(..., "--id", help="Column naming each row (not a feature)."),
    out: Path = typer.Option(..., "--out", help="Folder for clusters.csv, profiles.csv, plots and report.html."),
    join: Path | None = typer.Option(None, "--join", help="Second CSV whose columns describe the clusters."),
    on: str | None = typer.Option(None, "--on", help="Key column of --join matching --id (default: same name)."),
    method: str = typer.Option(
        "auto", help="auto (k-means on principal components) | kmodes | agglomerative | kmeans | hdbscan."
    ),
    k: int | None = typer.Option(None, "--k", help="Number of clusters; default: chosen by silhouette."),
    k_min: int = typer.Option(2, help="Smallest k tried."),
    k_max: int = typer.Option(10, help="Largest k tried."),
    metric: str = typer.Option("auto", help="auto | jaccard | hamming | euclidean (agglomerative, hdbscan)."),
    linkage: str = typer.Option("average", help="average | complete (agglomerative)."),
    scaling: str = typer.Option("pca", help="pca | standard (k-means feature space)."),
    min_cluster_size: int | None = typer.Option(None, help="HDBSCAN minimum cluster size."),
    missing: str | None = typer.Option(
        None, help="Comma-separated missing markers (default: - -99 NA N/A NaN nan null); an empty cell always is."
    ),
    seed: int = typer.Option(0, help="Random seed."),
    stability_runs: int = typer.Option(5, help="Refits for the stability estimate (0 = skip)."),
    compare: bool = typer.Option(False, "--compare", help="Also run every method and tabulate them (slower)."),
    noun: str = typer.Option("rows", help="What a row is, for the descriptions (e.g. heroes)."),
) -> None:
    """Cluster the rows of CSV by their features and describe each cluster."""
    existing_path(csv)
    if join is not None:
        existing_path(join)
    from rich.console import Console
    from rich.table import Table

    from pixsort.workflows import cluster_table

    try:
        run = cluster_table(
            csv,
            id_column,
            out,
            join=join,
            on=on,
            missing=missing,
            compare=compare,
            noun=noun,
            method=method,
            n_clusters=k,
            k_range=(k_min, k_max),
            metric=metric,
            linkage=linkage,
            scaling=scaling,
            min_cluster_size=min_cluster_size,
            stability_runs=stability_runs,
            random_state=seed,
        )
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    table, clusterer, comparison, result = run.table, run.clusterer, run.comparison, run.outputs

    console = Console()
    for note in table.notes():
        console.print(f"[dim]{note}[/]")
    console.print(
        f"[bold]{run.method}[/]: k = {clusterer.n_clusters_}, "
        f"silhouette ({clusterer.metric_}) {clusterer.silhouette_:.3f}, stability (mean ARI) {clusterer.stability_:.3f}"
    )
    for note in clusterer.notes_:
        console.print(f"[yellow]{note}[/]")
    grid = Table("cluster", "size", "central members", "defining features", show_lines=False)
    for row in result.summary.itertuples():
        grid.add_row(str(row.cluster), str(row.size), row.central_members, row.defining or "-")
    console.print(grid)
    if comparison is not None:
        methods = Table("method", "k", "silhouette", "distance", "stability", "largest", "unclustered", "jaccard sil.")
        for row in comparison.itertuples():
            jaccard = getattr(row, "silhouette_jaccard", float("nan"))  # only for 0/1 tables
            methods.add_row(
                row.method,
                str(row.k),
                f"{row.silhouette:.3f}",
                row.metric,
                f"{row.stability:.3f}",
                f"{row.largest_share:.0%}",
                str(row.unclustered),
                f"{jaccard:.3f}",
            )
        console.print(methods)
    console.print(f"Report: {result.report}")
