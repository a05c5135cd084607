"""``pixsort export MODEL --format onnx``: a saved classifier as one ONNX graph."""

from __future__ import annotations

from pathlib import Path

import typer

from pixsort.cli._common import console, existing_path, fail


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def export(
    model: Path = typer.Argument(..., help="A classifier folder saved by `pixsort train`."),
    format: str = typer.Option("onnx", "--format", "-f", help="Export format: onnx."),
    out: Path | None = typer.Option(None, "--out", "-o", help="File to write (default: MODEL/model.onnx)."),
) -> None:
    """Export a classifier: uint8 images in, its probabilities out (preprocessing inside, any
    batch size). The file is kept only if ONNX Runtime matches torch within 1e-4."""
    from pixsort.base.errors import ModelFileError
    from pixsort.workflows import export_model

    existing_path(model)
    try:
        outcome = export_model(model, out, format=format)
    except (ValueError, ModelFileError, ImportError) as exc:
        raise fail(str(exc)) from None
    record = outcome.record
    parity = record["parity"]
    shape = ", ".join(str(s) for s in record["input"]["shape"][1:])
    console.print(f"exported: {outcome.path}")
    console.print(
        f"  input uint8 (batch, {shape}) -> {record['output']['shape'][1]} probabilities; opset {record['opset']}"
    )
    console.print(
        f"  ONNX Runtime {record['onnxruntime_version']} vs torch: max |diff| {parity['max_abs_diff']:.2e} "
        f"(tolerance {parity['tolerance']:g}, batches of {parity['batch_sizes']})"
    )
    console.print(f"  record: {outcome.path.name}.json")
