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


def concurrent_lines(script: str, env: dict[str, str], n: int, *args: str) -> list[list[dict]]:
    """Run ``n`` copies of ``python SCRIPT ARGS INDEX BARRIER_DIR N`` at the same time (the way a grid's
    worker processes share the machine), each with ``env`` and one torch thread per core it gets
    (``cores // n``, what execute.py gives each worker). A copy calls :func:`barrier` after its
    warm-up, so the timed parts overlap. Returns each copy's JSON lines."""
    import tempfile

    from parrot_ser.training.execute import usable_cores

    threads = str(max(1, usable_cores() // n))
    with tempfile.TemporaryDirectory() as sync:
        full = {**os.environ, **env, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        procs = [subprocess.Popen([sys.executable, script, *args, str(i), sync, str(n)], env=full,
                                  stdout=subprocess.PIPE, text=True) for i in range(n)]
        outs = [p.communicate()[0] for p in procs]
    for p in procs:
        if p.returncode != 0:
            raise RuntimeError(f"{os.path.basename(script)} {' '.join(args)} failed (exit {p.returncode})")
    return [[json.loads(line) for line in out.splitlines() if line.strip()] for out in outs]


def barrier(sync_dir: str, index: int, n: int, name: str = "start", timeout: float = 600.0) -> None:
    """Wait until all ``n`` copies started by :func:`concurrent_lines` have reached barrier ``name``."""
    from pathlib import Path

    Path(sync_dir, f"{name}.{index}.ready").touch()
    t0 = time.monotonic()
    while len(list(Path(sync_dir).glob(f"{name}.*.ready"))) < n:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError("bench barrier: the other copies never got ready")
        time.sleep(0.01)


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
