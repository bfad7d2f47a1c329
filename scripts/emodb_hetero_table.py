#!/usr/bin/env python
"""Does heterogeneous fusion help with real pretrained models? The table of docs/results.md, in one
resumable command (issue 19):

    python scripts/emodb_hetero_table.py [--root ../shared/data/emodb] [--whisper ../shared/models/whisper-base]
                                         [--out runs/emodb-hetero] [--seeds 0] [--jobs 2]
    python scripts/emodb_hetero_table.py --report-only      # the table from whatever has finished

Real pretrained encoders only (plus logmel, handcrafted): whisper-base (attention), resemblyzer
(recurrent LSTM), crepe-tiny (convolutional); one feature store with every layer, pooled and frames.
Emo-DB copy, speaker-independent 5-fold CV, every cell seeds x folds. Cells, in queue order:
  1. singles: fcn on every layer of every encoder (for the nested "layer chosen on validation" row),
     fcn and cnn with learned layer weighting over all layers;
  2. pairs (resemblyzer + whisper-base, crepe-tiny + whisper-base, resemblyzer + crepe-tiny,
     logmel + whisper-base; the non-attention encoder takes branch p): concat, hadamard, gated, ot,
     parrot, parrot-token on layer-weighted pooled features, and parrot-token on layer-weighted frames
     ("parrot-token-frames"). PARROT without its OT branch is exactly `hadamard` (same branch encoders,
     head on R_p * R_q): the ablation row;
  3. cnn on every layer (the nested cnn row).
No "best" is ever picked on test folds: layer choices are nested (training/selection.py), the pairs use
learned layer weights. Significance: McNemar (exact binomial) on the 535 test predictions of the first
seed, each fusion against concat and against each of its two single encoders (each with its cnn head -
the same conv branch encoder and layer mix the fusion models use - and its fcn head, both
layer-weighted), parrot / parrot-token against hadamard (the OT ablation), and our variants
(parrot-token, parrot-token-frames, gated) against the paper's parrot; Holm over the whole family. Fold-level paired t-tests are shown
uncorrected. Seeds run in order: every cell's first seed before any cell's next one. A cell counts for a
seed when all its folds of that seed have finished; rerun to resume (finished (seed, fold) runs are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

ENCODERS = {"whisper-base": 7, "resemblyzer": 4, "crepe-tiny": 2, "logmel": 1}  # hidden states stored
REAL = ("whisper-base", "resemblyzer", "crepe-tiny")
PAIRS = (("resemblyzer", "whisper-base"), ("crepe-tiny", "whisper-base"), ("resemblyzer", "crepe-tiny"),
         ("logmel", "whisper-base"))
POOLED_FUSIONS = ("concat", "hadamard", "gated", "ot", "parrot", "parrot-token")
FRAMES = "parrot-token-frames"
FUSIONS = (*POOLED_FUSIONS, FRAMES)
# The single-encoder cells each fusion is compared with: the cnn (the same conv branch encoder and
# layer mix the fusion models use) and the fcn head, both on learned layer weights.
SINGLE_REFS = ("cnn-weighted", "fcn-weighted")
OT_MODELS = ("ot", "parrot", "parrot-token", FRAMES)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- the cells ------------------------------------------------------------------------------------
def cells(stage: str | None = None) -> list[dict]:
    """Every cell: name, row, encoders, model, layer ('all' = learned weighting), frames; queue order."""
    out = []
    for e, n in ENCODERS.items():
        out += [dict(row=e, name=f"fcn-L{i}", encoders=(e,), model="fcn", layer=i, stage="single") for i in range(n)]
    for e in ENCODERS:
        out += [dict(row=e, name=f"{m}-weighted", encoders=(e,), model=m, layer="weighted", stage="single")
                for m in ("fcn", "cnn")]
    for a, b in PAIRS:
        out += [dict(row=f"{a}+{b}", name=m, encoders=(a, b), model=m, layer="weighted", stage="pair") for m in POOLED_FUSIONS]
    for a, b in PAIRS:
        out.append(dict(row=f"{a}+{b}", name=FRAMES, encoders=(a, b), model="parrot-token", layer="weighted",
                        frames=True, stage="frames"))
    for e, n in ENCODERS.items():
        if n > 1:
            out += [dict(row=e, name=f"cnn-L{i}", encoders=(e,), model="cnn", layer=i, stage="cnn-layers")
                    for i in range(n)]
    return [c for c in out if stage is None or c["stage"] == stage]


def cell_dir(out: Path, c: dict) -> Path:
    return out / "cells" / c["row"] / c["name"]


def config(c: dict, args) -> object:
    from parrot_ser.training.config import TrainConfig

    model = {} if c["model"] == "fcn" else {"conv_channels": [int(x) for x in args.conv_channels.split(",")]}
    if c.get("frames"):
        model["token_source"] = "frames"
    return TrainConfig(epochs=args.epochs, patience=args.patience, num_threads=1, layer=c["layer"],
                       use_frames=bool(c.get("frames")), model=model).validate()


def records(run_dir: Path) -> dict[tuple[int, int], dict]:
    """Finished (seed, fold) entries of a cell (whatever its run identity: the report reads them all)."""
    out = {}
    for p in sorted((run_dir / "folds").glob("seed*_fold*.json")):
        r = json.loads(p.read_text(encoding="utf-8"))
        out[(int(r["seed"]), int(r["fold"]))] = r
    return out


def done(run_dir: Path, seeds: list[int], folds: int) -> bool:
    have = records(run_dir) if (run_dir / "folds").is_dir() else {}
    return all((s, k) in have for s in seeds for k in range(folds))


def _run_cell(store: str, c: dict, cfg, seeds: list[int], run_dir: str, folds: int) -> float:
    """One cell in a worker process (1 torch thread)."""
    import torch

    from parrot_ser.training.run import run_cv

    torch.set_num_threads(1)
    t = time.perf_counter()
    run_cv(store, list(c["encoders"]), c["model"], cfg, seeds, "speaker-kfold", run_dir, n_folds=folds)
    return time.perf_counter() - t


def train(args, out: Path, store: Path, seeds: list[int]) -> None:
    """Seed by seed (cumulative seed lists, so a cell folder holds all its seeds), cells in queue
    order, in --jobs worker processes."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    stages = args.stages.split(",")
    todo = []
    for k in range(len(seeds)):
        todo += [(c, seeds[:k + 1]) for st in stages for c in cells(st)
                 if not done(cell_dir(out, c), seeds[:k + 1], args.folds)]
    log(f"{len(todo)} (cell, seeds) jobs to run")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as ex:
        futs = {}
        for c, sds in todo:
            try:
                cfg = config(c, args)
            except Exception as e:  # noqa: BLE001 - a cell the code cannot run yet: say so, go on
                log(f"SKIP {c['row']}/{c['name']}: {e}")
                continue
            futs[ex.submit(_run_cell, str(store), c, cfg, sds, str(cell_dir(out, c)), args.folds)] = (c, sds)
        for f in as_completed(futs):
            c, sds = futs[f]
            try:
                log(f"{c['row']}/{c['name']} seeds {sds}: {f.result():.0f} s")
            except Exception as e:  # noqa: BLE001
                log(f"FAILED {c['row']}/{c['name']} seeds {sds}: {type(e).__name__}: {e}")


