"""``pixsort train`` / ``pixsort evaluate`` / ``pixsort predict``: image classification."""

from __future__ import annotations

from pathlib import Path

import typer

from pixsort.cli._common import console, existing_path, fail


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("predict")(predict)


def train(
    data: Path = typer.Argument(
        ..., help="Labelled images: class folders (optionally under train/val/test), .npz/.npy, CSV."
    ),
    model: str = typer.Option(
        "seed-cnn",
        "--model",
        "-m",
        help="seed-cnn, seed-cnn-dropout, probe:|mlp:|partial:|finetune:<backbone>, timm:<name>.",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder (model/, metrics.json, predictions.csv, report.html)."
    ),
    epochs: int | None = typer.Option(None, min=1, help="Epochs (default: the model's recipe)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1),
    lr: float | None = typer.Option(None, "--lr", help="Base learning rate."),
    balance: str | None = typer.Option(None, help="none | weights | sampler | oversample."),
    augment: str | None = typer.Option(None, help="none | light | seed | strong."),
    schedule: str | None = typer.Option(None, help="constant | onecycle | cosine."),
    patience: int | None = typer.Option(None, min=1, help="Early-stopping patience in epochs (default: recipe)."),
    monitor: str = typer.Option("roc_auc", help="Validation metric for early stopping and the best checkpoint."),
    image_size: int | None = typer.Option(None, "--image-size", help="Network input size (default: the model's)."),
    train_blocks: int | None = typer.Option(None, "--train-blocks", help="partial: how many last stages to tune."),
    target_sensitivity: float | None = typer.Option(
        None, "--target-sensitivity", help="Threshold: highest one with this sensitivity on validation."
    ),
    validation_fraction: float = typer.Option(
        0.15, "--val-fraction", help="Held out of train when no usable val split."
    ),
    group_pattern: str | None = typer.Option(
        None,
        "--group-pattern",
        help=r"Regex over file names keeping groups (patients) on one side, "
        r"e.g. '(person\d+|IM-\d+)'.",
    ),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation (image + mirror)."),
    precision: str = typer.Option("auto", help="auto (bf16 where faster on this CPU) | fp32 | bf16."),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="Training time budget."),
    seed: int = typer.Option(0, help="Random seed (split, order, augmentation)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint after an interruption."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Decoded-image cache (default ~/.cache/pixsort)."),
    workers: int | None = typer.Option(None, "--workers", min=0, help="Decoding processes."),
    device: str = typer.Option("auto", "--device", help="auto (cuda, else mps, else cpu) | cpu | cuda | mps."),
) -> None:
    """Train a classifier, choose its threshold on validation, save it with a report."""
    from pixsort.data import NoUsableImages, SourceError
    from pixsort.workflows import train_classifier

    existing_path(data)
    options = dict(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        balance=balance,
        augment=augment,
        schedule=schedule,
        monitor=monitor,
        image_size=image_size,
        train_blocks=train_blocks,
        tta=tta,
        precision=precision,
        target_sensitivity=target_sensitivity,
        max_minutes=max_minutes,
        random_state=seed,
        resume=resume,
        device=device,
    )
    if patience is not None:
        options["patience"] = patience
    try:
        outcome = train_classifier(
            data,
            out,
            model,
            validation_fraction=validation_fraction,
            group_pattern=group_pattern,
            cache_dir=cache_dir,
            workers=workers,
            **options,
        )
    except (ValueError, SourceError, NoUsableImages) as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail(  # noqa: B904  (the interruption is the message, not a cause to chain)
            f"interrupted; continue with the same command plus --resume (checkpoint in {out / 'checkpoint'})", 130
        )
    clf = outcome.classifier
    _print_metrics("Validation", outcome.evaluation.metrics)
    console.print(
        f"trained in {outcome.fit_seconds:.0f}s (decode {outcome.decode_seconds:.0f}s), "
        f"best epoch {clf.training_['best_epoch']} ({clf.training_['stopped']})"
    )
    console.print(f"model: {outcome.model_dir}\nreport: {outcome.evaluation.files.get('report')}")


def evaluate(
    model: Path = typer.Argument(..., help="A model folder written by pixsort train."),
    data: Path = typer.Argument(..., help="Labelled images."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: MODEL/../evaluation)."),
    split: str = typer.Option("auto", help="auto (test if present, else all) | all | train | val | test."),
    tta: bool | None = typer.Option(None, "--tta/--no-tta", help="Override the model's test-time augmentation."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir"),
    workers: int | None = typer.Option(None, "--workers", min=0),
    device: str = typer.Option("auto", "--device", help="auto (cuda, else mps, else cpu) | cpu | cuda | mps."),
) -> None:
    """Evaluate a saved classifier: metrics.json, predictions.csv, plots, report.html."""
    from pixsort.base.errors import ModelFileError
    from pixsort.data import NoUsableImages, SourceError
    from pixsort.workflows import evaluate_classifier

    existing_path(model), existing_path(data)
    out = out or model.resolve().parent / "evaluation"
    try:
        ev = evaluate_classifier(
            model, data, out, split=split, tta=tta, cache_dir=cache_dir, workers=workers, device=device
        )
    except (ValueError, SourceError, NoUsableImages, ModelFileError) as exc:
        raise fail(str(exc)) from None
    _print_metrics(f"Evaluation ({ev.metrics.get('split')})", ev.metrics)
    console.print(f"outputs: {out}  (report: {ev.files.get('report')})")


def predict(
    model: Path = typer.Argument(..., help="A model folder written by pixsort train."),
    images: Path = typer.Argument(..., help="An image, a folder, a CSV of paths or .npz/.npy arrays."),
    out: Path = typer.Option(Path("predictions.csv"), "--out", "-o", help="CSV to write."),
    tta: bool | None = typer.Option(None, "--tta/--no-tta"),
    cache_dir: Path | None = typer.Option(None, "--cache-dir"),
    workers: int | None = typer.Option(None, "--workers", min=0),
    device: str = typer.Option("auto", "--device", help="auto (cuda, else mps, else cpu) | cpu | cuda | mps."),
) -> None:
    """Predict classes; files that cannot be read are listed with their reason, not fatal."""
    from pixsort.base.errors import ModelFileError
    from pixsort.data import SourceError
    from pixsort.workflows import predict_images

    existing_path(model), existing_path(images)
    try:
        frame = predict_images(model, images, out, tta=tta, cache_dir=cache_dir, workers=workers, device=device)
    except (ValueError, SourceError, ModelFileError) as exc:
        raise fail(str(exc)) from None
    loaded = frame[frame["status"] == "loaded"]
    skipped = frame[frame["status"] == "skipped"]
    counts = loaded["predicted"].value_counts()
    console.print(f"{len(loaded)} predicted: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if len(skipped):
        console.print(f"[yellow]{len(skipped)} skipped[/] (reasons in the CSV):")
        for _, row in skipped.head(10).iterrows():
            console.print(f"  {row['path']}: {row['reason']}")
    console.print(f"predictions: {out}")
    if len(loaded) == 0:
        raise typer.Exit(1)


def _print_metrics(title: str, m: dict) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in (
        "n_images",
        "accuracy",
        "balanced_accuracy",
        "roc_auc",
        "pr_auc",
        "sensitivity",
        "specificity",
        "ece",
        "threshold",
    ):
        if m.get(key) is not None:
            v = m[key]
            table.add_row(key, f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)
