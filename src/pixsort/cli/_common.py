"""Helpers shared by the command modules: error reporting and path checks."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True, soft_wrap=True)  # a path in a message stays whole, so it can be copied


def fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def existing_path(path: Path) -> Path:
    if not path.exists():
        raise fail(f"path does not exist: {path}")
    return path
