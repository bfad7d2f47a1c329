"""What a run predicts: a Task says the output size, the loss, the metrics, the early-stopping score and
how outputs become predictions. Every model works with every task: a model's last layer simply has
``task.n_outputs`` units (the class logits first, then one unit per dimension), so multitask is a
shared trunk with two heads on one output layer.

- ``classification``: cross-entropy; accuracy (WA), UA, macro-F1; stops on validation macro-F1.
- ``regression``: one output per dimension (arousal, valence, ...); loss 1 - CCC per dimension (the
  MSP-Podcast challenge's convention; ``regression_loss: mse`` as an option) averaged over dimensions;
  CCC (headline), Pearson r, MAE; stops on the validation mean CCC.
- ``multitask``: both heads, loss ``(1 - w) * CE + w * regression loss`` with ``w = multitask_weight``;
  rows without a label (IEMOCAP's xxx, MSP-Podcast's X) train the dimensions only; stops on the mean
  of macro-F1 (as a fraction) and mean CCC unless ``early_stop_metric`` says otherwise.

Targets are z-scored with the mean/std of the training side of each fold only (``TargetScaler``); the
trained model carries them as buffers and answers in the data's own scale (models/standardise.py).
The loss is computed on the scaled values, so dimensions on different scales weigh the same."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from parrot_ser.errors import ConfigError
from parrot_ser.training.metrics import (
    METRICS,
    REGRESSION_METRICS,
    compute_metrics,
    compute_regression_metrics,
)

TASK_KINDS = ("classification", "regression", "multitask")
REGRESSION_LOSSES = ("ccc", "mse")
UNLABELLED = -1  # label index of a row without a class (multitask: dimensions only)


@dataclass
class TargetScaler:
    """Per-dimension mean/std of the training side (std 1 for a constant dimension)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, targets: np.ndarray) -> TargetScaler:
        t = np.asarray(targets, dtype=np.float64)
        s = t.std(axis=0)
        return cls(t.mean(axis=0).astype(np.float32), np.where(s > 1e-8, s, 1.0).astype(np.float32))


