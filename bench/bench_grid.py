"""The README's step-4 grid on the Emo-DB copy: the new default (hand-written kernels, fused Adam,
every core, batched heads where they pay) against today's sequential path (one process, one
seed/fold after the other, torch's default threads, and the kernels as they were before issue 10:
PARROT_REFERENCE_KERNELS=1 runs the plain nn.Sequential conv stack, torch.optim.Adam's for-loop
implementation and glibc's default allocator), all run here as `parrot-ser grid` subprocesses, one
after the other in the same run. The full mode also runs the new kernels sequentially, which splits
the gain into kernels and parallel workers.

Encoders logmel, ssam-tiny and hubert-base (random-init, as in the README), models cnn, concat,
hadamard, parrot, parrot-token, --pairs hetero, 5 speaker folds. A full 50-epoch grid of 3 seeds
takes hours one at a time on 2 cores, so the epochs and seeds are cut (the metric names say how);
the work per epoch is the same, so the ratio carries over.

Features: PARROT_BENCH_FEATURES=DIR (a store with the three encoders), else they are extracted into
bench/.cache/emodb-feats (minutes; reused) from ../shared/data/emodb.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from common import log, record
from parrot_ser.training.execute import usable_cores

ROOT = Path(__file__).resolve().parents[1]
EMODB = ROOT.parent / "shared" / "data" / "emodb"
ENCODERS = "logmel,ssam-tiny,hubert-base"
MODELS = "cnn,concat,hadamard,parrot,parrot-token"


def _cli(*args: str, env: dict | None = None) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "parrot_ser.cli.main", *args], capture_output=True, text=True,
                       env=env)
    if r.returncode != 0:
        raise RuntimeError(f"parrot-ser {' '.join(args[:2])} failed: {r.stderr.strip()[-600:]}")
    return time.perf_counter() - t0


def features() -> Path:
    given = os.environ.get("PARROT_BENCH_FEATURES")
    if given:
        return Path(given)
    store = ROOT / "bench" / ".cache" / "emodb-feats"
    if not (store / "hubert-base" / "meta.json").is_file():
        log(f"extracting {ENCODERS} features of {EMODB} into {store} (once)")
        _cli("extract", str(EMODB), "--corpus", "emodb", "-e", "logmel", "-e", "ssam-tiny", "-e", "hubert-base",
             "--random-init", "--out", str(store), "--quiet")
    return store


def run(quick: bool = False) -> Iterable[dict]:
    store = features()
    seeds, epochs = ("0", 2) if quick else ("0", 4)
    encoders, models = (ENCODERS, "cnn,concat,parrot") if quick else (ENCODERS, MODELS)
    what = f"{encoders} x {models}, hetero pairs, 5 folds, seeds {seeds}, {epochs} epoch(s)"
    env_default = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    with tempfile.TemporaryDirectory() as tmp:
        common = ["grid", "--features", str(store), "--encoders", encoders, "--models", models, "--pairs", "hetero",
                  "--seeds", seeds, "--epochs", str(epochs), "--patience", "0", "--quiet"]
        env_ref = {**env_default, "PARROT_REFERENCE_KERNELS": "1"}
        # today's path: one process, seed/folds one after the other, torch's default thread count
        t_seq = _cli(*common, "--workers", "1", "--no-batched", "--out", f"{tmp}/seq", env=env_ref)
        log(f"grid today's sequential path (1 process, default threads, reference kernels): {t_seq:.1f} s  [{what}]")
        if not quick:
            t_kern = _cli(*common, "--workers", "1", "--no-batched", "--out", f"{tmp}/kern", env=env_default)
            log(f"grid sequential with the new kernels (1 process, default threads): {t_kern:.1f} s")
            yield record(f"README step-4 grid wall time, new kernels, sequential [{what}]", t_kern, "s",
                         baseline="today's sequential path (reference kernels)", baseline_value=t_seq)
        # The README grid (3 seeds x up to 50 epochs) is far above execute.MIN_PARALLEL_WORK, so its
        # default is one worker per core; this cut-down grid falls below it, so the bench asks for
        # what the real grid's default does (worker start-up then weighs more here than there).
        t_new = _cli(*common, "--workers", str(usable_cores()), "--out", f"{tmp}/new", env=env_default)
        log(f"grid new default (workers = cores, batched where it pays): {t_new:.1f} s")
        same = Path(f"{tmp}/seq/table.csv").read_text() == Path(f"{tmp}/new/table.csv").read_text()
        log(f"tables identical: {same} (not expected: the new dropout masks are another random draw, and "
            f"fused Adam and thread counts change float rounding)")
    yield record(f"README step-4 grid wall time, new default [{what}]", t_new, "s",
                 baseline="today's sequential path: one process, default threads, reference kernels",
                 baseline_value=t_seq)
