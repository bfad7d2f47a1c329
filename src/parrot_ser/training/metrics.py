"""Classification metrics (scikit-learn), dimensional metrics (CCC, Pearson r, MAE) and their
aggregation over folds and seeds."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
)

METRICS = ("accuracy", "ua", "macro_f1", "weighted_f1")
REGRESSION_METRICS = ("ccc", "pearson", "mae")  # per dimension, and their mean over dimensions


def ccc(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Lin's concordance correlation coefficient, 2 cov / (var_t + var_p + (mean_t - mean_p)^2), with
    population (ddof=0) moments as in the MSP-Podcast challenge. Written out because scikit-learn and
    scipy have none. 0 when both sides are constant (no agreement to measure)."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.size == 0:
        return float("nan")
    mt, mp = t.mean(), p.mean()
    cov = ((t - mt) * (p - mp)).mean()
    denom = t.var() + p.var() + (mt - mp) ** 2
    return float(2.0 * cov / denom) if denom > 0 else 0.0


def pearson(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Pearson r; 0 when either side is constant (numpy would give NaN with a warning)."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.size < 2 or t.std() == 0 or p.std() == 0:
        return 0.0
    return float(np.corrcoef(t, p)[0, 1])


def compute_regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, dims: Sequence[str]) -> dict:
    """CCC, Pearson r and MAE per dimension (``per_dim``: name -> metrics) and their means (``ccc``,
    ``pearson``, ``mae``: the headline is the mean CCC). Arrays are (N, n_dims), in the data's scale."""
    t = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), len(dims))
    p = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), len(dims))
    per = {d: {"ccc": ccc(t[:, i], p[:, i]), "pearson": pearson(t[:, i], p[:, i]),
               "mae": float(mean_absolute_error(t[:, i], p[:, i])) if len(t) else float("nan")}
           for i, d in enumerate(dims)}
    out: dict = {m: float(np.mean([per[d][m] for d in dims])) for m in REGRESSION_METRICS}
    out["per_dim"] = per
    out["n"] = int(len(t))
    return out


def compute_metrics(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> dict:
    """accuracy (= WA), ua (= balanced accuracy, mean per-class recall), macro_f1, weighted_f1 in %,
    the confusion matrix (rows true, columns predicted) and per-class F1 (%)."""
    labels = list(range(n_classes))
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if not len(y_true):  # e.g. a multitask validation side whose rows all lack a label: nothing to score
        return {"accuracy": 0.0, "ua": 0.0, "macro_f1": 0.0, "weighted_f1": 0.0, "per_class_f1": [0.0] * n_classes,
                "confusion": np.zeros((n_classes, n_classes), dtype=int).tolist(), "n": 0}
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


def summarise(entries: Sequence[dict], metrics: Sequence[str] = METRICS) -> dict:
    """Aggregate per-(seed, fold) metric dicts (each with keys seed, fold, metrics).

    - ``over_folds`` (the headline, as in the paper's "mean of 5 folds"): each fold's metric is first
      averaged over seeds, then mean +- sample std over the folds.
    - ``over_seeds``: each seed's mean over folds, then mean +- std over seeds (seed variability).
    - ``over_runs``: mean +- std over every seed x fold run."""
    seeds = sorted({e["seed"] for e in entries})
    folds = sorted({e["fold"] for e in entries})
    out: dict = {"over_folds": {}, "over_seeds": {}, "over_runs": {}, "n_seeds": len(seeds),
                 "n_folds": len(folds)}
    for m in metrics:
        by_fold = [np.mean([e["metrics"][m] for e in entries if e["fold"] == f]) for f in folds]
        by_seed = [np.mean([e["metrics"][m] for e in entries if e["seed"] == s]) for s in seeds]
        out["over_folds"][m] = mean_std(by_fold)
        out["over_seeds"][m] = mean_std(by_seed)
        out["over_runs"][m] = mean_std([e["metrics"][m] for e in entries])
    return out
