"""One progress display for every long loop: a rich bar on a terminal, nothing otherwise.

>>> with progress("Decoding images", total=len(jobs), enabled=True) as bar:
...     for job in jobs:
...         bar.advance()
>>> with Progress(enabled=True) as bars:          # several bars and printed lines
...     task = bars.add_task("epoch 1/3", total=n)
...     bars.advance(task, 32, info="loss 0.41")
...     bars.print("epoch 1 done")
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

# Below this many items a run takes seconds: a bar would only flicker.
AUTO_MIN_ITEMS = 512


def want_progress(setting: bool | str, n_items: int, auto_min: int = AUTO_MIN_ITEMS) -> bool:
    """Resolve ``progress=True | False | "auto"`` for a run of ``n_items``."""
    if setting == "auto":
        return n_items >= auto_min
    return bool(setting)


class Progress:
    """rich progress bars on stderr (transient), with an ``info`` text per bar; a no-op when disabled."""

    def __init__(self, enabled: bool = True):
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
                transient=True,
            )

    def __enter__(self) -> Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def add_task(self, description: str, total: int):
        return self.bar.add_task(description, total=total, info="") if self.bar is not None else None

    def advance(self, task, n: int = 1, info: str | None = None) -> None:
        if self.bar is not None and task is not None:
            self.bar.update(task, advance=n, **({"info": info} if info is not None else {}))

    def remove_task(self, task) -> None:
        if self.bar is not None and task is not None:
            self.bar.remove_task(task)

    def print(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text)


class _Single:
    def __init__(self, bars: Progress, task):
        self._bars, self._task = bars, task

    def advance(self, n: int = 1) -> None:
        self._bars.advance(self._task, n)


@contextmanager
def progress(description: str, total: int, enabled: bool) -> Iterator[_Single]:
    """One bar: ``with progress(...) as bar: bar.advance(n)``."""
    with Progress(enabled) as bars:
        yield _Single(bars, bars.add_task(description, total))


__all__ = ["AUTO_MIN_ITEMS", "Progress", "progress", "want_progress"]
