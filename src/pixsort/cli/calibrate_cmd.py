"""``pixsort calibrate``: temperature scaling and a re-chosen threshold for a saved
classifier, fitted on labelled images of the place it is used
(:func:`pixsort.workflows.calibrate_classifier`)."""

from __future__ import annotations

from pathlib import Path

import typer

from pixsort.cli._common import console, existing_path, fail, print_metric_sets


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)


def calibrate(
    model: Path = typer.Argument(..., help="A model folder written by pixsort train."),
    data: Path = typer.Argument(..., help="Labelled images of the local site (class folders, CSV, arrays)."),
    target_sensitivity: float | None = typer.Option(
        None,
        "--target-sensitivity",
        help="Re-choose the threshold as the highest one reaching this sensitivity on DATA "
        "(default: the model's own rule - its target sensitivity, else Youden's J).",
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder for the calibration report (default: MODEL/../calibration)."
    ),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Decoded-image cache (default ~/.cache/pixsort)."),
    workers: int | None = typer.Option(None, "--workers", min=0, help="Decoding processes."),
) -> None:
    """Fit a temperature on local labelled images, re-choose the threshold, record both in
    MODEL/model.json (the weights are not touched) and refresh the model card."""
    from pixsort.base.errors import ModelFileError
    from pixsort.data import NoUsableImages, SourceError
    from pixsort.workflows import calibrate_classifier

    existing_path(model), existing_path(data)
    try:
        outcome = calibrate_classifier(
            model, data, out, target_sensitivity=target_sensitivity, cache_dir=cache_dir, workers=workers
        )
    except (ValueError, SourceError, NoUsableImages, ModelFileError) as exc:
        raise fail(str(exc)) from None
    r = outcome.record
    print_metric_sets("Calibration", {"before": outcome.before, "after": outcome.after})
    console.print(
        f"temperature {r['temperature_before']:.4g} -> {r['temperature']:.4g}; "
        f"log loss {r['nll_before']:.4f} -> {r['nll_after']:.4f} on {r['n']} images"
    )
    if r["threshold"] is not None:
        before = "none" if r["threshold_before"] is None else f"{r['threshold_before']:.4f}"
        console.print(f"threshold {before} -> {r['threshold']:.4f} ({r['threshold_info'].get('method')})")
    console.print("[dim]measured on the images the temperature and threshold were fitted on[/]")
    console.print(f"model: {outcome.model_dir} (weights unchanged; card: {outcome.model_card})")
    console.print(f"report: {outcome.files.get('report')}")
