"""``pixsort audit``: duplicates, leaks, outliers, quality flags and likely label errors of a source."""

from __future__ import annotations

from pathlib import Path

import typer

from pixsort.cli._common import existing_path, fail


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)


def audit(
    data: Path = typer.Argument(..., help="Folder of images (class folders, optionally under train/val/test), CSV..."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for audit.csv, duplicates.csv, label_issues.csv ..."),
    against: Path | None = typer.Option(
        None, "--against", help="A held-out folder (a test set): its near-copies in DATA go to leakage.csv."
    ),
    features: str = typer.Option("efficientnet_lite1", "--features", help="Backbone name, timm:<model> or pixels."),
    labels_from: str = typer.Option("folders", "--labels-from", help="folders (the source's labels) | none."),
    near_threshold: float | None = typer.Option(
        None, "--near-threshold", help="Cosine similarity of a near-copy (default: the measured one)."
    ),
    hash_distance: int | None = typer.Option(
        None, "--hash-distance", help="Bits (of 256) within which pixel hashes make a near-copy (default: measured)."
    ),
    view: str = typer.Option("pca", "--view", help="2-D layout in audit.csv: pca | tsne | umap."),
    tta: bool = typer.Option(True, help="Average each image's embedding with its mirror image's."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Decoded-image and embedding cache."),
    seed: int = typer.Option(0, "--seed", help="Random seed (probe folds, layout)."),
) -> None:
    """Audit the pictures of DATA before training on them."""
    existing_path(data)
    if against is not None:
        existing_path(against)
    from pixsort.data import NoUsableImages, SourceError
    from pixsort.workflows import audit_images

    try:
        run = audit_images(
            data,
            out,
            against=against,
            features=features,
            labels_from=labels_from,
            near_threshold=near_threshold,
            hash_distance=hash_distance,
            view=view,
            tta=tta,
            cache_dir=cache_dir,
            random_state=seed,
        )
    except (ValueError, OSError, SourceError, NoUsableImages) as exc:
        raise fail(str(exc)) from None
    s = run.summary
    d = s["duplicates"]
    typer.echo(
        f"{s['n_audited']} images audited ({s['n_skipped']} skipped): {d['n_groups']} duplicate groups "
        f"({d['n_exact_groups']} exact, {d['n_groups_spanning_splits']} across splits), "
        f"{s['outliers']['n_flagged']} outliers, {s['label_issues'].get('n_issues', 0)} likely label errors"
    )
    if "leakage" in s:
        typer.echo(f"{s['leakage']['n_other_images_with_copies']} images of {against} have copies in {data}")
    typer.echo(f"Report: {run.outputs.files['report']}")
