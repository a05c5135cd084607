"""``pixsort cluster`` (group the pictures of a folder) and ``pixsort assign`` (place
new pictures in the clusters of a saved model)."""

from __future__ import annotations

from pathlib import Path

import typer

from pixsort.cli._common import (
    DEVICE_HELP,
    ENGINE_HELP,
    PRECISION_HELP,
    RAY_ADDRESS_HELP,
    RUNTIME_HELP,
    SIZE_HELP,
    existing_path,
    fail,
)


def register(app: typer.Typer) -> None:
    app.command("cluster")(cluster)
    app.command("assign")(assign)
    app.command("rename-clusters")(rename_clusters)


def cluster(
    path: Path | None = typer.Argument(
        None, help="Folder of images (class folders are used only for --score), .npz, .npy or CSV."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for clusters.csv, plots, the model and report.html."),
    embeddings: Path | None = typer.Option(
        None, "--embeddings", help="Cluster an embedding set written by `pixsort embed` instead of PATH."
    ),
    features: str | None = typer.Option(
        None,
        help="Backbone name, timm:<model>, backbones joined by + (their embeddings side by side), "
        "autoencoder or pixels (default efficientnet_lite1).",
    ),
    k: int | None = typer.Option(None, "--k", help="Number of clusters; default: chosen by --k-criterion."),
    k_min: int = typer.Option(2, help="Smallest k tried."),
    k_max: int = typer.Option(10, help="Largest k tried (see --widen)."),
    widen: bool = typer.Option(False, "--widen/--no-widen", help="Try up to 2 x --k-max when the best k is --k-max."),
    k_criterion: str | None = typer.Option(
        None,
        "--k-criterion",
        help="What chooses k: silhouette (default) | stability | umap_silhouette | eigengap.",
    ),
    method: str = typer.Option(
        "kmeans", help="kmeans | agglomerative | hdbscan | spectral | tsne-kmeans (k-means in the t-SNE layout)."
    ),
    head: str | None = typer.Option(None, help="scan: refine with a nearest-neighbour clustering head."),
    smoothing: int = typer.Option(
        10, help="Steps of neighbour smoothing of the embeddings before clustering (0: off)."
    ),
    score: bool = typer.Option(
        False, "--score", help="Score against the class folders / labels (accuracy, NMI, ARI, purity)."
    ),
    size: int | None = typer.Option(None, "--size", help=SIZE_HELP),
    view: str = typer.Option("tsne", help="2-D view of the scatter plots: tsne | umap | pca."),
    tta: bool | None = typer.Option(
        None, "--tta/--no-tta", help="Average each image's embedding with its mirror image's (twice the work)."
    ),
    runtime: str = typer.Option("auto", help=RUNTIME_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    precision: str = typer.Option("auto", help=PRECISION_HELP),
    seed: int = typer.Option(0, help="Random seed (a seeded run is reproducible)."),
    cache_dir: Path | None = typer.Option(None, help="Decoded-image and embedding cache."),
    copy_to_folders: str = typer.Option(
        "none", help="none | copy | link: one folder per cluster under out/by_cluster."
    ),
    engine: str = typer.Option("local", help=ENGINE_HELP + " Ray writes out/embeddings, then clusters it here."),
    ray_address: str | None = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
) -> None:
    """Cluster the pictures of PATH (or an embedding set), choosing the number of clusters, and write a report."""
    if (path is None) == (embeddings is None):
        raise fail("give either PATH or --embeddings STORE")
    existing_path(path if embeddings is None else embeddings)
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from pixsort.data import NoUsableImages, SourceError
    from pixsort.workflows import cluster_images

    chosen = {"features": features, "image_size": size, "tta": tta, "k_criterion": k_criterion}
    try:
        run = cluster_images(
            path,
            out,
            embeddings=embeddings,
            title=f"Clusters of {(path or embeddings).name}",
            view=view,
            copy_to_folders=copy_to_folders,
            score=score,
            cache_dir=cache_dir,
            engine=engine,
            ray_address=ray_address,
            **{k: v for k, v in chosen.items() if v is not None},
            method=method,
            n_clusters=k,
            k_min=k_min,
            k_max=k_max,
            k_widen=widen,
            head=head,
            smoothing=smoothing,
            random_state=seed,
            runtime=runtime,
            device=device,
            precision=precision,
        )
    except (ValueError, OSError, RuntimeError, ImportError, SourceError, NoUsableImages) as exc:
        raise fail(str(exc)) from None
    clusterer, result = run.clusterer, run.outputs

    console = Console()
    how = f"chosen by {clusterer.selection_.label}" if clusterer.selection_ is not None else "given"
    internal = clusterer.scores_
    console.print(
        f"[bold]{len(clusterer.labels_)} images[/] ({result.metrics['n_skipped']} skipped) -> "
        f"[bold]{clusterer.n_clusters_} clusters[/] ({how}); silhouette {internal['silhouette']:.3f}"
    )
    named = "name" in result.summary
    grid = Table(
        "cluster",
        *(["name (ImageNet share)"] if named else []),
        "size",
        "mean silhouette",
        "nearest to centre",
        *(["majority class"] if "majority_class" in result.summary else []),
    )
    for row in result.summary.to_dict(orient="records"):
        cells = [str(row["cluster"]), str(row["size"]), f"{row['mean_silhouette']:.3f}", row["representatives"]]
        if named:
            share = row.get("imagenet_share") or 0
            cells.insert(1, escape(str(row.get("name") or "")) + (f" ({share:.0%})" if share else ""))
        if "majority_class" in row:
            cells.append(f"{row['majority_class']} ({row['majority_share']:.0%})")
        grid.add_row(*cells)
    console.print(grid)
    for note in clusterer.selection_.notes() if clusterer.selection_ is not None else []:
        console.print(f"[bold yellow]note:[/] {escape(note)}")
    if score and "accuracy" in result.metrics:
        m = result.metrics
        console.print(f"accuracy {m['accuracy']:.3f}  NMI {m['nmi']:.3f}  ARI {m['ari']:.3f}  purity {m['purity']:.3f}")
    elif score:
        console.print("[yellow]--score: no labels found (class folders or label files) to score against[/]")
    console.print(f"Report: {result.report}")
    console.print(f"Model:  {result.model}  (pixsort assign {result.model} IMAGES --out assignments.csv)")


def assign(
    model: Path = typer.Argument(..., help="A model folder written by pixsort cluster (out/model)."),
    images: Path = typer.Argument(..., help="Image file, folder, .npz, .npy or CSV of images to place."),
    out: Path = typer.Option(Path("assignments.csv"), "--out", help="CSV: one row per image."),
    neighbors: int = typer.Option(3, help="Nearest training images listed per image."),
    cache_dir: Path | None = typer.Option(None, help="Decoded-image cache."),
    engine: str = typer.Option("local", help="local | ray: place the images here, or in parallel on Ray."),
    ray_address: str | None = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
) -> None:
    """Place IMAGES in the clusters of MODEL, with their nearest training images."""
    existing_path(model)
    existing_path(images)
    from rich.console import Console

    from pixsort.base.errors import ModelFileError
    from pixsort.data import SourceError
    from pixsort.workflows import assign_images, load_model

    try:
        clusterer = load_model(model, kind="clusterer")
        table = assign_images(
            clusterer,
            images,
            out,
            n_neighbors=neighbors,
            cache_dir=cache_dir,
            engine=engine,
            ray_address=ray_address,
        )
    except (ValueError, OSError, RuntimeError, ImportError, SourceError, KeyError, ModelFileError) as exc:
        raise fail(str(exc)) from None

    console = Console()
    placed = table[table["status"] == "assigned"]
    skipped = table[table["status"] == "skipped"]
    counts = placed["cluster"].value_counts().sort_index()
    console.print(
        f"[bold]{len(placed)} images placed[/] in {clusterer.n_clusters_} clusters: "
        + ", ".join(f"{c}: {n}" for c, n in counts.items())
    )
    for row in skipped.itertuples(index=False):
        console.print(f"[yellow]skipped[/] {row.path}: {row.reason}")
    console.print(f"Assignments: {out}")


def rename_clusters(
    model: Path = typer.Argument(..., help="A model folder written by pixsort cluster (out/model)."),
    names: Path = typer.Argument(
        ..., help="CSV with 'cluster' and 'name' columns, e.g. the run's clusters_summary.csv with names edited."
    ),
) -> None:
    """Name the clusters of MODEL; the names are saved with it and shown by assign and serve."""
    existing_path(model)
    existing_path(names)
    from rich.console import Console
    from rich.markup import escape

    from pixsort.base.errors import ModelFileError
    from pixsort.workflows import rename_clusters as rename

    try:
        clusterer = rename(model, names)
    except (ValueError, OSError, ModelFileError) as exc:
        raise fail(str(exc)) from None
    console = Console()
    for c, name in enumerate(clusterer.cluster_names_):
        console.print(f"cluster {c}: {escape(name)}")
    console.print(f"Saved in {model}")
