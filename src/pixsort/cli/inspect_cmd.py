"""``pixsort inspect PATH``: what a source holds, and what cannot be used."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pixsort.cli._common import console, fail


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)


def inspect(
    path: Path = typer.Argument(..., help="Folder of class folders, flat folder, .npz/.npy or CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object for scripts."),
    manifest: Path | None = typer.Option(None, "--manifest", help="Also write manifest.csv here."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Decoded-image cache (default ~/.cache/pixsort)."),
    workers: int | None = typer.Option(None, "--workers", min=0, help="Decoding processes (default: all cores)."),
) -> None:
    """Count images per split and class; report modes, sizes, duplicates and skipped files."""
    from pixsort.data import SourceError
    from pixsort.workflows import inspect_source

    try:
        result = inspect_source(path, manifest_csv=manifest, cache_dir=cache_dir, workers=workers, progress=not as_json)
    except (SourceError, ValueError) as exc:  # OutputPathError is a ValueError
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print(result)
    if result.loaded.empty:
        raise typer.Exit(1)


def _print(result) -> None:
    from rich.table import Table

    out = console.__class__()  # stdout console for the report itself
    info = result.to_dict()
    out.print(
        f"[bold]{info['source']}[/]  ({info['kind']}, {info['items']} files: "
        f"{info['loaded']} usable, {info['skipped']} skipped)"
    )
    counts = result.counts()
    table = Table("split", *map(str, counts.columns), "total", title="Usable images")
    for split, row in counts.iterrows():
        table.add_row(str(split), *(f"{int(v):,}" for v in row), f"{int(row.sum()):,}")
    out.print(table)
    if info["modes"]:
        out.print("modes: " + ", ".join(f"{m} {n:,}" for m, n in info["modes"].items()))
    if info["sizes"]:
        s = info["sizes"]
        out.print(f"sizes: width {s['min_width']}–{s['max_width']}, height {s['min_height']}–{s['max_height']}")
    dups = info["duplicates"]
    out.print(f"exact duplicates: {len(dups)} group(s)" + (":" if dups else ""))
    for group in dups[:10]:
        out.print("  " + "  ==  ".join(group))
    if len(dups) > 10:
        out.print(f"  … {len(dups) - 10} more groups (use --json)")
    if info["skipped_files"]:
        out.print(f"[yellow]skipped {len(info['skipped_files'])} file(s):[/]")
        for row in info["skipped_files"][:20]:
            out.print(f"  {row['path']}: {row['reason']}")
        if len(info["skipped_files"]) > 20:
            out.print(f"  … {len(info['skipped_files']) - 20} more (use --json or --manifest)")
