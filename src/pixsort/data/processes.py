"""Work over many files in worker processes: the one pool the decoders share."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pixsort.base.runtime import available_cores


def map_in_processes(
    func: Callable[[Any], Any], jobs: Sequence[Any], workers: int | None = None, min_jobs: int = 64
) -> Iterator[Any]:
    """``func`` of each job, in order: in ``workers`` processes (default: the available
    cores; forked where the platform can, so nothing is re-imported) when there are at
    least ``min_jobs`` jobs, else here (starting workers costs more than a few jobs).
    ``func`` must be a module-level function and the jobs picklable."""
    n_workers = available_cores() if workers is None else workers
    if n_workers <= 1 or len(jobs) < min_jobs:
        yield from map(func, jobs)
        return
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    chunk = max(1, min(32, len(jobs) // (n_workers * 8)))
    with ctx.Pool(n_workers) as pool:
        yield from pool.imap(func, jobs, chunksize=chunk)


__all__ = ["map_in_processes"]
