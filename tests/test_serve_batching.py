"""The micro-batcher: concurrent requests share model calls, one call at a time, results in order."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from pixsort.serve.batching import MicroBatcher


class SlowModel:
    """Returns each image's first pixel; records batch sizes and overlapping calls."""

    def __init__(self, delay_s: float = 0.05):
        self.delay_s = delay_s
        self.batch_sizes: list[int] = []
        self.active = 0
        self.max_active = 0
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, images: np.ndarray) -> list[int]:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        self.threads.add(threading.get_ident())
        time.sleep(self.delay_s)
        self.batch_sizes.append(len(images))
        with self._lock:
            self.active -= 1
        return [int(im[0, 0, 0]) for im in images]


def images(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint8).reshape(-1, 1, 1, 1)


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_calls_and_get_their_own_results_back():
    model = SlowModel()
    batcher = MicroBatcher(model, max_batch=32)

    async def main():
        return await asyncio.gather(*(batcher.submit(images(i, i + 100)) for i in range(10)))

    results = run(main())
    assert results == [[i, i + 100] for i in range(10)]
    assert sum(model.batch_sizes) == 20
    assert len(model.batch_sizes) < 10  # requests queued behind the first call went together
    assert model.max_active == 1  # never two model calls at once
    assert threading.get_ident() not in model.threads  # the model ran off the event loop thread


def test_batches_stop_at_max_batch():
    model = SlowModel(delay_s=0.02)
    batcher = MicroBatcher(model, max_batch=4)

    async def main():
        return await asyncio.gather(*(batcher.submit(images(i)) for i in range(12)))

    assert run(main()) == [[i] for i in range(12)]
    assert max(model.batch_sizes) <= 4


def test_a_request_larger_than_max_batch_still_runs_whole():
    model = SlowModel(delay_s=0)
    batcher = MicroBatcher(model, max_batch=2)
    assert run(batcher.submit(images(1, 2, 3, 4, 5))) == [1, 2, 3, 4, 5]
    assert model.batch_sizes == [5]


def test_a_failing_call_fails_every_request_in_it_and_the_batcher_keeps_working():
    calls = []

    def flaky(batch: np.ndarray):
        calls.append(len(batch))
        if len(calls) == 1:
            raise ValueError("model exploded")
        return list(range(len(batch)))

    batcher = MicroBatcher(flaky)

    async def main():
        with pytest.raises(ValueError, match="model exploded"):
            await batcher.submit(images(1))
        return await batcher.submit(images(1, 2))

    assert run(main()) == [0, 1]


def test_a_wrong_number_of_results_is_an_error_not_a_silent_misalignment():
    batcher = MicroBatcher(lambda batch: [0])

    async def main():
        await batcher.submit(images(1, 2, 3))

    with pytest.raises(RuntimeError, match="1 results for 3 images"):
        run(main())


def test_works_across_event_loops_and_closes():
    model = SlowModel(delay_s=0)
    batcher = MicroBatcher(model)
    assert run(batcher.submit(images(7))) == [7]
    assert run(batcher.submit(images(8))) == [8]  # a fresh loop gets a fresh worker

    async def close():
        await batcher.submit(images(9))
        await batcher.aclose()

    run(close())
    assert batcher.calls == 3


def test_rejects_a_bad_max_batch():
    with pytest.raises(ValueError):
        MicroBatcher(lambda b: b, max_batch=0)
