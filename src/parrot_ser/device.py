"""One check for a torch device name, so ``--device bogus`` or ``--device cuda`` on a machine
without a GPU is a clear ConfigError before any work, not a torch traceback mid-run; and the CPU
allocator setting training processes run with (``keep_freed_memory``)."""

from __future__ import annotations

import os
import sys

from parrot_ser.errors import ConfigError

# PARROT_REFERENCE_KERNELS=1: training runs the code before issue 10's kernels (the conv stack's plain
# nn.Sequential, torch.optim.Adam's for-loop path, torch's dropout, glibc's default allocator); the
# benchmarks time it as the baseline and the tests compare against it. Read once, at import.
REFERENCE_KERNELS = os.environ.get("PARROT_REFERENCE_KERNELS") == "1"

_MEMORY_KEPT = False


def check_device(name: str, option: str = "--device") -> str:
    """Return ``name`` if torch can use it here, else raise ConfigError saying what to pass."""
    import torch

    try:
        dev = torch.device(str(name))
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"{option} {name!r} is not a torch device; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{option} {name}: torch sees no CUDA GPU here (torch {torch.__version__}); "
                              f"use {option} cpu")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise ConfigError(f"{option} {name}: only {n} CUDA device(s) visible (cuda:0..cuda:{n - 1})")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"{option} {name}: MPS is not available on this machine; use {option} cpu")
    elif dev.type != "cpu":
        raise ConfigError(f"{option} {name!r}: device type {dev.type!r} is not supported; use cpu, cuda or mps")
    return str(name)


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse instead of handing it back to the system.

    A training step allocates the same large tensors every step (the paper-size heads' 59 MB weight
    gradient, 31 MB feature maps). glibc serves blocks above 32 MB with a fresh mmap and unmaps them
    on free, so every step page-faults them in again (a paper-size parrot step measured 1.09x faster
    with this setting, ``python bench/run.py kernels``). With mmap off and a high
    trim threshold, freed blocks stay in the heap and the next step reuses them (the effect of the
    jemalloc / tcmalloc preload that PyTorch's CPU tuning guide recommends, without a preload). The
    price: the process keeps its peak heap until it exits, which suits a training process. Called by
    the trainers; once per process; a no-op off Linux/glibc, with PARROT_MALLOC_DEFAULT=1 or with
    PARROT_REFERENCE_KERNELS=1 (the benchmarks' baseline). Returns
    whether the setting is in effect."""
    global _MEMORY_KEPT
    if _MEMORY_KEPT or not sys.platform.startswith("linux") or os.environ.get("PARROT_MALLOC_DEFAULT") == "1" \
            or REFERENCE_KERNELS:
        return _MEMORY_KEPT
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
        _MEMORY_KEPT = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):  # not glibc (musl): leave the allocator alone
        _MEMORY_KEPT = False
    return _MEMORY_KEPT
