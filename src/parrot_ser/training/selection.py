"""Nested selection: a "best" layer, ``ot_eps`` or any other knob chosen on the validation speakers
inside each training fold, never on the test folds.

Every candidate (one finished run folder per knob value, same folds and seeds) has, for each
(seed, fold), the validation score its early stopping monitored (``monitor`` at ``best_epoch``: the
held-out *training* speakers of that fold). For each (seed, fold) the candidate with the highest
validation score is chosen (ties: the first candidate given), and that candidate's TEST metrics of
the same (seed, fold) are reported. The test folds play no part in the choice, so the row is an
honest estimate of "pick the knob on validation, then test" - unlike picking the candidate whose
mean test accuracy is highest, which is optimistic.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from parrot_ser.errors import ConfigError
from parrot_ser.training.metrics import mean_std
from parrot_ser.training.rundir import entry_name, entry_path


def fold_record(run_dir: str | Path, seed: int, fold: int) -> dict:
    p = entry_path(run_dir, entry_name(seed, fold))
    if not p.is_file():
        raise ConfigError(f"{run_dir}: seed {seed} fold {fold} has not finished ({p.name} missing)")
    return json.loads(p.read_text(encoding="utf-8"))


def validation_score(record: dict) -> float:
    """The monitored validation metric at the epoch early stopping kept (higher is better; a loss
    monitor is negated)."""
    monitor = record.get("monitor") or "val_macro_f1"
    best = int(record.get("best_epoch") or 0)
    hist = [h for h in record.get("history", []) if int(h.get("epoch", -1)) == best and monitor in h]
    if not hist:
        raise ConfigError(f"seed {record.get('seed')} fold {record.get('fold')}: no {monitor} at best epoch {best}")
    v = float(hist[0][monitor])
    return -v if monitor.endswith("loss") else v


def select_nested(candidates: Mapping[str, str | Path], seeds: Sequence[int], n_folds: int) -> dict:
    """Per (seed, fold), the candidate with the best validation score, scored on that fold's test
    speakers. Returns ``headline`` (accuracy / macro-F1 mean ± std over folds, each fold averaged over
    seeds, as run_cv), ``runs`` (seed, fold, choice, val_score, metrics, run_dir) and ``choices``
    (how often each candidate was chosen)."""
    if not candidates:
        raise ConfigError("nested selection needs at least one candidate")
    runs = []
    for seed in seeds:
        for fold in range(n_folds):
            recs = {name: fold_record(d, seed, fold) for name, d in candidates.items()}
            scores = {name: validation_score(r) for name, r in recs.items()}
            choice = max(scores, key=lambda n: (scores[n], -list(candidates).index(n)))
            runs.append({"seed": seed, "fold": fold, "choice": choice, "val_score": scores[choice],
                         "metrics": recs[choice]["metrics"], "run_dir": str(candidates[choice])})
    head = {}
    for m in ("accuracy", "macro_f1"):
        per_fold = [float(np.mean([r["metrics"][m] for r in runs if r["fold"] == k])) for k in range(n_folds)]
        head[m] = mean_std(per_fold)
    return {"headline": head, "runs": runs, "choices": dict(Counter(r["choice"] for r in runs)),
            "rule": "per (seed, fold): highest validation score (held-out training speakers); test folds unused"}
