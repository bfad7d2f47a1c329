"""What a model learns, as one object the training loop plugs in (``loop.fit``): how many outputs the model has,
the loss, the validation entries and the early-stopping score, and how raw outputs become
predictions and test metrics. A task is a ``Task`` subclass registered with ``@register_task``;
``get_task(name, options, data)`` makes one for a run's data (its classes and target dimensions);
a run's is ``get_task(spec.task, spec.task_options, data)``.

Contract (``data`` is one model's ``SERData``):

- ``n_outputs(data)``: width of the model's output (the class logits first, then one unit per
  dimension: every model takes every task);
- ``head(net, standardiser, train_data)``: the trainable model around the network (dimensional tasks
  fit the training side's target scaling here and the model carries it, answering in the data's scale).
  What ``head`` fits is state of ONE model: ``loss`` and ``validate`` use the state of the last
  ``head`` call, and the stacked variant keeps a shallow copy of the task per model, taken right
  after that model's ``head`` (so ``head`` must assign new objects, not change shared ones in place);
- ``targets(data)``: a tensor of what the loss compares outputs with, row for row;
- ``loss(outputs, targets)``: a scalar tensor for one batch (outputs in float32, autograd on);
- ``stacked_loss(outputs, targets, models)``: (G,) losses of G stacked models' batches, (G, B, ...)
  in, ``models`` = each model's own task copy (the batched vmap variant of the loop). Each entry must
  equal ``models[g].loss(outputs[g], targets[g])`` up to float rounding; the default computes exactly
  that, model by model, so any task trains batched; the built-in tasks compute it in one go;
- ``validate(outputs, data)``: the epoch record's validation entries (``val_*`` keys, floats);
- ``early_stop_key(record, monitor)``: a tuple, larger = better, from those entries;
- ``predict(outputs)``: numpy outputs -> what is stored and served (probabilities, dimensions);
- ``test_metrics(predictions, data)``: the per-fold metrics of results.json.

Tasks:

- ``classification``: cross-entropy; accuracy (WA), UA, macro-F1; stops on validation macro-F1.
- ``regression``: one output per dimension (arousal, valence, ...); loss 1 - CCC per dimension (the
  MSP-Podcast challenge's convention; ``regression_loss: mse`` as an option) averaged over dimensions;
  CCC (headline), Pearson r, MAE; stops on the validation mean CCC.
- ``multitask``: both, loss ``(1 - w) * CE + w * regression loss`` with ``w = multitask_weight``;
  rows without a label (IEMOCAP's xxx, MSP-Podcast's X) train the dimensions only; stops on the mean
  of macro-F1 (as a fraction) and mean CCC (``f1_ccc``) unless ``early_stop_metric`` says otherwise.

Targets are z-scored with the mean/std of the training side of each fold only (``TargetScaler``);
the loss is computed on those z-scores, so dimensions on different scales weigh the same."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from parrot_ser.errors import ConfigError
from parrot_ser.models import StandardisedModel
from parrot_ser.training.metrics import (
    METRICS,
    REGRESSION_METRICS,
    compute_metrics,
    compute_regression_metrics,
)

REGRESSION_LOSSES = ("ccc", "mse")
UNLABELLED = -1  # label index of a row without a class (multitask: dimensions only)
TASKS: dict[str, type[Task]] = {}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    def deco(cls: type[Task]) -> type[Task]:
        cls.name = name
        TASKS[name] = cls
        return cls
    return deco


def get_task(name: str | Task | None = None, options: Mapping[str, Any] | None = None, data: Any = None) -> Task:
    """A task by name (None = classification), or the task itself; ``options`` its settings (a run
    spec's ``task_options``: regression_loss, multitask_weight), ``data`` its classes and dimensions
    (checked)."""
    if isinstance(name, Task):
        return name.bind(data) if data is not None else name
    key = name or "classification"
    if key not in TASKS:
        raise ConfigError(f"unknown task {key!r}; known: {', '.join(TASKS)}")
    task = TASKS[key](options)
    if data is not None:
        task.bind(data)
    return task


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


def ccc_loss(pred: torch.Tensor, target: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Mean over dimensions (the last axis) of 1 - CCC on this batch (population moments, as
    metrics.ccc). ``dim`` is the batch axis: (B, D) -> a scalar; stacked models' (G, B, D) with
    ``dim=1`` -> (G,), one loss per model over its own rows."""
    mp, mt = pred.mean(dim, keepdim=True), target.mean(dim, keepdim=True)
    vp, vt = pred.var(dim, unbiased=False), target.var(dim, unbiased=False)
    cov = ((pred - mp) * (target - mt)).mean(dim)
    ccc = 2 * cov / (vp + vt + (mp.squeeze(dim) - mt.squeeze(dim)) ** 2 + 1e-8)
    return (1.0 - ccc).mean(-1)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax of (N, C) logits (the class probabilities every output of a run uses)."""
    if logits.size == 0:
        return logits
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Task(ABC):
    """Base class: see the module doc for the contract."""

    name: ClassVar[str] = ""
    monitors: ClassVar[tuple[str, ...]] = ("loss",)  # early_stop_metric values this task understands
    default_monitor: ClassVar[str] = "loss"
    has_classes: ClassVar[bool] = False
    has_dims: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, Any] | None = None):
        self.regression_loss = (options or {}).get("regression_loss", "ccc")
        self.multitask_weight = float((options or {}).get("multitask_weight", 0.5))
        if self.regression_loss not in REGRESSION_LOSSES:
            raise ConfigError(f"regression_loss must be one of {', '.join(REGRESSION_LOSSES)} "
                              f"(got {self.regression_loss!r})")
        self.classes: list[str] = []
        self.dims: list[str] = []
        self.scaler: TargetScaler | None = None

    # --- what the run is about -------------------------------------------------------------------
    def bind(self, data: Any) -> Task:
        """Take the classes and dimensions of ``data``; a ConfigError when the data lacks them."""
        self.classes = list(data.classes) if self.has_classes else []
        self.dims = list(data.dims) if self.has_dims else []
        if self.has_classes and len(self.classes) < 2:
            raise ConfigError(f"a {self.name} run needs at least 2 classes; the data has {self.classes or 'none'}")
        if self.has_dims and not self.dims:
            raise ConfigError(f"a {self.name} run needs numeric targets; the feature store has none (a CSV corpus "
                              f"with --corpus-option targets=COLUMNS, iemocap dimensions=true, msp-podcast)")
        return self

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def n_outputs(self, data: Any = None) -> int:
        if data is not None:
            self.bind(data)
        return len(self.classes) + len(self.dims)

    def monitor(self, metric: str) -> str:
        """The metric to stop on (``auto`` = the task's default), refused when the task lacks it."""
        chosen = self.default_monitor if metric == "auto" else metric
        if chosen not in self.monitors:
            raise ConfigError(f"config early_stop_metric must be one of {', '.join(self.monitors)} or auto for task "
                              f"{self.name!r} (got {metric!r}: it does not apply to a {self.name} run)")
        return chosen

    def describe(self) -> dict:
        """The task as run.json / bundles record it (head_from_run reads labels and dims)."""
        return {"kind": self.name, "labels": list(self.classes), "dims": list(self.dims),
                "regression_loss": self.regression_loss, "multitask_weight": self.multitask_weight,
                "n_outputs": self.n_outputs()}

    def metric_names(self) -> list[str]:
        """The per-run metrics summarised over folds (mean +- std), headline first."""
        names = list(METRICS) if self.has_classes else []
        if self.has_dims:
            names += [*REGRESSION_METRICS, *[f"{n}_{d}" for d in self.dims for n in REGRESSION_METRICS]]
        return names

    # --- training --------------------------------------------------------------------------------
    def head(self, net: torch.nn.Module, standardiser: Any, train_data: Any) -> StandardisedModel:
        return StandardisedModel(net, standardiser)

    @abstractmethod
    def targets(self, data: Any) -> torch.Tensor:
        """The training targets of ``data`` as a tensor the loss takes."""

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of one model's outputs."""

    def stacked_loss(self, outputs: torch.Tensor, targets: torch.Tensor,
                     models: Sequence[Task] | None = None) -> torch.Tensor:
        """(G,) losses: model g's own ``loss`` on its own batch (``models``: each model's task copy,
        None = this task for all). Model by model, so it holds for any loss (boolean masks, per-model
        state); a task overrides it when one stacked computation does the same."""
        tasks = models if models is not None else [self] * len(outputs)
        return torch.stack([t.loss(o, y) for t, o, y in zip(tasks, outputs, targets)])

    @abstractmethod
    def validate(self, outputs: np.ndarray, data: Any) -> dict[str, float]:
        """Validation metrics (``val_*`` keys) of one model's outputs."""

    def early_stop_key(self, record: dict[str, Any], monitor: str) -> tuple:
        """Larger is better; ties broken by the lower validation loss (or by the headline for ``loss``)."""
        vl = record["val_loss"]
        head = record.get("val_macro_f1", record.get("val_ccc", 0.0))
        if monitor == "loss":
            return (-vl, head)
        if monitor == "f1_ccc":
            return ((record["val_macro_f1"] / 100.0 + record["val_ccc"]) / 2.0, -vl)
        return (record[f"val_{monitor}"], -vl)

    # --- testing -----------------------------------------------------------------------------------
    def predict(self, outputs: np.ndarray) -> np.ndarray:
        return outputs

    @abstractmethod
    def test_metrics(self, predictions: np.ndarray, data: Any) -> dict[str, Any]:
        """The test side's metrics of a fold."""

    def entry_outputs(self, predictions: np.ndarray, data: Any) -> dict[str, Any]:
        """The test side's predictions as a fold entry stores them: ``test_proba`` (class tasks),
        ``test_dims`` and ``test_targets`` (dimensional tasks, the data's scale)."""
        k = self.n_classes
        rec: dict[str, Any] = {}
        if self.has_classes:
            rec["test_proba"] = np.round(predictions[:, :k], 6).tolist()
        if self.has_dims:
            rec["test_dims"] = np.round(predictions[:, k:].astype(np.float64), 6).tolist()
            rec["test_targets"] = np.round(np.asarray(data.targets, dtype=np.float64), 6).tolist()
        return rec


@register_task("classification")
class Classification(Task):
    """Categorical emotions: logits over ``data.classes``, cross-entropy, accuracy / UA / F1.
    Early stopping on validation macro-F1 (ties: lower loss) or on the loss (ties: higher F1)."""

    monitors = ("macro_f1", "loss")
    default_monitor = "macro_f1"
    has_classes = True

    def targets(self, data: Any) -> torch.Tensor:
        return torch.from_numpy(data.labels)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)

    def stacked_loss(self, outputs: torch.Tensor, targets: torch.Tensor,
                     models: Sequence[Task] | None = None) -> torch.Tensor:
        g, b, c = outputs.shape  # one flat cross-entropy, then each model's mean (no vmap needed)
        return F.cross_entropy(outputs.reshape(-1, c), targets.reshape(-1), reduction="none").reshape(g, b).mean(1)

    def validate(self, outputs: np.ndarray, data: Any) -> dict[str, float]:
        vl = float(F.cross_entropy(torch.from_numpy(outputs), torch.from_numpy(data.labels)).item())
        m = compute_metrics(data.labels, outputs.argmax(1), len(data.classes))
        return {"val_loss": vl, "val_accuracy": m["accuracy"], "val_macro_f1": m["macro_f1"]}

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        return softmax(outputs)

    def test_metrics(self, predictions: np.ndarray, data: Any) -> dict[str, Any]:
        return compute_metrics(data.labels, predictions.argmax(axis=1), len(data.classes))


@register_task("regression")
class Regression(Task):
    """Dimensions only: one output per target, the model answering in the data's scale."""

    monitors = ("ccc", "loss")
    default_monitor = "ccc"
    has_dims = True

    def head(self, net: torch.nn.Module, standardiser: Any, train_data: Any) -> StandardisedModel:
        self.scaler = TargetScaler.fit(train_data.targets)
        return StandardisedModel(net, standardiser, n_classes=self.n_classes, target_mean=self.scaler.mean,
                                 target_std=self.scaler.std)

    def targets(self, data: Any) -> torch.Tensor:
        return torch.from_numpy(np.asarray(data.targets, dtype=np.float32))

    def _dims_loss(self, dims: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.scaler is None:
            raise ConfigError("the task's target scaling is fitted by head(); build the model with it first")
        m = torch.as_tensor(self.scaler.mean, device=dims.device)
        s = torch.as_tensor(self.scaler.std, device=dims.device)
        z, zt = (dims - m) / s, (targets - m) / s
        return ccc_loss(z, zt) if self.regression_loss == "ccc" else F.mse_loss(z, zt)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self._dims_loss(outputs.float(), targets.float())

    def _stacked_dims_loss(self, dims: torch.Tensor, targets: torch.Tensor,
                           models: Sequence[Task] | None) -> torch.Tensor:
        """``_dims_loss`` of G stacked models at once: (G, B, D) in, (G,) out, each model's outputs
        and targets z-scored with ITS OWN training side's scaling (the fold's ``head``)."""
        scalers = [t.scaler for t in (models if models is not None else [self] * len(dims))]
        if any(sc is None for sc in scalers):
            raise ConfigError("the task's target scaling is fitted by head(); build the model with it first")
        m = torch.as_tensor(np.stack([sc.mean for sc in scalers]), device=dims.device)[:, None, :]
        s = torch.as_tensor(np.stack([sc.std for sc in scalers]), device=dims.device)[:, None, :]
        z, zt = (dims - m) / s, (targets - m) / s
        return ccc_loss(z, zt, dim=1) if self.regression_loss == "ccc" else ((z - zt) ** 2).mean(dim=(1, 2))

    def stacked_loss(self, outputs: torch.Tensor, targets: torch.Tensor,
                     models: Sequence[Task] | None = None) -> torch.Tensor:
        return self._stacked_dims_loss(outputs.float(), targets.float(), models)

    def _regression_entries(self, outputs: np.ndarray, data: Any) -> dict[str, Any]:
        r = compute_regression_metrics(data.targets, outputs[:, self.n_classes:], self.dims)
        # flat keys (ccc, ccc_arousal, ...) so fold summaries and paired tests treat them as any metric
        flat = {name: r[name] for name in REGRESSION_METRICS}
        flat.update({f"{name}_{d}": r["per_dim"][d][name] for d in self.dims for name in REGRESSION_METRICS})
        return {"regression": r, **flat}

    def validate(self, outputs: np.ndarray, data: Any) -> dict[str, float]:
        vl = float(self.loss(torch.from_numpy(outputs), self.targets(data)).item())
        return {"val_loss": vl, "val_ccc": self._regression_entries(outputs, data)["ccc"]}

    def test_metrics(self, predictions: np.ndarray, data: Any) -> dict[str, Any]:
        return {**self._regression_entries(predictions, data), "n": int(len(predictions))}


@register_task("multitask")
class Multitask(Regression):
    """Classes and dimensions from one shared trunk: the first ``n_classes`` outputs are logits."""

    monitors = ("f1_ccc", "macro_f1", "ccc", "loss")
    default_monitor = "f1_ccc"
    has_classes = True
    has_dims = True

    def targets(self, data: Any) -> torch.Tensor:
        """(N, 1 + n_dims): the label index (-1: no label) then the targets."""
        labels = np.asarray(data.labels, dtype=np.float32)[:, None]
        return torch.from_numpy(np.concatenate([labels, np.asarray(data.targets, np.float32)], axis=1))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        k = self.n_classes
        outputs, targets = outputs.float(), targets.float()
        labels = targets[:, 0].long()
        known = labels != UNLABELLED
        ce = F.cross_entropy(outputs[known, :k], labels[known]) if bool(known.any()) else outputs.sum() * 0.0
        w = self.multitask_weight
        return (1.0 - w) * ce + w * self._dims_loss(outputs[:, k:], targets[:, 1:])

    def stacked_loss(self, outputs: torch.Tensor, targets: torch.Tensor,
                     models: Sequence[Task] | None = None) -> torch.Tensor:
        """``loss`` of G stacked models at once, with a mask instead of boolean indexing (shapes stay
        fixed): unlabelled rows get class 0 and weight 0, so they add nothing to the cross-entropy,
        which is the mean over each model's labelled rows (0 for a batch without any)."""
        k = self.n_classes
        outputs, targets = outputs.float(), targets.float()
        g, b, _ = outputs.shape
        labels = targets[..., 0].long()
        known = (labels != UNLABELLED).to(outputs.dtype)
        ce_rows = F.cross_entropy(outputs[..., :k].reshape(g * b, k), labels.clamp(min=0).reshape(-1),
                                  reduction="none").reshape(g, b)
        ce = (ce_rows * known).sum(1) / known.sum(1).clamp(min=1.0)
        w = self.multitask_weight
        return (1.0 - w) * ce + w * self._stacked_dims_loss(outputs[..., k:], targets[..., 1:], models)

    def _class_entries(self, outputs: np.ndarray, data: Any) -> dict[str, Any]:
        known = np.asarray(data.labels) != UNLABELLED
        return compute_metrics(np.asarray(data.labels)[known], outputs[known, :self.n_classes].argmax(1),
                               self.n_classes)

    def validate(self, outputs: np.ndarray, data: Any) -> dict[str, float]:
        vl = float(self.loss(torch.from_numpy(outputs), self.targets(data)).item())
        m = self._class_entries(outputs, data)
        return {"val_loss": vl, "val_accuracy": m["accuracy"], "val_macro_f1": m["macro_f1"],
                "val_ccc": self._regression_entries(outputs, data)["ccc"]}

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        k = self.n_classes
        return np.concatenate([softmax(np.ascontiguousarray(outputs[:, :k])), outputs[:, k:]], axis=1)

    def test_metrics(self, predictions: np.ndarray, data: Any) -> dict[str, Any]:
        # classification scored on the labelled rows, the dimensions on every row
        return {**self._class_entries(predictions, data), **self._regression_entries(predictions, data)}


TASK_KINDS = tuple(TASKS)


def default_monitor(kind: str) -> str:
    return TASKS[kind].default_monitor


def task_from_run(run: dict) -> Task:
    """The Task of a run.json (runs from before tasks existed: classification over their labels)."""
    t = run.get("task") or {}
    task = TASKS[t.get("kind", "classification")](None)
    task.regression_loss = t.get("regression_loss", "ccc")
    task.multitask_weight = float(t.get("multitask_weight", 0.5))
    task.classes = list(run.get("labels") or []) if task.has_classes else []
    task.dims = list(t.get("dims") or []) if task.has_dims else []
    return task
