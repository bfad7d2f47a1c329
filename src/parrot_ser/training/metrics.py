"""Classification metrics (scikit-learn) and their aggregation over folds and seeds."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

METRICS = ("accuracy", "ua", "macro_f1", "weighted_f1")


def compute_metrics(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> dict:
    """accuracy (= WA), ua (= balanced accuracy, mean per-class recall), macro_f1, weighted_f1 in %,
    the confusion matrix (rows true, columns predicted) and per-class F1 (%)."""
    labels = list(range(n_classes))
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    present = sorted(set(y_true.tolist()))
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected on small folds
        warnings.simplefilter("ignore")
        ua = balanced_accuracy_score(y_true, y_pred) if len(y_true) else 0.0
    return {
        "accuracy": 100.0 * float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "ua": 100.0 * float(ua),
        # macro over the classes present in this test fold (a class absent from the fold would add
        # an F1 of 0 that says nothing about the model)
        "macro_f1": 100.0 * float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "weighted_f1": 100.0 * float(f1_score(y_true, y_pred, labels=present, average="weighted",
                                              zero_division=0)),
        "per_class_f1": [100.0 * float(v) for v in f1_score(y_true, y_pred, labels=labels, average=None,
                                                            zero_division=0)],
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "n": int(len(y_true)),
    }


def mean_std(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


def summarise(entries: Sequence[dict]) -> dict:
    """Aggregate per-(seed, fold) metric dicts (each with keys seed, fold, metrics).

    - ``over_folds`` (the headline, as in the paper's "mean of 5 folds"): each fold's metric is first
      averaged over seeds, then mean +- sample std over the folds.
    - ``over_seeds``: each seed's mean over folds, then mean +- std over seeds (seed variability).
    - ``over_runs``: mean +- std over every seed x fold run."""
    seeds = sorted({e["seed"] for e in entries})
    folds = sorted({e["fold"] for e in entries})
    out: dict = {"over_folds": {}, "over_seeds": {}, "over_runs": {}, "n_seeds": len(seeds),
                 "n_folds": len(folds)}
    for m in METRICS:
        by_fold = [np.mean([e["metrics"][m] for e in entries if e["fold"] == f]) for f in folds]
        by_seed = [np.mean([e["metrics"][m] for e in entries if e["seed"] == s]) for s in seeds]
        out["over_folds"][m] = mean_std(by_fold)
        out["over_seeds"][m] = mean_std(by_seed)
        out["over_runs"][m] = mean_std([e["metrics"][m] for e in entries])
    return out
