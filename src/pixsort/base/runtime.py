"""What this CPU can do, and process-wide tuning applied once at start-up.

One precision vocabulary for the whole package: ``"auto"``, ``"fp32"``, ``"bf16"``;
one device vocabulary: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` (:func:`select_device`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda", "mps")

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameter ids
_M_MMAP_MAX = -4
# free memory at the top of the heap kept for reuse instead of returned to the OS: one
# batch's activations, so the next batch finds it.  Lite1 at 240 px, batch 64, needs more
# than 256 MiB (an fp32 expansion map alone is 354 MB): at 256 MiB a cold embed of 2,000
# CIFAR images spent 9-13 s in the kernel against 2.1-3.7 s at 1 GiB (wall 24.9-28.0 s
# against 19.6-20.3 s, AMD EPYC, bf16), with the same peak RSS.
TRIM_THRESHOLD = 1 << 30
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
    * ``mallopt(M_TRIM_THRESHOLD, 1 GiB)``: without it glibc returns the freed top of
      the heap to the OS after each batch and faults it back in on the next; issue 12
      measured (Lite1, ``bench/embed.py``) system time 1.9 s against 8.0 s, 4.7x fewer
      page faults and a 15 % shorter run with both settings.  The environment variables
      ``MALLOC_MMAP_MAX_`` / ``MALLOC_TRIM_THRESHOLD_`` take precedence.
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
    if libc_name:
        settings = {"MALLOC_MMAP_MAX_": (_M_MMAP_MAX, 0), "MALLOC_TRIM_THRESHOLD_": (_M_TRIM_THRESHOLD, TRIM_THRESHOLD)}
        try:
            libc = ctypes.CDLL(libc_name)
            for variable, (param, value) in settings.items():
                if variable not in os.environ:
                    libc.mallopt(param, value)
        except (OSError, AttributeError):
            pass
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads or available_cores())


CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


@functools.cache
def cpu_description() -> dict:
    """This machine's CPU as recorded with a trained model: ``model`` (the model name of
    /proc/cpuinfo), ``flags`` (those of :data:`CPU_FLAGS` it has: the vector and
    matrix units that decide float32 / bfloat16 speed) and ``cores`` available."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    if not model:
        import platform

        model = platform.processor() or platform.machine() or "unknown"
    return {"model": model, "flags": [f for f in CPU_FLAGS if f in flags], "cores": available_cores()}


@functools.cache
def native_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX).

    oneDNN also runs bf16 on plain AVX512 by emulation, which is slower than
    float32, so its own "supported" flag is not the question to ask.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool(set(line.split(":", 1)[1].split()) & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def _device_available(kind: str) -> bool:
    import torch

    if kind == "cuda":
        return bool(torch.cuda.is_available())
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available())
    return kind == "cpu"


def select_device(setting: str = "auto"):
    """The ``torch.device`` for a device setting of :data:`DEVICES`.

    ``auto``: ``cuda`` if torch sees a CUDA device, else ``mps`` (Apple GPUs) if
    available, else ``cpu``.  Naming a device this machine does not have is a
    ValueError (never a silent fall-back to the CPU).
    """
    import torch

    if setting not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {setting!r}")
    if setting == "auto":
        setting = next(kind for kind in ("cuda", "mps", "cpu") if _device_available(kind))
    elif not _device_available(setting):
        raise ValueError(
            f"device {setting!r} is not available on this machine"
            f" (torch {torch.__version__}: {'no CUDA device' if setting == 'cuda' else 'no MPS backend'});"
            " use --device auto or cpu"
        )
    return torch.device(setting)


__all__ = [
    "CPU_FLAGS",
    "DEVICES",
    "PRECISIONS",
    "available_cores",
    "check_precision",
    "cpu_description",
    "native_bf16",
    "select_device",
    "tune_cpu",
]