def extract(args, store: Path) -> None:
    cmd = [sys.executable, "-m", "parrot_ser.cli.main", "extract", args.root, "--corpus", "emodb", "--out", str(store),
           "--frames", "--layers", "all", "--checkpoint", f"whisper-base={args.whisper}",
           "--option", "whisper-base:window=clip", "--threads", "1", "--chunk-size", "64", "--quiet"]
    for e in ENCODERS:
        cmd += ["-e", e]
    log(" ".join(cmd[2:]))
    if subprocess.call(cmd) != 0:
        raise SystemExit("feature extraction failed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default="../shared/data/emodb")
    ap.add_argument("--whisper", default="../shared/models/whisper-base")
    ap.add_argument("--out", default="runs/emodb-hetero")
    ap.add_argument("--seeds", default="0", help="seeds, run in this order (every cell's first seed first)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2, help="cells trained at once (one process each, 1 thread)")
    ap.add_argument("--stages", default="single,pair,frames,cnn-layers")
    ap.add_argument("--conv-channels", default="16,32",
                    help="conv stack channels of cnn and every fusion model (the paper: 64,128, 16x the compute)")
    ap.add_argument("--report-only", action="store_true", help="train nothing; write the table from finished runs")
    args = ap.parse_args()
    out = Path(args.out)
    store = out / "features"
    seeds = [int(s) for s in args.seeds.split(",")]
    if not args.report_only:
        extract(args, store)
        train(args, out, store, seeds)
    sys.path.insert(0, str(Path(__file__).parent))
    from hetero_report import write_report

    write_report(out, args, seeds)


if __name__ == "__main__":
    main()
