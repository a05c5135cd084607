"""Helpers shared by the command modules: error reporting and path checks."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True, soft_wrap=True)  # a path in a message stays whole, so it can be copied


def fail(message: str, code: int = 2) -> typer.Exit:
    # the message is text, not markup: "pixsort[ray]" or "a.npz:images[3]" keep their brackets
    console.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


# the embedding options of embed and cluster, worded once
RUNTIME_HELP = (
    "auto | torch | onnx: what computes the backbone (auto: torch in bf16 on a CPU with native bf16, "
    "else ONNX Runtime where it measured faster than torch)."
)
DEVICE_HELP = "auto | cpu | cuda | mps: where torch embeds (auto: a GPU torch sees, else the CPU)."
PRECISION_HELP = "auto | fp32 | bf16 | int8 (int8: a quantized ONNX Runtime graph, its own embeddings)."
ENGINE_HELP = "local | ray: embed here, or as a Ray Data pipeline (the pixsort\\[ray] extra)."
SIZE_HELP = "Decode size in px, and a pretrained backbone's input size (default: what the features need)."
RAY_ADDRESS_HELP = "Ray cluster for --engine ray (default: $RAY_ADDRESS, else a new local Ray)."


def existing_path(path: Path) -> Path:
    if not path.exists():
        raise fail(f"path does not exist: {path}")
    return path


_SET_TITLES = {"carved": "carved validation", "external": "external validation"}
_TABLE_KEYS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc", "pr_auc", "ece", "threshold")


def _cell(m: dict, key: str) -> str:
    v = m.get(key)
    if v is None:
        return ""
    if not isinstance(v, float):
        return str(v)
    ci = (m.get("ci95") or {}).get(key)
    return f"{v:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{v:.4f}"


def print_metric_sets(title: str, sets: dict[str, dict]) -> None:
    """One column per evaluated set, each metric as ``value [low, high]`` (95% interval)."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    for name in sets:
        table.add_column(_SET_TITLES.get(name, name), justify="right")
    table.add_row("n_images", *[str(m.get("n_images", m.get("n", ""))) for m in sets.values()])
    for key in _TABLE_KEYS:
        if any(m.get(key) is not None for m in sets.values()):
            table.add_row(key, *[_cell(m, key) for m in sets.values()])
    console.print(table)
    if any(m.get("ci95") for m in sets.values()):
        console.print("[dim]\\[low, high]: bootstrap 95% interval[/]")
