"""A dimensional grid cell, batched (--batched: the folds of a seed stacked, torch.func.vmap) against
one model at a time (--no-batched), in the same process: ``run_cv`` of fcn on the Emo-DB logmel
features (all 535 clips, pooled 320 dims; extracted once into bench/.cache/emodb-logmel) with
arousal / valence targets DERIVED from the acted emotion (a benchmark input, NOT a real result),
5 speaker folds x 2 seeds, 10 epochs (4 in quick mode) with --patience 0, dropout 0 (so both paths
compute the same numbers; the bench logs the largest per-fold CCC difference). Regression (CCC
loss) and multitask (mse), each timed interleaved, best of 2: the whole cell, and its training alone
(the runs' ``timings.fit_s`` summed; a batched unit's fit time is split evenly over its runs). fcn is the head ``--batched auto`` stacks on CPU
(execute.BATCHED_CPU_MAX_PARAMS). The whole cell is timed: data, folds, training, evaluation and
writing RUN_DIR (results, plots)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from common import log, record

ROOT = Path(__file__).resolve().parents[1]
EMODB = ROOT.parent / "shared" / "data" / "emodb"
# arousal / valence on a 1-5 scale per acted emotion (as tests/test_tasks_emodb.py), plus noise
AROUSAL = {"angry": 4.5, "happy": 4.0, "fear": 4.0, "neutral": 2.5, "boredom": 1.5, "sad": 1.5, "disgust": 3.0}
VALENCE = {"angry": 1.5, "happy": 4.5, "fear": 1.5, "neutral": 3.0, "boredom": 2.5, "sad": 1.5, "disgust": 1.5}


def _data():
    from parrot_ser.corpora import scan_corpus
    from parrot_ser.encoders import build_encoder
    from parrot_ser.features import extract_features
    from parrot_ser.training.data import SERData, load_features
    from parrot_ser.training.spec import RunSpec

    store = ROOT / "bench" / ".cache" / "emodb-logmel"
    if not (store / "logmel" / "meta.json").is_file():
        log(f"extracting logmel features of {EMODB} into {store} (once)")
        extract_features(scan_corpus("emodb", EMODB), build_encoder("logmel"), store, progress=False)
    d, rows, metas = load_features(store, RunSpec.build("fcn", encoders=["logmel"]))
    names = [d.classes[i] for i in d.labels]
    noise = np.random.default_rng(0).normal(scale=0.3, size=(len(d), 2))
    t = np.asarray([[AROUSAL[n], VALENCE[n]] for n in names]) + noise
    sd = SERData(d.pooled, d.labels, d.utt_ids, d.classes, None, d.speakers, t.astype(np.float32),
                 ["arousal", "valence"])
    return sd, rows, metas


def _cell(data, task: str, batched: bool, epochs: int, out: Path) -> tuple[float, dict]:
    from parrot_ser.training.config import TrainConfig
    from parrot_ser.training.run import run_cv

    cfg = TrainConfig(task=task, epochs=epochs, patience=0, dropout=0.0, num_threads=torch.get_num_threads(),
                      regression_loss="ccc" if task == "regression" else "mse")
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    res = run_cv(None, ["logmel"], "fcn", cfg, [0, 1], "speaker-kfold", out, data=data, batched=batched, workers=1)
    took = time.perf_counter() - t0
    assert {r["timings"]["training"] for r in res["runs"]} == {"batched" if batched else "single"}
    return took, res


def run(quick: bool = False) -> Iterable[dict]:
    data = _data()
    epochs = 4 if quick else 10
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        for task in ("regression", "multitask"):
            best = {True: float("inf"), False: float("inf")}
            fit = {True: float("inf"), False: float("inf")}  # training only: the runs' timings.fit_s summed
            res = {}
            for _ in range(2):
                for batched in (True, False):
                    took, res[batched] = _cell(data, task, batched, epochs, Path(tmp) / f"{task}-{batched}")
                    best[batched] = min(best[batched], took)
                    fit[batched] = min(fit[batched], sum(r["timings"]["fit_s"] for r in res[batched]["runs"]))
            diff = max(abs(a["metrics"]["ccc"] - b["metrics"]["ccc"]) for a, b in zip(res[True]["runs"],
                                                                                     res[False]["runs"]))
            head = json.dumps({k: round(v["mean"], 4) for k, v in res[True]["headline"].items()
                               if k in ("ccc", "macro_f1")})
            log(f"fcn {task} cell (5 folds x 2 seeds, {epochs} epochs, torch threads {threads}): batched "
                f"{best[True]:.2f} s, one at a time {best[False]:.2f} s, ratio {best[False] / best[True]:.2f} "
                f"(training only {fit[True]:.2f} s vs {fit[False]:.2f} s, ratio {fit[False] / fit[True]:.2f}); "
                f"headline {head}, largest per-fold CCC difference {diff:.1e}")
            what = f"fcn {task} cell, Emo-DB logmel, 5 folds x 2 seeds x {epochs} epochs, {threads} thread(s)"
            yield record(f"{what}: --batched", best[True], "s", baseline="--no-batched (one model at a time)",
                         baseline_value=best[False])
            yield record(f"{what}, training only (timings.fit_s summed): --batched", fit[True], "s",
                         baseline="--no-batched (one model at a time)", baseline_value=fit[False])
