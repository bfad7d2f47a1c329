"""The one training loop: epochs -> train -> validate -> early stopping -> best weights, for any
number of models trained together. What differs between one model at a time (``trainer``) and
stacked models under vmap (``batched``) is a *variant* object with these hooks (the shape of
SpeechBrain's ``fit_batch / evaluate / on_stage_end``):

- ``n_models``; ``val_data(m)``: model m's validation side (None or empty: no early stopping);
- ``model_task(m)``: the task as model m's ``head`` fitted it (dimensional tasks: its own target
  scaling), which scores its validation outputs;
- ``train_epoch(epoch, live) -> {m: mean training loss}``: one epoch of the live models;
- ``validate(live) -> {m: outputs (N, ...) numpy}``: validation outputs of the live models that
  have a validation side (evaluation order and batching: trainer's module doc);
- ``record_extras(m)``: extra epoch-record entries (the learning rate);
- ``snapshot(m)`` -> a copy of model m's weights; ``finish(m, snapshot or None)`` -> the trained
  model (best weights restored, eval mode).

The task (``tasks.Task``) gives the loss (inside the variants' steps), the validation entries and
the early-stopping score; bf16 is the variants' forward context (``RunSpec.forward_context``). The
loop itself reads only the run spec's ``optimisation`` (epochs, patience, early_stop_metric).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from parrot_ser.training.spec import Optimisation
from parrot_ser.training.tasks import Task


class Variant(Protocol):
    n_models: int

    def val_data(self, m: int) -> Any: ...
    def model_task(self, m: int) -> Task: ...
    def train_epoch(self, epoch: int, live: list[int]) -> dict[int, float]: ...
    def validate(self, live: list[int]) -> dict[int, Any]: ...
    def record_extras(self, m: int) -> dict[str, Any]: ...
    def snapshot(self, m: int) -> Any: ...
    def finish(self, m: int, best: Any) -> Any: ...


@dataclass
class _Track:
    """Early-stopping state of one model."""

    has_val: bool
    best_key: tuple | None = None
    best_state: Any = None
    best_epoch: int = 0
    bad: int = 0
    running: bool = True
    history: list[dict] = field(default_factory=list)


def fit(variant: Variant, task: Task, optimisation: Optimisation,
        on_epoch: Callable[[int, int, dict], None] | None = None) -> list[tuple[Any, dict]]:
    """Train every model of ``variant`` for up to ``optimisation.epochs`` epochs, each with its own
    early stopping on its own validation side (``early_stop_metric``, ``patience``; 0 = never stop). Returns per model (trained model, history {"epochs", "best_epoch", "stopped_epoch",
    "monitor"}); ``on_epoch(m, epoch, record)`` is called after each model's epoch."""
    monitor = task.monitor(optimisation.early_stop_metric)  # "auto": the task's own (macro_f1, ccc, f1_ccc)
    tracks = []
    for m in range(variant.n_models):
        v = variant.val_data(m)
        tracks.append(_Track(has_val=v is not None and len(v) > 0))
    for epoch in range(1, optimisation.epochs + 1):
        live = [m for m, t in enumerate(tracks) if t.running]
        if not live:
            break
        losses = variant.train_epoch(epoch, live)
        outputs = variant.validate(live)
        for m in live:
            rec = {"epoch": epoch, "train_loss": losses[m], **variant.record_extras(m)}
            _end_epoch(tracks[m], m, rec, outputs.get(m), variant, monitor)
            if on_epoch is not None:
                on_epoch(m, epoch, rec)
            if tracks[m].has_val and optimisation.patience and tracks[m].bad >= optimisation.patience:
                tracks[m].running = False
    out = []
    for m, t in enumerate(tracks):
        _json_safe(t.history)
        out.append((variant.finish(m, t.best_state),
                    {"epochs": t.history, "best_epoch": t.best_epoch, "stopped_epoch": len(t.history),
                     "monitor": f"val_{monitor}" if t.has_val else "none"}))
    return out


def _end_epoch(t: _Track, m: int, rec: dict, outputs: Any, variant: Variant, monitor: str) -> None:
    """Validation entries, early-stopping bookkeeping and the best weights of model ``m``."""
    epoch = rec["epoch"]
    if t.has_val:
        own = variant.model_task(m)
        rec.update(own.validate(outputs, variant.val_data(m)))
        key = own.early_stop_key(rec, monitor)
        if t.best_key is None or key > t.best_key:
            t.best_key, t.best_epoch, t.bad = key, epoch, 0
            t.best_state = variant.snapshot(m)
        else:
            t.bad += 1
    else:
        t.best_epoch = epoch
    t.history.append(rec)


def _json_safe(history: list[dict]) -> None:
    for r in history:
        for k, v in r.items():
            if isinstance(v, float) and not math.isfinite(v):
                r[k] = None
