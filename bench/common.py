"""Shared benchmark helpers: timing, the machine's dense matmul throughput, JSON records."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import torch


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def best_time(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Best wall time of `repeats` runs (seconds) after `warmup` runs: the least noisy estimate."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_gflops(n: int = 1024, dtype: torch.dtype = torch.float32) -> float:
    """Measured dense matmul throughput of this machine (GFLOP/s) with torch's current threads."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    t = best_time(lambda: a @ b, repeats=5, warmup=2)
    return 2 * n**3 / t / 1e9


def memory_gbps(n_bytes: int = 256 << 20) -> float:
    """Measured memory bandwidth (GB/s): a copy of a tensor far larger than the caches (bytes read +
    written per second), with torch's current threads."""
    a = torch.empty(n_bytes // 4, dtype=torch.float32).uniform_()
    b = torch.empty_like(a)
    t = best_time(lambda: b.copy_(a), repeats=5, warmup=1)
    return 2 * n_bytes / t / 1e9


def record(metric: str, value: float, unit: str, baseline: str | None = None,
           baseline_value: float | None = None, ratio: float | None = None, bench: str | None = None) -> dict:
    if ratio is None and baseline_value is not None and value:
        ratio = baseline_value / value if unit in ("s", "ms") else None
    return {"bench": bench, "metric": metric, "value": float(value), "unit": unit, "baseline": baseline,
            "baseline_value": None if baseline_value is None else float(baseline_value),
            "ratio": None if ratio is None else float(ratio)}
