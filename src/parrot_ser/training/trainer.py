"""Fit one model on one training side, predict probabilities. Reused by run_cv, grid and export
(--refit).

Determinism: ``seed_everything`` seeds python, numpy and torch; the training order comes from a
torch.Generator seeded with the seed, so the same seed gives the same numbers on CPU.

Evaluation order (matters for batch-dependent models such as the paper's batch-level OT in
``parrot``): utterances are ordered by ``sha256(EVAL_ORDER_SALT + utt_id)`` and cut into consecutive
batches of ``eval_batch_size``; the result is returned in the caller's row order. So an utterance's
prediction depends only on the evaluated set and eval_batch_size, never on the caller's order, on
shuffling, or on how the files are named: sorting by utt_id put one emotion per batch on corpora
whose names start with the emotion code (RAVDESS: 79 % of a batch shared a label), which lets batch
mates leak label structure. The hash order is a fixed pseudo-random permutation, the same on every
machine and run (``EVAL_BATCHING`` describes it in run.json).
"""

from __future__ import annotations

import copy
import hashlib
import math
import random
from collections.abc import Callable

import numpy as np
import torch

from parrot_ser.device import REFERENCE_KERNELS, keep_freed_memory
from parrot_ser.errors import ConfigError
from parrot_ser.models import StandardisedModel, Standardiser, build_head
from parrot_ser.training.config import TrainConfig
from parrot_ser.training.data import SERData, make_batch
from parrot_ser.training.tasks import Task, get_task, softmax


def make_adam(params, config: TrainConfig) -> torch.optim.Adam:
    """torch.optim.Adam with the fused kernel where torch has one (CPU, CUDA): one pass over each
    parameter instead of a dozen element-wise ops, measured 6x faster for the paper-size heads' 18M
    parameters on CPU (``python bench/run.py kernels``); the same update up to float rounding."""
    fused = torch.device(config.device).type in ("cpu", "cuda") and not REFERENCE_KERNELS
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused or None)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def build_net(model_name: str, input_shapes: list, n_classes: int, config: TrainConfig,
              frame_dims: list[int] | None = None) -> torch.nn.Module:
    """models.build_head with the training config's dropout, model options and use of frames."""
    return build_head(model_name, input_shapes, n_classes, dropout=config.dropout, options=config.model,
                      use_frames=config.use_frames, frame_dims=frame_dims)


EVAL_ORDER_SALT = "parrot-ser-eval-order/1:"


def eval_order_key(utt_id: str) -> str:
    return hashlib.sha256((EVAL_ORDER_SALT + str(utt_id)).encode("utf-8")).hexdigest()


def eval_batching(batch_size: int) -> str:
    """The evaluation batching, in words, for run.json / results.json / bundles."""
    return (f"utterances ordered by sha256({EVAL_ORDER_SALT!r} + utt_id) (a fixed permutation independent of "
            f"file names and labels), consecutive batches of {int(batch_size)}")


def _eval_order(data: SERData) -> np.ndarray:
    # ties are impossible in practice; utt_id breaks them so the order is total
    return np.asarray(sorted(range(len(data)), key=lambda i: (eval_order_key(data.utt_ids[i]), data.utt_ids[i])),
                      dtype=np.int64)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, data: SERData, config: TrainConfig) -> np.ndarray:
    """Logits (N, C) in ``data``'s row order, evaluated in the fixed hash order (module doc) in fixed batches."""
    model.eval()
    order = _eval_order(data)
    out = np.zeros((len(data), 0), dtype=np.float32)
    chunks = []
    bs = int(config.eval_batch_size)
    for s in range(0, len(order), bs):
        idx = order[s: s + bs]
        chunks.append(model(make_batch(data, idx, use_frames=config.use_frames, device=config.device))
                      .float().cpu().numpy())
    if chunks:
        logits = np.concatenate(chunks, axis=0)
        out = np.empty_like(logits)
        out[order] = logits
    return out


def predict_proba(model: torch.nn.Module, data: SERData, config: TrainConfig) -> np.ndarray:
    """Class probabilities (N, C), rows in ``data``'s order (see the module doc for the batching)."""
    return softmax(predict_logits(model, data, config))


