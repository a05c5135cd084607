"""A silenceable progress bar for long extraction runs (rich, on stderr)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["progress_bar", "want_progress"]

# Below this many images a run takes seconds: a bar would only flicker.
AUTO_MIN_IMAGES = 512


def want_progress(setting: bool | str, n_images: int) -> bool:
    """Resolve ``progress=True | False | "auto"`` for a run of ``n_images``."""
    if setting == "auto":
        return n_images >= AUTO_MIN_IMAGES
    return bool(setting)


@contextmanager
def progress_bar(total: int, description: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Context yielding ``advance(n)``; draws a transient bar on stderr when ``enabled``."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
