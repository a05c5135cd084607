"""Continuous micro-batching: concurrent requests share one model call.

Requests that arrive while the model is busy queue up; when it is free, everything
queued (up to ``max_batch`` images) goes through in one call on a worker thread.  At
low load a request runs alone at once (no waiting window is added); under load the
per-call overhead is paid once per batch instead of once per request, and only one
inference runs at a time, so torch's threads never fight each other for the cores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import anyio.to_thread
import numpy as np

BatchFunction = Callable[[np.ndarray], Sequence[Any]]


class MicroBatcher:
    """Run ``fn`` on batches stacked from concurrent :meth:`submit` calls.

    Parameters
    ----------
    fn : callable
        ``fn(images)`` with images (n, H, W, C) returns n per-image results.  Runs on a
        worker thread, one call at a time.
    max_batch : int
        Most images in one call; one request larger than this still runs whole.
    """

    def __init__(self, fn: BatchFunction, max_batch: int = 32):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.fn = fn
        self.max_batch = int(max_batch)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self.calls = 0  # model calls made (for tests and metrics)

    async def submit(self, images: np.ndarray) -> list[Any]:
        """Results for ``images`` (n, H, W, C), computed in a shared batch."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._worker is None or self._worker.done():
            self._start(loop)
        future: asyncio.Future = loop.create_future()
        await self._queue.put((images, future))
        return await future

    async def aclose(self) -> None:
        """Stop the worker (pending requests are cancelled)."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._worker = None

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # one worker per event loop: test clients may run each request in a fresh loop
        self._loop = loop
        self._queue = asyncio.Queue()
        self._worker = loop.create_task(self._run(self._queue))

    async def _run(self, queue: asyncio.Queue) -> None:
        while True:
            batch = [await queue.get()]
            n_images = len(batch[0][0])
            while n_images < self.max_batch and not queue.empty():
                item = queue.get_nowait()
                batch.append(item)
                n_images += len(item[0])
            batch = [(images, future) for images, future in batch if not future.cancelled()]
            if not batch:
                continue
            stacked = batch[0][0] if len(batch) == 1 else np.concatenate([images for images, _ in batch])
            try:
                results = await anyio.to_thread.run_sync(self.fn, stacked)
                self.calls += 1
                if len(results) != len(stacked):
                    raise RuntimeError(f"model returned {len(results)} results for {len(stacked)} images")
            except Exception as exc:  # the error belongs to every request in the batch
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for images, future in batch:
                if not future.done():
                    future.set_result(list(results[start : start + len(images)]))
                start += len(images)


__all__ = ["MicroBatcher"]
