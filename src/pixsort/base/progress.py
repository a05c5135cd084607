"""One progress display for every long loop: a rich bar on a terminal; when stderr is not a
terminal (a log under nohup, a CI job), plain lines such as ``Decoding images: 1200/5216 (23%)``
at most every :data:`PLAIN_INTERVAL_S` seconds and when a task ends.

>>> with progress("Decoding images", total=len(jobs), enabled=True) as bar:
...     for job in jobs:
...         bar.advance()
>>> with Progress(enabled=True) as bars:          # several bars and printed lines
...     task = bars.add_task("epoch 1/3", total=n)
...     bars.advance(task, 32, info="loss 0.41")
...     bars.print("epoch 1 done")
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

# Below this many items a run takes seconds: a bar would only flicker.
AUTO_MIN_ITEMS = 512
# Without a terminal, a task's progress line is printed at most this often (and at its end).
PLAIN_INTERVAL_S = 10.0


def want_progress(setting: bool | str, n_items: int, auto_min: int = AUTO_MIN_ITEMS) -> bool:
    """Resolve ``progress=True | False | "auto"`` for a run of ``n_items``."""
    if setting == "auto":
        return n_items >= auto_min
    return bool(setting)


class Progress:
    """rich progress bars on stderr (transient), with an ``info`` text per bar; a no-op when disabled."""

    def __init__(self, enabled: bool = True):
        self.bar = None
        self.plain: _PlainLines | None = None
        if enabled and not _stderr_is_terminal():
            self.plain = _PlainLines()
        elif enabled:
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
        if self.plain is not None:
            self.plain.finish_all()

    def add_task(self, description: str, total: int):
        if self.plain is not None:
            return self.plain.add(description, total)
        return self.bar.add_task(description, total=total, info="") if self.bar is not None else None

    def advance(self, task, n: int = 1, info: str | None = None) -> None:
        if self.plain is not None and task is not None:
            self.plain.advance(task, n, info)
        elif self.bar is not None and task is not None:
            self.bar.update(task, advance=n, **({"info": info} if info is not None else {}))

    def remove_task(self, task) -> None:
        if self.plain is not None and task is not None:
            self.plain.finish(task)
        elif self.bar is not None and task is not None:
            self.bar.remove_task(task)

    def print(self, text: str) -> None:
        if self.plain is not None:
            from rich.console import Console

            Console(stderr=True, soft_wrap=True).print(text)
        elif self.bar is not None:
            self.bar.console.print(text)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class _PlainLines:
    """Progress as plain lines on stderr, rate-limited per task."""

    def __init__(self) -> None:
        self.tasks: dict[int, dict] = {}

    def add(self, description: str, total: int) -> int:
        task = len(self.tasks)
        self.tasks[task] = {"description": description, "total": total, "done": 0, "info": "", "last": time.monotonic()}
        return task

    def advance(self, task: int, n: int, info: str | None) -> None:
        t = self.tasks.get(task)
        if t is None:
            return
        t["done"] += n
        if info is not None:
            t["info"] = info
        if t["total"] and t["done"] >= t["total"]:
            self.finish(task)
        elif time.monotonic() - t["last"] >= PLAIN_INTERVAL_S:
            self._line(t)

    def finish(self, task: int) -> None:
        t = self.tasks.pop(task, None)
        if t is not None:
            self._line(t)

    def finish_all(self) -> None:
        for task in list(self.tasks):
            self.finish(task)

    @staticmethod
    def _line(t: dict) -> None:
        t["last"] = time.monotonic()
        total = t["total"]
        share = f" ({100 * t['done'] // total}%)" if total else ""
        info = f"  {t['info']}" if t["info"] else ""
        sys.stderr.write(f"{t['description']}: {t['done']}/{total}{share}{info}\n")
        sys.stderr.flush()


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


__all__ = ["AUTO_MIN_ITEMS", "PLAIN_INTERVAL_S", "Progress", "progress", "want_progress"]
