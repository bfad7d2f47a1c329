"""Training time per epoch of each README step-4 grid cell, one thread, after a warm-up fit: the
reference kernels (PARROT_REFERENCE_KERNELS=1, today's path before issue 10) against the default,
each variant in its own subprocess (the allocator setting is per process), one after the other.

The features are those of bench_grid (the Emo-DB copy through logmel, ssam-tiny and hubert-base
random-init; extracted once into bench/.cache). Each cell is fitted on all 535 utterances, with no
validation side and --patience 0, for 2 epochs (1 in quick mode). The fit after a warm-up fit of the
same model is the one timed: a grid worker is reused across cells, so the first-fit costs (oneDNN
primitive creation, first-touch memory) are paid once per process, not per fit. This is the
training-only part of bench_grid, without its fixed start-up and plotting costs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

from common import log, print_lines, record, variant_lines

CELLS = [("cnn", ["logmel"]), ("cnn", ["ssam-tiny"]), ("cnn", ["hubert-base"])] + [
    (m, ["ssam-tiny", "hubert-base"]) for m in ("concat", "hadamard", "parrot", "parrot-token")]
VARIANTS = {"reference": {"PARROT_REFERENCE_KERNELS": "1"}, "default": {}}


def _measure(store: str, epochs: int) -> Iterable[dict]:
    import torch

    from parrot_ser.training import TrainConfig, fit_model
    from parrot_ser.training.run import load_features

    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=epochs, patience=0, num_threads=1)
    for model, encs in CELLS:
        data, _, _ = load_features(store, encs, cfg)
        fit_model(data, None, model, cfg, seed=0)  # warm-up
        t0 = time.perf_counter()
        fit_model(data, None, model, cfg, seed=0)
        yield {"cell": f"{model} {'+'.join(encs)}", "s_per_epoch": (time.perf_counter() - t0) / epochs}


def run(quick: bool = False) -> Iterable[dict]:
    from bench_grid import features

    store = str(features())
    epochs = 1 if quick else 2
    per: dict[str, dict[str, float]] = {}
    for variant, env in VARIANTS.items():
        for rec in variant_lines(__file__, env, store, str(epochs)):
            per.setdefault(rec["cell"], {})[variant] = rec["s_per_epoch"]
    tot = {v: sum(c[v] for c in per.values()) for v in VARIANTS}
    for cell, t in per.items():
        log(f"{cell:<32} reference {t['reference']:6.2f} s/epoch   default {t['default']:6.2f} s/epoch   "
            f"{t['reference'] / t['default']:.2f}x")
        yield record(f"{cell} training s/epoch (535 utterances, 1 thread)", t["default"], "s",
                     baseline="reference kernels", baseline_value=t["reference"])
    log(f"{'all 7 cells':<32} reference {tot['reference']:6.2f} s/epoch   default {tot['default']:6.2f} s/epoch   "
        f"{tot['reference'] / tot['default']:.2f}x")
    yield record("all 7 README grid cells, training s/epoch (1 thread)", tot["default"], "s",
                 baseline="reference kernels", baseline_value=tot["reference"])


if __name__ == "__main__":  # one variant, as a subprocess of run(): JSON lines on stdout
    print_lines(_measure(sys.argv[1], int(sys.argv[2])))
