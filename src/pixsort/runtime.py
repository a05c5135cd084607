"""Process-wide CPU tuning, applied once at start-up by the CLI and the estimators."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_MMAP_MAX = -4  # glibc mallopt parameter id
_applied = False


def available_cores() -> int:
    """Cores this process may run on (cgroup/affinity aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def tune_cpu(threads: int | None = None) -> None:
    """Apply the CPU settings that measurably help torch on this class of machine.

    * ``mallopt(M_MMAP_MAX, 0)``: large tensors are otherwise mmapped and unmapped on
      every op, and the page faults dominate small-batch CPU inference/training.
    * torch intra-op threads = available cores (torch may see the host's count
      inside a container).
    Idempotent; safe when glibc or torch is absent.
    """
    global _applied
    if _applied:
        return
    _applied = True
    if os.environ.get("PIXSORT_NO_TUNE"):
        return
    libc_name = ctypes.util.find_library("c")
    if libc_name and "MALLOC_MMAP_MAX_" not in os.environ:
        try:
            ctypes.CDLL(libc_name).mallopt(_M_MMAP_MAX, 0)
        except (OSError, AttributeError):
            pass
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads or available_cores())
