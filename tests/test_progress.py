"""Progress without a terminal: plain, rate-limited lines a log under nohup can show."""

from __future__ import annotations

import io

import pixsort.base.progress as progress_module
from pixsort.base.progress import Progress, progress


class _Log(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_plain_lines_when_stderr_is_not_a_terminal(monkeypatch):
    log = _Log()
    clock = [1000.0]
    monkeypatch.setattr(progress_module.sys, "stderr", log)
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    with progress("Decoding images", 5216, enabled=True) as bar:
        for _ in range(1200):
            bar.advance()
        assert log.getvalue() == ""  # not yet 10 s
        clock[0] += 10.5
        bar.advance()
        assert log.getvalue().splitlines() == ["Decoding images: 1201/5216 (23%)"]
        for _ in range(100):
            bar.advance()  # the clock stands still: no new line
        assert len(log.getvalue().splitlines()) == 1
        for _ in range(5216 - 1301):
            bar.advance()
    lines = log.getvalue().splitlines()
    assert lines[-1] == "Decoding images: 5216/5216 (100%)" and len(lines) == 2


def test_an_unfinished_task_gets_its_line_when_removed_and_nothing_when_disabled(monkeypatch):
    log = _Log()
    monkeypatch.setattr(progress_module.sys, "stderr", log)
    with Progress(enabled=True) as bars:
        task = bars.add_task("epoch 1/3", total=100)
        bars.advance(task, 40, info="loss 0.41")
        bars.remove_task(task)
    assert log.getvalue() == "epoch 1/3: 40/100 (40%)  loss 0.41\n"
    with progress("Decoding images", 10, enabled=False) as bar:
        bar.advance(10)
    assert log.getvalue() == "epoch 1/3: 40/100 (40%)  loss 0.41\n"