@torch.no_grad()
def eval_batch_transports(model: torch.nn.Module, data: SERData, config: TrainConfig) -> list[tuple[int, object]]:
    """Run every evaluation batch (same batching as predict_proba) and return (batch size, the
    model's ``last_transport``) per batch; empty for models without OT."""
    if len(data) == 0:
        return []
    model.eval()
    order = _eval_order(data)
    out = []
    bs = int(config.eval_batch_size)
    for s in range(0, len(order), bs):
        idx = order[s: s + bs]
        model(make_batch(data, idx, use_frames=config.use_frames, device=config.device))
        tr = getattr(model, "last_transport", None)
        if tr is None:
            return []
        out.append((len(idx), tr))
    return out


def _new_model(model_name: str, train_data: SERData, config: TrainConfig, task: Task) -> StandardisedModel:
    """The untrained head for ``task`` with the training side's feature standardiser (the task adds
    the training side's target scaling for dimensional outputs: the model answers in the data's scale)."""
    std = Standardiser.fit(train_data) if config.standardise else Standardiser.identity(train_data)
    net = build_net(model_name, train_data.input_shapes, task.n_outputs(), config,
                    train_data.frame_dims if config.use_frames else None)
    return task.head(net, std, train_data).to(config.device)


def fit_model(train_data: SERData, val_data: SERData | None, model_name: str, config: TrainConfig,
              seed: int, *, on_epoch: Callable[[int, dict], None] | None = None,
              ) -> tuple[StandardisedModel, dict]:
    """Train ``model_name`` on ``train_data`` with early stopping on ``val_data`` (None or empty:
    train all epochs, keep the last weights). Returns the trained model (standardiser included) and
    the history {"epochs": [...], "best_epoch", "stopped_epoch", "monitor"}."""
    config.validate()
    if len(train_data) == 0:
        raise ConfigError("the training side of this fold is empty")
    if config.num_threads:
        torch.set_num_threads(int(config.num_threads))
    keep_freed_memory()
    seed_everything(seed)
    task = get_task(config.task, config, train_data)
    metric = task.monitor(config.early_stop_metric)
    model = _new_model(model_name, train_data, config, task)
    opt = make_adam(model.parameters(), config)
    gen = torch.Generator().manual_seed(int(seed))
    targets = task.targets(train_data)
    has_val = val_data is not None and len(val_data) > 0
    monitor = f"val_{metric}" if has_val else "none"
    best_key: tuple[float, float] | None = None
    best_state = None
    best_epoch = 0
    history: list[dict] = []
    bad = 0
    n = len(train_data)
    for epoch in range(1, config.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen).numpy()
        total, seen = 0.0, 0
        for s in range(0, n, config.batch_size):
            idx = perm[s: s + config.batch_size]
            if len(idx) < 2 and n >= 2:
                # A batch of one is degenerate for batch-level OT (identity plan) and BatchNorm.
                continue
            x = make_batch(train_data, idx, use_frames=config.use_frames, device=config.device)
            y = targets[idx].to(config.device)
            with config.autocast():
                out = model(x)
            loss = task.loss(out.float(), y)
            if not torch.isfinite(loss):
                raise ConfigError(f"training diverged (loss {loss.item()}) at epoch {epoch}; lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.item()) * len(idx)
            seen += len(idx)
        rec = {"epoch": epoch, "train_loss": total / max(seen, 1), "lr": float(opt.param_groups[0]["lr"])}
        if has_val:
            rec.update(task.validate(predict_logits(model, val_data, config), val_data))
            key = task.early_stop_key(rec, metric)
            if best_key is None or key > best_key:
                best_key, best_epoch, bad = key, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
        else:
            best_epoch = epoch
        history.append(rec)
        if on_epoch is not None:
            on_epoch(epoch, rec)
        if has_val and config.patience and bad >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    for r in history:  # JSON-safe
        for k, v in r.items():
            if isinstance(v, float) and not math.isfinite(v):
                r[k] = None
    return model, {"epochs": history, "best_epoch": best_epoch, "stopped_epoch": len(history),
                   "monitor": monitor}
