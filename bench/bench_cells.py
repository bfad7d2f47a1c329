"""Training time per epoch of each README step-4 grid cell, one thread, after a warm-up fit: the
reference kernels (PARROT_REFERENCE_KERNELS=1, today's path before issue 10) against the default
and against --precision bf16, each variant in its own subprocess (the allocator setting is per
process), one after the other; plus the reference at torch's default threads (every core in one
process), which is how today's sequential grid ran.

The features are those of bench_grid (the Emo-DB copy through logmel, ssam-tiny and hubert-base
random-init; extracted once into bench/.cache). Each cell is fitted on all 535 utterances, with no
validation side and --patience 0, for 2 epochs (1 in quick mode). The fit after a warm-up fit of the
same model is the one timed: a grid worker is reused across cells, so the first-fit costs (oneDNN
primitive creation, first-touch memory) are paid once per process, not per fit. This is the
training-only part of bench_grid, without its fixed start-up and plotting costs.

Ceiling: each cell's training FLOPs per epoch (matmuls and convolutions of one step, counted by
torch.utils.flop_counter, times the steps of an epoch) at this machine's one-thread dense matmul
rate (common.matmul_gflops, measured in the same process) is the least time any fp32 kernel could
take on one core. Today's path (default threads) against that time divided by the cores bounds
what the grid's fp32 training can gain on this machine without doing less arithmetic.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

import numpy as np

from common import log, print_lines, record, variant_lines
from parrot_ser.training.execute import usable_cores

CELLS = [("cnn", ["logmel"]), ("cnn", ["ssam-tiny"]), ("cnn", ["hubert-base"])] + [
    (m, ["ssam-tiny", "hubert-base"]) for m in ("concat", "hadamard", "parrot", "parrot-token")]
# name: (environment, torch threads (0 = torch's default, all cores: what today's sequential grid
# ran), precision)
VARIANTS = {"reference": ({"PARROT_REFERENCE_KERNELS": "1"}, 1, "fp32"), "default": ({}, 1, "fp32"),
            "bf16": ({}, 1, "bf16"), "reference, default threads": ({"PARROT_REFERENCE_KERNELS": "1"}, 0, "fp32")}


def _measure(store: str, epochs: int, threads: int, precision: str) -> Iterable[dict]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from common import matmul_gflops
    from parrot_ser.training import RunSpec, TrainConfig, fit_model
    from parrot_ser.training.data import make_batch
    from parrot_ser.training.run import load_features
    from parrot_ser.training.trainer import build_net

    if threads:
        torch.set_num_threads(threads)
    peak = matmul_gflops()
    config = TrainConfig(epochs=epochs, patience=0, num_threads=threads or None, precision=precision)
    for model, encs in CELLS:
        spec = RunSpec.build(model, config, encoders=encs)
        data, _, _ = load_features(store, spec)
        net = build_net(spec, data.input_shapes, len(data.classes))
        rows = np.arange(config.batch_size)
        counter = FlopCounterMode(display=False)
        with counter:
            loss = torch.nn.functional.cross_entropy(net(make_batch(data, rows)), torch.from_numpy(data.labels[rows]))
            loss.backward()
        epoch_flops = counter.get_total_flops() / config.batch_size * len(data)  # per row x rows of an epoch
        fit_model(data, None, spec, seed=0)  # warm-up
        t0 = time.perf_counter()
        fit_model(data, None, spec, seed=0)
        yield {"cell": f"{model} {'+'.join(encs)}", "s_per_epoch": (time.perf_counter() - t0) / epochs,
               "flops": epoch_flops, "peak": peak}


def run(quick: bool = False) -> Iterable[dict]:
    from bench_grid import features

    store = str(features())
    epochs = 1 if quick else 2
    per: dict[str, dict[str, float]] = {}
    for variant, (env, threads, precision) in VARIANTS.items():
        for rec in variant_lines(__file__, env, store, str(epochs), str(threads), precision):
            cell = per.setdefault(rec["cell"], {})
            cell[variant] = rec["s_per_epoch"]
            if variant == "default":
                cell.update(flops=rec["flops"], peak=rec["peak"])
    tot = {v: sum(c[v] for c in per.values()) for v in VARIANTS}
    floor = 0.0  # seconds per epoch of all cells at the one-thread matmul rate
    for cell, t in per.items():
        at_peak = t["flops"] / (t["peak"] * 1e9)
        floor += at_peak
        log(f"{cell:<32} reference {t['reference']:6.2f} s/epoch   default {t['default']:6.2f} s/epoch   "
            f"{t['reference'] / t['default']:.2f}x   bf16 {t['bf16']:6.2f} s/epoch   {t['flops'] / 1e9:6.1f} GFLOP/epoch: "
            f"{t['flops'] / t['default'] / 1e9:5.1f} GFLOP/s = {100 * at_peak / t['default']:4.1f}% of the "
            f"{t['peak']:.0f} GFLOP/s 1-thread matmul")
        yield record(f"{cell} training s/epoch (535 utterances, 1 thread)", t["default"], "s",
                     baseline="reference kernels", baseline_value=t["reference"])
        yield record(f"{cell} training s/epoch (535 utterances, 1 thread), --precision bf16", t["bf16"], "s",
                     baseline="default (fp32)", baseline_value=t["default"])
        yield record(f"{cell} achieved GFLOP/s (1 thread)", t["flops"] / t["default"] / 1e9, "GFLOP/s",
                     baseline="dense matmul, 1 thread (common.matmul_gflops)", baseline_value=t["peak"],
                     ratio=at_peak / t["default"])
    log(f"{'all 7 cells':<32} reference {tot['reference']:6.2f} s/epoch   default {tot['default']:6.2f} s/epoch   "
        f"{tot['reference'] / tot['default']:.2f}x   at the 1-thread matmul rate: {floor:.2f} s/epoch")
    yield record("all 7 README grid cells, training s/epoch (1 thread)", tot["default"], "s",
                 baseline="reference kernels", baseline_value=tot["reference"])
    cores = usable_cores()
    today = tot["reference, default threads"]
    log(f"today's path (reference kernels, torch's default {cores} threads, one cell after the other): "
        f"{today:.2f} s/epoch")
    log(f"ceiling: every core at the 1-thread matmul rate, {floor / cores:.2f} s/epoch, is {today / floor * cores:.1f}x "
        f"faster than today's path; the default on {cores} workers with perfect scaling would be "
        f"{today / tot['default'] * cores:.1f}x")
    log(f"{'all 7 cells, bf16':<32} {tot['bf16']:6.2f} s/epoch: {tot['default'] / tot['bf16']:.2f}x over fp32")
    yield record("all 7 README grid cells, training s/epoch (1 thread), --precision bf16", tot["bf16"], "s",
                 baseline="default (fp32)", baseline_value=tot["default"])
    yield record("all 7 cells, today's path (reference kernels, torch's default threads)", today, "s")
    yield record(f"all 7 cells with every core at the 1-thread matmul rate ({cores} cores): the ceiling for any "
                 f"kernel", floor / cores, "s", baseline="today's path (reference kernels, default threads)",
                 baseline_value=today)


if __name__ == "__main__":  # one variant, as a subprocess of run(): JSON lines on stdout
    print_lines(_measure(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
