"""What a model learns, as one object the training loop plugs in (``loop.fit``): how many outputs
the model has, the loss, the validation metrics and the early-stopping score, and how raw outputs
become predictions and test metrics. Classification (softmax + cross-entropy) is the one task today;
a new task (e.g. dimensional regression with a 1 - CCC loss, or several heads at once) is a new
``Task`` subclass registered with ``@register_task`` here or in a module of its own, and the loop,
the batched (vmap) variant and bf16 need no change.

Contract (``data`` is one model's ``SERData``; the batched variant stacks models with
``stacked_loss``):

- ``n_outputs(data)``: width of the model's output (classes, dimensions);
- ``targets(data)``: a tensor of what the loss compares outputs with, row for row;
- ``loss(outputs, targets)``: a scalar tensor for one batch (outputs in float32, autograd on);
- ``stacked_loss(outputs, targets)``: (G,) losses of G stacked models' batches, (G, B, ...) in;
  the default vmaps ``loss``;
- ``validate(outputs, data)``: the epoch record's validation entries (``val_*`` keys, floats);
- ``early_stop_key(record, monitor)``: a tuple, larger = better, from those entries;
- ``predict(outputs)``: numpy outputs -> what is stored and served (probabilities here);
- ``test_metrics(predictions, data)``: the per-fold metrics of results.json.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from parrot_ser.errors import ConfigError
from parrot_ser.training.metrics import compute_metrics

TASKS: dict[str, type[Task]] = {}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    def deco(cls: type[Task]) -> type[Task]:
        cls.name = name
        TASKS[name] = cls
        return cls
    return deco


def get_task(name: str | Task | None = None) -> Task:
    """A task by name (None = classification), or the task itself."""
    if isinstance(name, Task):
        return name
    key = name or "classification"
    if key not in TASKS:
        raise ConfigError(f"unknown task {key!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[key]()


class Task:
    """Base class: see the module doc for the contract."""

    name: ClassVar[str] = ""
    monitors: ClassVar[tuple[str, ...]] = ()  # early_stop_metric values this task understands

    def n_outputs(self, data: Any) -> int:
        raise NotImplementedError

    def targets(self, data: Any) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def stacked_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.vmap(self.loss)(outputs, targets)

    def validate(self, outputs: np.ndarray, data: Any) -> dict[str, float]:
        raise NotImplementedError

    def early_stop_key(self, record: dict[str, Any], monitor: str) -> tuple:
        raise NotImplementedError

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        return outputs

    def test_metrics(self, predictions: np.ndarray, data: Any) -> dict[str, Any]:
        raise NotImplementedError


def softmax(logits: np.ndarray) -> np.ndarray:
    if logits.size == 0:
        return logits
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@register_task("classification")
class Classification(Task):
    """Categorical emotions: logits over ``data.classes``, cross-entropy, accuracy / UA / F1.
    Early stopping on validation macro-F1 (ties: lower loss) or on the loss (ties: higher F1)."""

    monitors = ("macro_f1", "loss")

    def n_outputs(self, data: Any) -> int:
        return len(data.classes)

    def targets(self, data: Any) -> torch.Tensor:
        return torch.from_numpy(data.labels)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)

    def stacked_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        g, b, c = outputs.shape  # one flat cross-entropy, then each model's mean (no vmap needed)
        return F.cross_entropy(outputs.reshape(-1, c), targets.reshape(-1), reduction="none").reshape(g, b).mean(1)

    def validate(self, outputs: np.ndarray, data: Any) -> dict[str, float]:
        vl = float(F.cross_entropy(torch.from_numpy(outputs), torch.from_numpy(data.labels)).item())
        m = compute_metrics(data.labels, outputs.argmax(1), len(data.classes))
        return {"val_loss": vl, "val_accuracy": m["accuracy"], "val_macro_f1": m["macro_f1"]}

    def early_stop_key(self, record: dict[str, Any], monitor: str) -> tuple:
        f1, vl = record["val_macro_f1"], record["val_loss"]
        return (f1, -vl) if monitor == "macro_f1" else (-vl, f1)

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        return softmax(outputs)

    def test_metrics(self, predictions: np.ndarray, data: Any) -> dict[str, Any]:
        return compute_metrics(data.labels, predictions.argmax(axis=1), len(data.classes))
