"""``pixsort train`` / ``pixsort evaluate`` / ``pixsort predict``: image classification."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from pixsort.cli._common import console, existing_path, fail, print_metric_sets


def _learning_rate(value: str | None) -> float | str | None:
    """``--lr``: a number > 0, or ``auto`` (a range test chooses it)."""
    if value is None or value == "auto":
        return value
    try:
        lr = float(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither a number nor 'auto'") from None
    if not lr > 0:
        raise typer.BadParameter(f"{value} is not > 0")
    return lr


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("predict")(predict)


def train(
    data: Path = typer.Argument(
        ..., help="Labelled images: class folders (optionally under train/val/test), .npz/.npy, CSV."
    ),
    model: str = typer.Option(
        "partial:efficientnet_lite0",
        "--model",
        "-m",
        help="partial:efficientnet_lite0 (default: measured best on X-rays of other patients), seed-cnn, "
        "seed-cnn-dropout, probe:|mlp:|partial:|finetune:<backbone>, timm:<name>.",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder (model/, metrics.json, predictions.csv, report.html)."
    ),
    epochs: int | None = typer.Option(None, min=1, help="Epochs (default: the model's recipe)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1),
    lr: str | None = typer.Option(
        None,
        "--lr",
        callback=_learning_rate,
        help="Base learning rate, or 'auto': a learning-rate range test chooses it (plot in the report).",
    ),
    balance: str | None = typer.Option(None, help="none | weights | sampler | oversample."),
    augment: str | None = typer.Option(None, help="none | light | seed | strong."),
    schedule: str | None = typer.Option(None, help="constant | onecycle | cosine."),
    patience: int | None = typer.Option(None, min=1, help="Early-stopping patience in epochs (default: recipe)."),
    monitor: str = typer.Option("roc_auc", help="Validation metric for early stopping and the best checkpoint."),
    image_size: int | None = typer.Option(None, "--image-size", help="Network input size (default: the model's)."),
    train_blocks: int | None = typer.Option(None, "--train-blocks", help="partial: how many last stages to tune."),
    target_sensitivity: float | None = typer.Option(
        None,
        "--target-sensitivity",
        help="Threshold: highest one with this sensitivity on validation (default: the recipe's, 0.95 for partial:).",
    ),
    youden: bool = typer.Option(
        False, "--youden", help="Threshold by Youden's J, even where the recipe targets a sensitivity."
    ),  # fmt: skip
    label_smoothing: float | None = typer.Option(None, "--label-smoothing", help="Default: the recipe's."),
    mixup: float | None = typer.Option(None, "--mixup", help="Beta alpha of mixup (0: off; default: the recipe's)."),
    views: str | None = typer.Option(None, "--views", help="none | aspect: cached views of a frozen part."),
    validation_fraction: float = typer.Option(
        0.15, "--val-fraction", help="Held out of train when no usable val split."
    ),
    group_pattern: str | None = typer.Option(
        None,
        "--group-pattern",
        help=r"Regex over file names giving patient ids kept on one side of the carved split "
        r"(default: Kaggle chest X-ray names are recognised), e.g. 'patient\d+'.",
    ),
    no_groups: bool = typer.Option(
        False, "--no-groups", help="Carve validation from single images: no patient or copy groups."
    ),
    val_data: Path | None = typer.Option(
        None,
        "--val-data",
        help="External labelled images (other patients or another site) to choose the best epoch and the "
        "threshold on; the carved split is still evaluated beside it. Never trained on.",
    ),
    exclude: str | None = typer.Option(
        None,
        "--exclude",
        help="An audit CSV whose images are dropped: label_issues.csv, duplicates.csv (all but one of each "
        "group), or audit.csv:COLUMN (rows where COLUMN is true).",
    ),
    relabel: bool = typer.Option(False, "--relabel", help="Give the --exclude images their suggested_label."),
    dedupe_copies: bool = typer.Option(
        False, "--dedupe", help="Keep one image of each set of byte- or near-identical copies."
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
    if val_data is not None:
        existing_path(val_data)
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
        target_sensitivity=None if youden else (target_sensitivity if target_sensitivity is not None else "auto"),
        label_smoothing=label_smoothing,
        mixup=mixup,
        views=views,
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
            groups=not no_groups,
            val_data=val_data,
            exclude=exclude,
            relabel=relabel,
            dedupe_copies=dedupe_copies,
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
    sets = {name: ev.metrics for name, ev in outcome.validation_sets.items()} or {
        "validation": outcome.evaluation.metrics
    }
    print_metric_sets("Validation", sets)
    for line in outcome.warnings:
        console.print(f"[bold yellow]warning:[/] {escape(line)}")
    if outcome.grouping is not None:
        console.print(f"carved split: {escape(outcome.grouping.describe())}")
    _print_most_confused(outcome.evaluation.metrics)
    if clf.lr_finder_:
        console.print(f"learning rate {clf.lr_finder_['chosen']:.3g} from the range test ({clf.lr_finder_['rule']})")
    console.print(
        f"trained in {outcome.fit_seconds:.0f}s (decode {outcome.decode_seconds:.0f}s), "
        f"best epoch {clf.training_['best_epoch']} ({clf.training_['stopped']})"
    )
    console.print(f"model: {outcome.model_dir}  (card: {outcome.model_card})")
    console.print(f"report: {outcome.evaluation.files.get('report')}")


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
    print_metric_sets(f"Evaluation ({ev.metrics.get('split')})", {"value [95% interval]": ev.metrics})
    _print_most_confused(ev.metrics)
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


def _print_most_confused(m: dict, top: int = 5) -> None:
    """The ``top`` most-confused pairs (more than two classes; nothing when there are none)."""
    from rich.markup import escape
    from rich.table import Table

    pairs = (m.get("most_confused") or [])[:top]
    if not pairs:
        return
    table = Table(title=f"Most confused (top {len(pairs)})")
    for name in ("true", "predicted"):
        table.add_column(name)
    table.add_column("count", justify="right")
    table.add_column("share of true", justify="right")
    for pair in pairs:
        table.add_row(escape(pair["true"]), escape(pair["predicted"]), str(pair["count"]), f"{pair['share']:.1%}")
    console.print(table)
