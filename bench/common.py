"""Shared benchmark helpers: timing, the machine's dense matmul throughput, JSON records."""

from __future__ import annotations

import json
import os
import subprocess
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


def variant_lines(script: str, env: dict[str, str], *args: str) -> list[dict]:
    """Run ``python SCRIPT ARGS`` with ``env`` added to this environment (one variant of a bench that
    needs a process of its own, e.g. for PARROT_REFERENCE_KERNELS or the allocator setting) and
    return the JSON lines it printed on stdout; its stderr goes to ours."""
    r = subprocess.run([sys.executable, script, *args], env={**os.environ, **env}, stdout=subprocess.PIPE,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{os.path.basename(script)} {' '.join(args)} failed (exit {r.returncode})")
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def print_lines(records) -> None:
    """The other side of variant_lines: what a variant subprocess prints."""
    for rec in records:
        print(json.dumps(rec), flush=True)


def record(metric: str, value: float, unit: str, baseline: str | None = None,
           baseline_value: float | None = None, ratio: float | None = None, bench: str | None = None) -> dict:
    if ratio is None and baseline_value is not None and value:
        ratio = baseline_value / value if unit in ("s", "ms") else None
    return {"bench": bench, "metric": metric, "value": float(value), "unit": unit, "baseline": baseline,
            "baseline_value": None if baseline_value is None else float(baseline_value),
            "ratio": None if ratio is None else float(ratio)}
