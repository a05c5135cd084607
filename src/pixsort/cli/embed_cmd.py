"""``pixsort embed``: the embeddings of a source as a folder of their own, to cluster
elsewhere or later (``pixsort cluster --embeddings``)."""

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
    app.command("embed")(embed)


def embed(
    path: Path = typer.Argument(..., help="Folder of images, .npz, .npy or CSV."),
    out: Path = typer.Option(..., "--out", help="Folder for vectors.npy, items.csv and store.json."),
    features: str = typer.Option(
        "efficientnet_lite1", help="Backbone name, timm:<model>, backbones joined by + or pixels."
    ),
    tta: bool = typer.Option(
        False, "--tta/--no-tta", help="Average each image's embedding with its mirror image's (twice the work)."
    ),
    size: int | None = typer.Option(None, "--size", help=SIZE_HELP),
    batch_size: int = typer.Option(64, help="Images per forward pass."),
    runtime: str = typer.Option("auto", help=RUNTIME_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    precision: str = typer.Option("auto", help=PRECISION_HELP),
    cache_dir: Path | None = typer.Option(None, help="Decoded-image and embedding cache."),
    engine: str = typer.Option("local", help=ENGINE_HELP),
    ray_address: str | None = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
) -> None:
    """Embed the pictures of PATH into an embedding set at OUT."""
    existing_path(path)
    from pixsort.data import NoUsableImages, SourceError
    from pixsort.workflows import embed_images

    try:
        run = embed_images(
            path,
            out,
            features=features,
            tta=tta,
            image_size=size,
            batch_size=batch_size,
            runtime=runtime,
            device=device,
            precision=precision,
            cache_dir=cache_dir,
            engine=engine,
            ray_address=ray_address,
        )
    except (ValueError, OSError, RuntimeError, ImportError, SourceError, NoUsableImages) as exc:
        raise fail(str(exc)) from None
    store = run.embeddings
    skipped = int((store.items["status"] != "loaded").sum())
    typer.echo(
        f"{len(store)} images embedded ({skipped} skipped), {store.vectors.shape[1]} dimensions -> {store.folder}"
    )
    typer.echo(f"Cluster them: pixsort cluster --embeddings {store.folder} --out CLUSTERS")