def ccc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of 1 - CCC on this batch (population moments, as metrics.ccc)."""
    mp, mt = pred.mean(0), target.mean(0)
    vp, vt = pred.var(0, unbiased=False), target.var(0, unbiased=False)
    cov = ((pred - mp) * (target - mt)).mean(0)
    ccc = 2 * cov / (vp + vt + (mp - mt) ** 2 + 1e-8)
    return (1.0 - ccc).mean()


@dataclass
class Task:
    kind: str
    classes: list[str]
    dims: list[str]
    regression_loss: str = "ccc"
    multitask_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ConfigError(f"task must be one of {', '.join(TASK_KINDS)} (got {self.kind!r})")
        if self.regression_loss not in REGRESSION_LOSSES:
            raise ConfigError(f"regression_loss must be one of {', '.join(REGRESSION_LOSSES)} "
                              f"(got {self.regression_loss!r})")
        if self.has_classes and len(self.classes) < 2:
            raise ConfigError(f"a {self.kind} run needs at least 2 classes; the data has {self.classes or 'none'}")
        if self.has_dims and not self.dims:
            raise ConfigError(f"a {self.kind} run needs numeric targets; the feature store has none (a CSV corpus "
                              f"with --corpus-option targets=COLUMNS, iemocap dimensions=true, msp-podcast)")
        if not 0.0 <= self.multitask_weight <= 1.0:
            raise ConfigError(f"multitask_weight must be in [0, 1] (got {self.multitask_weight})")

    @property
    def has_classes(self) -> bool:
        return self.kind != "regression"

    @property
    def has_dims(self) -> bool:
        return self.kind != "classification"

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.has_classes else 0

    @property
    def n_outputs(self) -> int:
        return self.n_classes + (len(self.dims) if self.has_dims else 0)

    def default_monitor(self) -> str:
        return default_monitor(self.kind)

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(class logits or None, dimensions or None) of a model output (N, n_outputs)."""
        k = self.n_classes
        return (out[:, :k] if k else None), (out[:, k:] if self.has_dims else None)

    def loss(self, out: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None,
             scaler: TargetScaler | None) -> torch.Tensor:
        """The training loss of a batch; ``out`` in the data's scale (the model unscales), ``targets``
        in the data's scale; the regression part is computed on the training-side z-scores."""
        logits, dims = self.split(out.float())
        parts = []
        if logits is not None:
            known = labels != UNLABELLED
            ce = F.cross_entropy(logits[known], labels[known]) if bool(known.any()) else logits.sum() * 0.0
            parts.append(ce)
        if dims is not None:
            assert targets is not None and scaler is not None
            m = torch.as_tensor(scaler.mean, device=out.device)
            s = torch.as_tensor(scaler.std, device=out.device)
            z, zt = (dims - m) / s, (targets.float() - m) / s
            parts.append(ccc_loss(z, zt) if self.regression_loss == "ccc" else F.mse_loss(z, zt))
        if len(parts) == 2:
            return (1.0 - self.multitask_weight) * parts[0] + self.multitask_weight * parts[1]
        return parts[0]

    def evaluate(self, out: np.ndarray, labels: np.ndarray, targets: np.ndarray | None) -> dict:
        """Metrics of outputs (N, n_outputs) against the truth: the classification metrics on the
        labelled rows, ``regression`` (CCC / Pearson / MAE per dimension and mean) on every row."""
        m: dict = {}
        k = self.n_classes
        if k:
            known = labels != UNLABELLED
            m.update(compute_metrics(labels[known], out[known, :k].argmax(axis=1), k))
        if self.has_dims:
            r = compute_regression_metrics(targets, out[:, k:], self.dims)
            m["regression"] = r
            # flat keys (ccc, ccc_arousal, ...) so fold summaries and paired tests treat them as any metric
            m.update({name: r[name] for name in REGRESSION_METRICS})
            m.update({f"{name}_{d}": r["per_dim"][d][name] for d in self.dims for name in REGRESSION_METRICS})
            m.setdefault("n", int(len(out)))
        return m

    def metric_names(self) -> list[str]:
        """The per-run metrics summarised over folds (mean +- std), headline first."""
        names = list(METRICS) if self.has_classes else []
        if self.has_dims:
            names += [*REGRESSION_METRICS, *[f"{n}_{d}" for d in self.dims for n in REGRESSION_METRICS]]
        return names

    def monitor_score(self, metric: str, m: dict, val_loss: float) -> tuple[float, float]:
        """Early-stopping key (higher is better; ties broken by the lower loss) for ``metric``."""
        if metric == "loss":  # ties broken by the task's headline (classification: as before tasks existed)
            return (-val_loss, m["macro_f1"] if "macro_f1" in m else m["ccc"])
        if metric == "macro_f1":
            return (m["macro_f1"], -val_loss)
        if metric == "ccc":
            return (m["ccc"], -val_loss)
        if metric == "f1_ccc":
            return ((m["macro_f1"] / 100.0 + m["ccc"]) / 2.0, -val_loss)
        raise ConfigError(f"early_stop_metric {metric!r} does not apply to a {self.kind} run")

    def check_monitor(self, metric: str) -> str:
        """The metric to stop on (``auto`` = the task's default), refused when the task lacks it."""
        metric = self.default_monitor() if metric == "auto" else metric
        needs = {"macro_f1": self.has_classes, "ccc": self.has_dims, "f1_ccc": self.has_classes and self.has_dims,
                 "loss": True}
        if not needs.get(metric, False):
            raise ConfigError(f"early_stop_metric {metric!r} does not apply to a {self.kind} run "
                              f"(use auto, loss{', macro_f1' if self.has_classes else ''}"
                              f"{', ccc' if self.has_dims else ''})")
        return metric

    def describe(self) -> dict:
        """The task as run.json / bundles record it."""
        return {"kind": self.kind, "labels": list(self.classes) if self.has_classes else [],
                "dims": list(self.dims) if self.has_dims else [], "regression_loss": self.regression_loss,
                "multitask_weight": self.multitask_weight, "n_outputs": self.n_outputs}


def default_monitor(kind: str) -> str:
    return {"classification": "macro_f1", "regression": "ccc", "multitask": "f1_ccc"}[kind]


def task_from_run(run: dict) -> Task:
    """The Task of a run.json (runs from before tasks existed: classification over their labels)."""
    t = run.get("task") or {}
    return Task(t.get("kind", "classification"), list(run.get("labels") or []), list(t.get("dims") or []),
                t.get("regression_loss", "ccc"), float(t.get("multitask_weight", 0.5)))


def check_targets(targets: np.ndarray | None, dims: Sequence[str]) -> None:
    if targets is not None and not np.isfinite(targets).all():
        raise ConfigError(f"non-finite target values in {', '.join(dims)}")


def task_of(data, config) -> Task:  # noqa: ANN001 - SERData, TrainConfig (no import cycle)
    """The Task of a run on ``data`` (its classes and target dimensions) with ``config``'s settings."""
    return Task(config.task, list(data.classes), list(data.dims), config.regression_loss,
                float(config.multitask_weight))
