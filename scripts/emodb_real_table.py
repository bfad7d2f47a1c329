#!/usr/bin/env python
"""The real-feature results in docs/results.md, in one resumable command:

    python scripts/emodb_real_table.py [--root ../shared/data/emodb] [--whisper ../shared/models/whisper-base]
                                       [--out runs/emodb-real] [--seeds 0,1,2] [--epochs 30] [--patience 5]

What it runs (Emo-DB copy, speaker-independent 5-fold CV, every cell seeds x folds):
  1. features: logmel; whisper-base (REAL weights) with window=clip, all 7 hidden states, pooled;
     in a background process at the same time: whisper-base window=30s (the official padding);
  2. layers/: an fcn head per whisper layer, and the SUPERB-style learned weighted sum over all layers
     (fcn and cnn); "best" layer = chosen on the validation speakers of each training fold (nested:
     training/selection.py), the one chosen most often feeds steps 3-6; the table's nested row scores
     each fold's own choice on its test speakers (no choice ever looks at a test fold);
  3. features/pairs: logmel, ssam-tiny (UNTRAINED random init, seed 0) and whisper-base at the best
     layer, with frame features;
  4. grid/: singles (whisper-base best layer, logmel; cnn, fcn) and the pairs logmel+whisper-base and
     ssam-tiny+whisper-base with concat, hadamard, gated, xattn, ot, parrot, parrot-token and
     parrot-token on frame features ("parrot-token-frames"); significance against concat;
  5. window/: the cnn head on the 30 s-window features at the best layer, paired with the grid's
     clip-window cnn cell (same folds, seeds, settings);
  6. ot_eps/: parrot and parrot-token on logmel+whisper-base at other ot_eps values (--sweep-seeds),
     with the effective number of OT partners.
Everything lands in OUT/real_table.md (+ csv/json/png). Rerun the same command to resume: finished
(seed, fold) runs are kept. All numbers in docs/results.md come from OUT/real_table.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # small heads on a shared CPU: one thread is fastest
os.environ.setdefault("MKL_NUM_THREADS", "1")

SINGLE_MODELS = ("cnn", "fcn")
FUSION_MODELS = ("concat", "hadamard", "gated", "xattn", "ot", "parrot", "parrot-token")
FRAMES_CELL = "parrot-token-frames"  # parrot-token with token_source=frames (50 Hz whisper frames)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def extract_cmd(root: str, out: Path, encoders: list[str], *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "parrot_ser.cli.main", "extract", root, "--corpus", "emodb", "--out", str(out),
           "--threads", "1", "--quiet"]
    for e in encoders:
        cmd += ["-e", e]
    return cmd + list(extra)


CHILDREN: list[subprocess.Popen] = []


def _stop_children(*_: object) -> None:
    """A killed script takes its extraction processes with it (they would keep writing the stores)."""
    for c in CHILDREN:
        if c.poll() is None:
            c.terminate()
    raise SystemExit(1)


def run(cmd: list[str]) -> None:
    log(" ".join(cmd[2:]))
    p = subprocess.Popen(cmd)
    CHILDREN.append(p)
    if p.wait() != 0:
        raise SystemExit(f"failed (exit {p.returncode}): {' '.join(cmd[2:])}")


def fmt(h: dict) -> str:
    return f"{h['accuracy']['mean']:.2f} ± {h['accuracy']['std']:.2f} / {h['macro_f1']['mean']:.2f} ± " \
           f"{h['macro_f1']['std']:.2f}"


def seed_subset(res: dict, seeds: list[int]) -> dict:
    """accuracy / macro-F1 mean ± std over folds of one cell restricted to ``seeds`` (each fold
    averaged over those seeds), the same statistic run_cv reports."""
    import numpy as np

    from parrot_ser.training.metrics import mean_std

    out = {}
    for m in ("accuracy", "macro_f1"):
        per_fold: dict[int, list[float]] = {}
        for r in res["runs"]:
            if r["seed"] in seeds:
                per_fold.setdefault(r["fold"], []).append(r["metrics"][m])
        out[m] = mean_std([float(np.mean(v)) for _, v in sorted(per_fold.items())])
    return out


def partners(res: dict) -> str:
    t = res.get("transport") or {}
    ep, shape = t.get("eff_partners"), t.get("plan_shape")
    if not ep:
        return ""
    n = shape["mean"] if isinstance(shape, dict) else None
    cols = f" of {int(round(n))}" if isinstance(n, (int, float)) else ""
    return f"{ep['mean']:.2f} ± {ep['std']:.2f}{cols}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default="../shared/data/emodb")
    ap.add_argument("--whisper", default="../shared/models/whisper-base")
    ap.add_argument("--out", default="runs/emodb-real")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--sweep-eps", default="0.01,0.2", help="ot_eps values besides the default 0.05")
    ap.add_argument("--sweep-seeds", default="0")
    ap.add_argument("--untrained-pair-seeds", default=None,
                    help="seeds for the ssam-tiny (UNTRAINED) + whisper-base cells (default: --seeds)")
    ap.add_argument("--layer-model", default="fcn", choices=SINGLE_MODELS)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes for the grid cells (1 thread each)")
    ap.add_argument("--shards", type=int, default=3, help="processes for the 30 s window extraction")
    ap.add_argument("--shards-running", action="store_true",
                    help="the 30 s shard extractions were started by an earlier run and still run: wait for them")
    ap.add_argument("--pair-seeds", default=None, help="seeds for the fusion cells (default: --seeds)")
    ap.add_argument("--report-only", action="store_true",
                    help="train nothing: write real_table.md from the cells finished so far (others: 'not run')")
    ap.add_argument("--conv-channels", default="16,32",
                    help="channels of the conv stack of every conv model (cnn and all fusion models); the "
                         "paper's is 64,128, 16x the compute of the default, which a shared 2-core CPU cannot "
                         "afford for this table")
    args = ap.parse_args()
    import signal

    signal.signal(signal.SIGTERM, _stop_children)

    import numpy as np

    from parrot_ser.training.config import TrainConfig
    from parrot_ser.training.grid import Cell, _paired, write_tables
    from parrot_ser.training.run import run_cv, write_json_atomic

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    sweep_seeds = [int(s) for s in args.sweep_seeds.split(",")]
    proto = "speaker-kfold"
    timing: dict[str, float] = {}
    t_all = time.perf_counter()
    ckpt = f"whisper-base={args.whisper}"

    channels = [int(c) for c in args.conv_channels.split(",")]

    def cfg(model_name: str, **kw) -> TrainConfig:
        model_kw = dict(kw.pop("model", {}))
        if model_name != "fcn":  # fcn has no conv stack; its config (and run fingerprint) stays plain
            model_kw["conv_channels"] = channels
        return TrainConfig(epochs=args.epochs, patience=args.patience, num_threads=1, model=model_kw,
                           **kw).validate()

    def cv(store: Path, encs: tuple[str, ...], model: str, run_dir: Path, config: TrainConfig, sds=None):
        if args.report_only:  # read, never touch a run folder (run_cv would rewrite run.json)
            res = _load_finished(run_dir, sds or seeds, args.folds)
            if res is None:
                raise SystemExit(f"{run_dir}: not finished; run without --report-only first")
            return res
        t = time.perf_counter()
        res = run_cv(store, list(encs), model, config, sds or seeds, proto, run_dir, n_folds=args.folds)
        log(f"{run_dir.relative_to(out)}: {fmt(res['headline'])} ({time.perf_counter() - t:.0f} s)")
        return res

    # 1. features ------------------------------------------------------------------------------
    clip, s30, pairs = out / "features" / "clip", out / "features" / "30s", out / "features" / "pairs"
    t = time.perf_counter()
    if not args.report_only:
        run(extract_cmd(args.root, clip, ["logmel"]))
        run(extract_cmd(args.root, clip, ["whisper-base"], "--checkpoint", ckpt, "--layers", "all",
                        "--option", "whisper-base:window=clip"))
    timing["extract whisper-base window=clip + logmel (s)"] = time.perf_counter() - t
    # The 30 s window costs 15x the clip window: it runs in the background while the heads train, in
    # --shards processes over disjoint parts of the corpus (separate stores, merged afterwards).
    # Small chunks: a restarted script loses little.
    from parrot_ser.corpora import scan_corpus

    man = scan_corpus("emodb", args.root)
    bgs = []
    t_bg = time.perf_counter()
    for k in range(0 if args.report_only or args.shards_running else args.shards):
        part = type(man)(man.corpus, man.root, man.utterances[k::args.shards])
        csv_path = s30 / "shards" / f"shard{k}.csv"
        if not csv_path.is_file():
            part.to_csv(csv_path)
        cmd = [sys.executable, "-m", "parrot_ser.cli.main", "extract", "--manifest", str(csv_path),
               "--out", str(s30 / "shards" / f"store{k}"), "--threads", "1", "--quiet", "-e", "whisper-base",
               "--checkpoint", ckpt, "--layers", "all", "--option", "whisper-base:window=30s", "--chunk-size", "8"]
        log("background: " + " ".join(cmd[2:]))
        bgs.append(subprocess.Popen(cmd))
        CHILDREN.append(bgs[-1])

    # 2. per-layer curve + weighted sum --------------------------------------------------------
    t = time.perf_counter()
    n_layers = 7
    layer_res = {}
    for i in range(n_layers):
        layer_res[i] = cv(clip, ("whisper-base",), args.layer_model, out / "layers" / f"layer{i}",
                          cfg(args.layer_model, layer=i))
    wsum = {m: cv(clip, ("whisper-base",), m, out / "layers" / f"wsum-{m}", cfg(m, layer="weighted"))
            for m in ("fcn", "cnn")}
    # The layer used below is chosen on VALIDATION speakers (nested, training/selection.py): per (seed,
    # fold) the layer with the best validation score; the layer chosen most often feeds the pairs.
    from collections import Counter

    from parrot_ser.training.selection import select_nested

    nested = select_nested({i: out / "layers" / f"layer{i}" for i in range(n_layers)}, seeds, args.folds)
    best = Counter(r["choice"] for r in nested["runs"]).most_common(1)[0][0]
    timing["layer curve (s)"] = time.perf_counter() - t
    log(f"whisper-base layer chosen on validation speakers (most often over seeds x folds): {best}; "
        f"nested {args.layer_model}: {fmt(nested['headline'])}")
    _layer_plot(layer_res, wsum, best, args.layer_model, out / "layers.png")

    # 3-6. pair store, grid, 30 s window, ot_eps sweep: cells run in --jobs worker processes ------
    from concurrent.futures import ProcessPoolExecutor

    t = time.perf_counter()
    if not args.report_only:
        run(extract_cmd(args.root, pairs, ["logmel"], "--frames"))
        run(extract_cmd(args.root, pairs, ["whisper-base"], "--frames", "--checkpoint", ckpt, "--layers", str(best),
                        "--option", "whisper-base:window=clip"))
    grid = out / "grid"
    cells = [Cell(e, (e,), m, "single") for e in ("whisper-base", "logmel") for m in SINGLE_MODELS]
    for a, kind in (("logmel", "other"), ("ssam-tiny", "hetero")):
        cells += [Cell(f"{a}+whisper-base", (a, "whisper-base"), m, kind) for m in (*FUSION_MODELS, FRAMES_CELL)]
    u_seeds = [int(s) for s in args.untrained_pair_seeds.split(",")] if args.untrained_pair_seeds else seeds
    p_seeds = [int(s) for s in args.pair_seeds.split(",")] if args.pair_seeds else seeds
    frames_cfg = cfg("parrot-token", use_frames=True, model={"token_source": "frames"})

    def cell_job(c: Cell) -> tuple:
        use_frames = c.model == FRAMES_CELL
        cs = u_seeds if "ssam-tiny" in c.encoders else p_seeds if len(c.encoders) == 2 else seeds
        return (str(pairs), c.encoders, "parrot-token" if use_frames else c.model,
                frames_cfg if use_frames else cfg(c.model), cs, proto, str(grid / "cells" / c.row / c.model),
                args.folds)

    # spawn, not fork: a forked torch process can inherit a locked OpenMP pool
    import multiprocessing as mp

    pool = _Finished() if args.report_only else ProcessPoolExecutor(max_workers=args.jobs,
                                                                     mp_context=mp.get_context("spawn"))
    futures = {}
    # the pair with real information on both sides first, then the singles and the ot_eps sweep
    for c in [c for c in cells if "ssam-tiny" not in c.encoders]:
        futures[("grid", c.key)] = pool.submit(_run_cell, *cell_job(c))
    pair = ("logmel", "whisper-base")
    for eps in [float(e) for e in args.sweep_eps.split(",") if e]:
        for m in ("parrot", "parrot-token"):
            futures[("sweep", (m, eps))] = pool.submit(
                _run_cell, str(pairs), pair, m, cfg(m, model={"ot_eps": eps}), sweep_seeds, proto,
                str(out / "ot_eps" / f"{m}-eps{eps:g}"), args.folds)
    # meanwhile: the UNTRAINED Mamba encoder's features (read by no job submitted so far)
    if not args.report_only:
        run(extract_cmd(args.root, pairs, ["ssam-tiny"], "--frames", "--random-init", "--seed", "0"))
    timing["extract pair store (s)"] = time.perf_counter() - t
    for c in [c for c in cells if "ssam-tiny" in c.encoders]:
        futures[("grid", c.key)] = pool.submit(_run_cell, *cell_job(c))
    rcs = [b.wait() for b in bgs]
    while args.shards_running and not all((s30 / "shards" / f"store{k}" / "whisper-base" / "meta.json").is_file()
                                          for k in range(args.shards)):
        time.sleep(20)  # shard extractions started by an earlier run of this script
    timing[f"extract whisper-base window=30s, {args.shards} background processes (s)"] = time.perf_counter() - t_bg
    if any(rcs):
        raise SystemExit(f"the 30 s window extraction failed (exit codes {rcs})")
    shard_dirs = [s30 / "shards" / f"store{k}" for k in range(args.shards)]
    if all((d / "whisper-base" / "meta.json").is_file() for d in shard_dirs):
        _merge_shards(shard_dirs, man, s30)
    futures[("window", "30s")] = pool.submit(_run_cell, str(s30), ("whisper-base",), "cnn", cfg("cnn", layer=best),
                                             seeds, proto, str(out / "window" / "30s-cnn"), args.folds,
                                             **({"partial": True} if args.report_only else {}))
    futures[("window", "30s-fcn")] = pool.submit(_run_cell, str(s30), ("whisper-base",), "fcn",
                                                 cfg("fcn", layer=best), seeds, proto,
                                                 str(out / "window" / "30s-fcn"), args.folds)
    results, sweep, w30, w30f = {}, {}, None, None
    for (kind, k), f in futures.items():
        res, secs = f.result()
        if res is None:
            log(f"{kind} {k}: not finished")
            continue
        log(f"{kind} {k}: {fmt(res['headline'])} ({secs:.0f} s in a worker)")
        if kind == "grid":
            results[k] = res
        elif kind == "sweep":
            sweep[k] = res
        elif k == "30s":
            w30 = res
        else:
            w30f = res
    pool.shutdown()
    timing[f"grid + ot_eps sweep + 30 s cnn, {args.jobs} workers (s)"] = time.perf_counter() - t
    from parrot_ser.features import open_store

    store = open_store(pairs)
    metas = {e: dict(store.get(e).meta) for e in ("whisper-base", "logmel", "ssam-tiny") if e in store.encoders}
    kinds = {"whisper-base": "attention", "logmel": "handcrafted", "ssam-tiny": "mamba"}
    g = write_tables(grid, cells, results, kinds, metas, seeds)
    wclip = results["whisper-base/cnn"]
    speed = {w: _speed(p / "whisper-base") for w, p in (("clip", clip), ("30s", s30))
             if (p / "whisper-base" / "report.json").is_file()}
    key = lambda r: (r["seed"], r["fold"])  # noqa: E731
    win_tests = {}
    for head, c_res, w_res in (("cnn", wclip, w30), ("fcn", results.get("whisper-base/fcn"), w30f)):
        if w_res is not None and c_res is not None:
            a = {key(r): r["metrics"]["accuracy"] for r in c_res["runs"]}
            b = {key(r): r["metrics"]["accuracy"] for r in w_res["runs"]}
            ks = sorted(set(a) & set(b))
            win_tests[head] = _paired([a[k] for k in ks], [b[k] for k in ks])
    timing["total (s)"] = time.perf_counter() - t_all

    # report -------------------------------------------------------------------------------------
    md = ["# Real-feature table: Emo-DB copy, whisper-base (real weights)", "",
          f"Made by `python scripts/emodb_real_table.py --out {out}` "
          f"(seeds {args.seeds}, {args.folds} speaker folds, epochs {args.epochs}, patience {args.patience}, "
          f"conv stack channels {args.conv_channels} in cnn and every fusion model (the paper: 64,128); other "
          "settings paper defaults: Adam 1e-3, batch 32, dropout 0.3, embed 120, Dense 128).", "",
          f"## Whisper layers ({args.layer_model} head per hidden state; 0 = conv/positional embedding output)", "",
          "| layer | accuracy | macro-F1 |", "|---|---|---|"]
    rows_csv = ["layer,model,acc_mean,acc_std,f1_mean,f1_std"]
    for i, r in layer_res.items():
        h = r["headline"]
        md.append(f"| {i}{' (chosen on validation)' if i == best else ''} | {h['accuracy']['mean']:.2f} ± {h['accuracy']['std']:.2f} "
                  f"| {h['macro_f1']['mean']:.2f} ± {h['macro_f1']['std']:.2f} |")
        rows_csv.append(f"{i},{args.layer_model},{h['accuracy']['mean']:.4f},{h['accuracy']['std']:.4f},"
                        f"{h['macro_f1']['mean']:.4f},{h['macro_f1']['std']:.4f}")
    md.append(f"| chosen on validation speakers per fold ({args.layer_model}; choices "
              f"{dict(Counter(r['choice'] for r in nested['runs']))}) | {nested['headline']['accuracy']['mean']:.2f} ± "
              f"{nested['headline']['accuracy']['std']:.2f} | {nested['headline']['macro_f1']['mean']:.2f} ± "
              f"{nested['headline']['macro_f1']['std']:.2f} |")
    for m, r in wsum.items():
        h = r["headline"]
        md.append(f"| weighted sum, {m} | {h['accuracy']['mean']:.2f} ± {h['accuracy']['std']:.2f} "
                  f"| {h['macro_f1']['mean']:.2f} ± {h['macro_f1']['std']:.2f} |")
        rows_csv.append(f"wsum,{m},{h['accuracy']['mean']:.4f},{h['accuracy']['std']:.4f},"
                        f"{h['macro_f1']['mean']:.4f},{h['macro_f1']['std']:.4f}")
    (out / "layers.csv").write_text("\n".join(rows_csv) + "\n", encoding="utf-8")
    md += ["", "Plot: `layers.png`.", "", "## Main table (accuracy / macro-F1 in %, mean ± std over folds)", "",
           f"Seeds: single encoders {args.seeds}; logmel + whisper-base {','.join(map(str, p_seeds))}; "
           f"ssam-tiny (UNTRAINED) + whisper-base {','.join(map(str, u_seeds))}. The grid's std note below "
           "names the single encoders' seeds; each row's own seeds are these. "
           f"whisper-base = layer {best} (chosen on validation speakers, nested).", ""]
    md += (grid / "table.md").read_text(encoding="utf-8").splitlines()[2:]
    wrow = [f"| whisper-base weighted sum (all 7 layers) | single | {fmt(wsum['cnn']['headline'])} | "
            f"{fmt(wsum['fcn']['headline'])} |" + " |" * (len(FUSION_MODELS) + 1)]
    md += wrow
    md += ["", "## Fusion vs concat", ""]
    md += (grid / "significance.md").read_text(encoding="utf-8").splitlines()[2:]
    md += ["", "## OT plans on real features (effective partners per row of the first test batch, "
           "mean ± std over runs)", "", "| pair | model | ot_eps | seeds | accuracy / macro-F1 | effective partners |",
           "|---|---|---|---|---|---|"]
    for row in ("logmel+whisper-base", "ssam-tiny+whisper-base"):
        row_seeds = ",".join(map(str, u_seeds if "ssam-tiny" in row else p_seeds))
        for m in ("ot", "parrot", "parrot-token", FRAMES_CELL):
            r = results.get(f"{row}/{m}")
            if r is None:
                md.append(f"| {row} | {m} | 0.05 | | not run (time budget) | |")
                continue
            md.append(f"| {row} | {m} | 0.05 | {row_seeds} | {fmt(r['headline'])} | {partners(r)} |")
    for m in ("parrot", "parrot-token"):
        r0 = results.get(f"logmel+whisper-base/{m}")
        if r0 is not None:
            sub = seed_subset(r0, sweep_seeds)
            md.append(f"| logmel+whisper-base | {m} | 0.05 | {args.sweep_seeds} | {fmt(sub)} | (as above) |")
        for (mm, eps), r in sorted(sweep.items()):
            if mm == m:
                md.append(f"| logmel+whisper-base | {m} | {eps:g} | {args.sweep_seeds} | {fmt(r['headline'])} | "
                          f"{partners(r)} |")
    md += ["", f"## Whisper window: clip vs 30 s (layer {best}, same folds and seeds for both windows)", "",
           "| window | utt/s | real-time factor | padding waste | head | seeds | accuracy / macro-F1 |",
           "|---|---|---|---|---|---|---|"]
    for w, head, r in (("clip", "cnn", wclip), ("30s", "cnn", w30), ("clip", "fcn", results.get("whisper-base/fcn")),
                       ("30s", "fcn", w30f)):
        sp = speed.get(w)
        sp_txt = (f"{sp['utt_per_s']:.2f} | {sp['real_time_factor']:.4f} | {sp['padding_waste']:.1%}" if sp
                  else "not finished | | ")
        sd = ",".join(map(str, r.get("seeds_done", seeds))) if r else ""
        md.append(f"| {w} | {sp_txt} | {head} | {sd} | {fmt(r['headline']) if r else 'not run (time budget)'} |")
    tests = [f"{h}: 30s - clip accuracy {t['mean_diff']:+.2f} points over {t['n_pairs']} (seed, fold) pairs, "
             f"Wilcoxon p = {t['wilcoxon_p']:.3g}, t-test p = {t['ttest_p']:.3g}" for h, t in win_tests.items()]
    md += ["", ("; ".join(tests) + ". ") if tests else "No paired test: no 30 s cell finished. ",
           "Speeds are from the extraction reports: the 30 s row is per process (utterances / summed encode "
           "seconds of the shard processes), 1 thread each, on a CPU shared with other jobs: compare the "
           "two rows, not absolute numbers; `python bench/run.py whisper` measures them interleaved.", "",
           "## Wall time of each step (s, 1 thread on a shared 2-core CPU)", "", "| step | s |", "|---|---|"]
    md += ([f"| {k} | {v:.0f} |" for k, v in timing.items()] if not args.report_only else
           ["| (this report was written with --report-only: no timings) | |"])
    (out / "real_table.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    write_json_atomic(out / "real_table.json", {
        "best_layer": best, "layer_model": args.layer_model, "seeds": seeds, "sweep_seeds": sweep_seeds,
        "epochs": args.epochs, "patience": args.patience, "timing_s": timing, "window_speed": speed,
        "pair_seeds": p_seeds, "untrained_pair_seeds": u_seeds, "conv_channels": channels,
        "window_tests_30s_minus_clip": win_tests, "significance": g["significance"],
        "layers": {str(i): r["headline"] for i, r in layer_res.items()},
        "weighted_sum": {m: r["headline"] for m, r in wsum.items()},
        "ot_eps": {f"{m}@{eps:g}": {"headline": r["headline"], "transport": r.get("transport")}
                   for (m, eps), r in sweep.items()},
        "numpy": np.__version__})
    log(f"done: {out / 'real_table.md'}")


def _run_cell(store: str, encs: tuple, model: str, config, seeds: list, proto: str, run_dir: str,
              folds: int, partial: bool = False) -> tuple[dict, float]:
    """One cell in a worker process (one torch thread, like the parent)."""
    import torch

    from parrot_ser.training.run import run_cv

    torch.set_num_threads(1)
    t = time.perf_counter()
    res = run_cv(store, list(encs), model, config, seeds, proto, run_dir, n_folds=folds)
    return res, time.perf_counter() - t


def _load_finished(run_dir: Path, seeds: list, folds: int, partial: bool = False) -> dict | None:
    """results.json of a finished cell (all seeds x folds), else None. ``partial``: from the per-run
    entries of the seeds whose folds are all finished (headline and runs only; "seeds_done" says which)."""
    import numpy as np

    from parrot_ser.training.metrics import mean_std

    p = run_dir / "results.json"
    want = {(s, k) for s in seeds for k in range(folds)}
    if p.is_file():
        res = json.loads(p.read_text(encoding="utf-8"))
        if want <= {(r["seed"], r["fold"]) for r in res["runs"]}:
            res["seeds_done"] = sorted({r["seed"] for r in res["runs"]})
            return res
    if not partial:
        return None
    entries = [json.loads(f.read_text(encoding="utf-8")) for f in sorted((run_dir / "folds").glob("*.json"))]
    done = [s for s in seeds if all(any(e["seed"] == s and e["fold"] == k for e in entries) for k in range(folds))]
    if not done:
        return None
    runs = [e for e in entries if e["seed"] in done]
    head = {}
    for m in ("accuracy", "macro_f1"):
        per_fold = [float(np.mean([e["metrics"][m] for e in runs if e["fold"] == k])) for k in range(folds)]
        head[m] = mean_std(per_fold)
    return {"headline": head, "runs": [{"seed": e["seed"], "fold": e["fold"], "metrics": e["metrics"]} for e in runs],
            "seeds_done": done, "partial": True}


class _Finished:
    """--report-only: a stand-in for the worker pool whose 'jobs' only read finished cells."""

    class _Done:
        def __init__(self, value):
            self.value = value

        def result(self):
            return self.value

    def submit(self, fn, store, encs, model, config, seeds, proto, run_dir, folds, partial=False):
        return self._Done((_load_finished(Path(run_dir), seeds, folds, partial), 0.0))

    def shutdown(self):
        pass


def _merge_shards(shards: list[Path], man, dst: Path) -> None:
    """One store from shard stores of the same encoder identity (rows in the manifest's order).
    The report's speed is per process: utterances / summed encode seconds, RTF = encode s / audio s."""
    import numpy as np

    from parrot_ser.features import open_store

    enc_dir = dst / "whisper-base"
    if (enc_dir / "meta.json").is_file():
        return
    fss = [open_store(p).get("whisper-base") for p in shards]
    idents = {json.dumps(f.meta["store_identity"], sort_keys=True) for f in fss}
    if len(idents) != 1:
        raise SystemExit("30 s shards were made with different encoder identities")
    rows = {u: (i, r) for i, f in enumerate(fss) for r, u in enumerate(f.utt_ids)}
    ids = [u.utt_id for u in man.utterances if u.utt_id in rows]
    pooled = np.stack([np.asarray(fss[rows[u][0]].pooled_all()[rows[u][1]]) for u in ids])
    enc_dir.mkdir(parents=True, exist_ok=True)
    man.to_csv(dst / "manifest.csv")
    np.save(enc_dir / "pooled.npy", pooled)
    (enc_dir / "utt_ids.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    runs = [json.loads((p / "whisper-base" / "report.json").read_text(encoding="utf-8"))["last_run"] for p in shards]
    enc_s = sum(r["encode_s"] for r in runs)
    audio_s = sum(r["audio_s"] for r in runs)
    n = sum(r["n_computed"] for r in runs)
    pad = 1 - sum(r["model_real_samples"] for r in runs) / sum(r["model_padded_samples"] for r in runs)
    report = {"merged_from": [str(p) for p in shards], "n_ok": len(ids),
              "last_run": {"n_computed": n, "encode_s": enc_s, "audio_s": audio_s, "utt_per_s": n / enc_s,
                           "real_time_factor": enc_s / audio_s, "model_padding_waste": pad,
                           "note": "per process: summed over the shard processes' encode seconds"}}
    (enc_dir / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    meta = dict(fss[0].meta)
    meta.update(n=len(ids), pooled_shape=list(pooled.shape), merged_from=[str(p) for p in shards])
    (enc_dir / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")  # last: marks complete


def _speed(enc_dir: Path) -> dict:
    rep = json.loads((enc_dir / "report.json").read_text(encoding="utf-8"))
    last = rep.get("last_run") or {}
    # model_padding_waste: the share of what the model computed that is padding (the 30 s window)
    return {"utt_per_s": float(last["utt_per_s"]), "real_time_factor": float(last["real_time_factor"]),
            "padding_waste": float(last.get("model_padding_waste") or 0.0)}


def _layer_plot(layer_res: dict, wsum: dict, best: int, model: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    from parrot_ser.training import plots  # noqa: F401  (selects the Agg backend)

    xs = sorted(layer_res)
    acc = [layer_res[i]["headline"]["accuracy"] for i in xs]
    f1 = [layer_res[i]["headline"]["macro_f1"] for i in xs]
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    ax.errorbar(xs, [a["mean"] for a in acc], yerr=[a["std"] for a in acc], marker="o", capsize=3,
                label=f"accuracy ({model})")
    ax.errorbar(xs, [f["mean"] for f in f1], yerr=[f["std"] for f in f1], marker="s", capsize=3,
                label=f"macro-F1 ({model})")
    for m, style in zip(wsum, ("--", ":")):
        ax.axhline(wsum[m]["headline"]["accuracy"]["mean"], ls=style, color="gray",
                   label=f"weighted sum, {m} (accuracy)")
    ax.set_xticks(xs, [f"{i}*" if i == best else str(i) for i in xs])
    ax.set_xlabel("whisper-base hidden state (0 = embedding output; * = chosen on validation speakers)")
    ax.set_ylabel("% (mean ± std over folds)")
    ax.set_title("whisper-base per layer, Emo-DB copy, speaker-independent 5-fold", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
