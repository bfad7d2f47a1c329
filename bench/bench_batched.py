"""Batched fold x seed training (--batched: stacked models, torch.func.vmap) against one at a time
(fit_model per seed/fold), on Emo-DB-sized synthetic features: 5 models (5 folds of one seed) x
1 epoch of 430 training + 50 validation rows, batch 32, 7 classes, the paper's defaults. Interleaved,
best of 2 in quick mode (3 otherwise). This is what the automatic --batched choice on CPU rests on
(execute.BATCHED_CPU_MAX_PARAMS)."""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import torch

from common import log, record
from parrot_ser.training.batched import fit_models_batched
from parrot_ser.training.config import TrainConfig
from parrot_ser.training.data import SERData
from parrot_ser.training.spec import RunSpec
from parrot_ser.training.trainer import build_net, fit_model

CASES = [("fcn", [320]), ("cnn", [320]), ("parrot", [960, 768])]


def run(quick: bool = False) -> Iterable[dict]:
    rng = np.random.default_rng(0)
    n, n_models = 480, 5
    for name, dims in CASES:
        cfg = RunSpec.build(name, TrainConfig(epochs=1, patience=0))
        y = rng.integers(0, 7, n)
        d = SERData([rng.normal(size=(n, k)).astype(np.float32) for k in dims], y, [f"u{i:04d}" for i in range(n)],
                    list("abcdefg"), None, [str(i % 10) for i in range(n)])
        jobs = [(d.subset(np.arange(k * 10, k * 10 + 430)), d.subset(np.arange(430, 480)), k) for k in range(n_models)]
        n_params = sum(p.numel() for p in build_net(cfg, d.input_shapes, 7).parameters())
        best = {"batched": float("inf"), "single": float("inf")}
        for _ in range(2 if quick else 3):
            for how in ("batched", "single"):
                t0 = time.perf_counter()
                if how == "batched":
                    fit_models_batched(jobs, cfg)
                else:
                    for tr, va, s in jobs:
                        fit_model(tr, va, cfg, s)
                best[how] = min(best[how], time.perf_counter() - t0)
        log(f"{name:<7} {n_params / 1e6:5.2f}M params, {n_models} models x 1 epoch: batched {best['batched']:.2f} s, "
            f"one at a time {best['single']:.2f} s (torch threads {torch.get_num_threads()})")
        yield record(f"{name} ({n_params / 1e6:.2f}M params, dims {dims}): {n_models} models x 1 epoch, --batched",
                     best["batched"], "s", baseline="one at a time (fit_model)", baseline_value=best["single"])
