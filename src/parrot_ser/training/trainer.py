"""Fit one model on one training side, predict probabilities. Reused by run_cv, grid and export
(--refit). Everything here takes the resolved run spec (training/spec.py), never a TrainConfig:
from Python, ``fit_model(train, val, RunSpec.build("concat", TrainConfig(...)), seed)``.

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
import random
from collections.abc import Callable

import numpy as np
import torch

from parrot_ser.device import REFERENCE_KERNELS, keep_freed_memory
from parrot_ser.errors import ConfigError
from parrot_ser.models import StandardisedModel, Standardiser, build_head, spec_options
from parrot_ser.training.data import SERData, make_batch
from parrot_ser.training.spec import RunSpec
from parrot_ser.training.tasks import Task, get_task


def make_adam(params, spec: RunSpec) -> torch.optim.Adam:
    """torch.optim.Adam with the fused kernel where torch has one (CPU, CUDA): one pass over each
    parameter instead of a dozen element-wise ops, measured 6x faster for the paper-size heads' 18M
    parameters on CPU (``python bench/run.py kernels``); the same update up to float rounding."""
    fused = torch.device(spec.execution.device).type in ("cpu", "cuda") and not REFERENCE_KERNELS
    opt = spec.optimisation
    return torch.optim.Adam(params, lr=opt.lr, weight_decay=opt.weight_decay, fused=fused or None)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def build_net(spec: RunSpec, input_shapes: list, n_outputs: int, frame_dims: list[int] | None = None,
              ) -> torch.nn.Module:
    """models.build_head for the spec's model with its resolved config (``spec.model_config``) and
    use of frames (``spec.inputs``)."""
    return build_head(spec.model, input_shapes, n_outputs, options=spec_options(spec.model_config),
                      use_frames=spec.inputs.use_frames, frame_dims=frame_dims)


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
def predict_logits(model: torch.nn.Module, data: SERData, spec: RunSpec) -> np.ndarray:
    """Logits (N, C) in ``data``'s row order, evaluated in the fixed hash order (module doc) in fixed batches."""
    model.eval()
    order = _eval_order(data)
    out = np.zeros((len(data), 0), dtype=np.float32)
    chunks = []
    bs = int(spec.optimisation.eval_batch_size)
    for s in range(0, len(order), bs):
        idx = order[s: s + bs]
        chunks.append(model(make_batch(data, idx, use_frames=spec.inputs.use_frames, device=spec.execution.device))
                      .float().cpu().numpy())
    if chunks:
        logits = np.concatenate(chunks, axis=0)
        out = np.empty_like(logits)
        out[order] = logits
    return out


def predict_proba(model: torch.nn.Module, data: SERData, spec: RunSpec) -> np.ndarray:
    """Class probabilities (N, C), rows in ``data``'s order (see the module doc for the batching)."""
    from parrot_ser.training.tasks import softmax

    return softmax(predict_logits(model, data, spec))


@torch.no_grad()
def eval_batch_transports(model: torch.nn.Module, data: SERData, spec: RunSpec) -> list[tuple[int, object]]:
    """Run every evaluation batch (same batching as predict_proba) and return (batch size, the
    model's ``last_transport``) per batch; empty for models without OT."""
    if len(data) == 0:
        return []
    model.eval()
    order = _eval_order(data)
    out = []
    bs = int(spec.optimisation.eval_batch_size)
    for s in range(0, len(order), bs):
        idx = order[s: s + bs]
        model(make_batch(data, idx, use_frames=spec.inputs.use_frames, device=spec.execution.device))
        tr = getattr(model, "last_transport", None)
        if tr is None:
            return []
        out.append((len(idx), tr))
    return out


class _Single:
    """The one-model variant of the training loop (loop.py): the model, its optimiser, its data
    order (a torch.Generator seeded with the seed) and its forward context (bf16 autocast)."""

    n_models = 1

    def __init__(self, train_data: SERData, val_data: SERData | None, spec: RunSpec, seed: int, task: Task):
        if spec.execution.num_threads:
            torch.set_num_threads(int(spec.execution.num_threads))
        keep_freed_memory()
        seed_everything(seed)
        std = Standardiser.fit(train_data) if spec.inputs.standardise else Standardiser.identity(train_data)
        net = build_net(spec, train_data.input_shapes, task.n_outputs(train_data),
                        train_data.frame_dims if spec.inputs.use_frames else None)
        # the task wraps the network (dimensional tasks add the training side's target scaling)
        self.model = task.head(net, std, train_data).to(spec.execution.device)
        self.opt = make_adam(self.model.parameters(), spec)
        self.gen = torch.Generator().manual_seed(int(seed))
        self.targets = task.targets(train_data)
        self.train, self.val, self.spec, self.task = train_data, val_data, spec, task

    def val_data(self, m: int) -> SERData | None:
        return self.val

    def model_task(self, m: int) -> Task:
        return self.task

    def train_epoch(self, epoch: int, live: list[int]) -> dict[int, float]:
        spec, model, n = self.spec, self.model, len(self.train)
        bs, dev = spec.optimisation.batch_size, spec.execution.device
        model.train()
        perm = torch.randperm(n, generator=self.gen).numpy()
        total, seen = 0.0, 0
        for s in range(0, n, bs):
            idx = perm[s: s + bs]
            if len(idx) < 2 and n >= 2:
                # A batch of one is degenerate for batch-level OT (identity plan) and BatchNorm.
                continue
            x = make_batch(self.train, idx, use_frames=spec.inputs.use_frames, device=dev)
            y = self.targets[idx].to(dev)
            with spec.forward_context():
                outputs = model(x)
            loss = self.task.loss(outputs.float(), y)
            if not torch.isfinite(loss):
                raise ConfigError(f"training diverged (loss {loss.item()}) at epoch {epoch}; lower --lr")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += float(loss.item()) * len(idx)
            seen += len(idx)
        return {0: total / max(seen, 1)}

    def validate(self, live: list[int]) -> dict[int, np.ndarray]:
        if self.val is None or len(self.val) == 0:
            return {}
        return {0: predict_logits(self.model, self.val, self.spec)}

    def record_extras(self, m: int) -> dict:
        return {"lr": float(self.opt.param_groups[0]["lr"])}

    def snapshot(self, m: int) -> dict:
        return copy.deepcopy(self.model.state_dict())

    def finish(self, m: int, best: dict | None) -> StandardisedModel:
        if best is not None:
            self.model.load_state_dict(best)
        return self.model.eval()


def fit_model(train_data: SERData, val_data: SERData | None, spec: RunSpec, seed: int, *,
              on_epoch: Callable[[int, dict], None] | None = None, task: Task | str | None = None,
              ) -> tuple[StandardisedModel, dict]:
    """Train the spec's model (``spec.model``) on ``train_data`` with early stopping on ``val_data``
    (None or empty: train all epochs, keep the last weights): the training loop (loop.fit) with the
    one-model variant. ``spec``: a resolved RunSpec; from a TrainConfig, ``RunSpec.build(model,
    config)``. ``task``: tasks.Task or its name (default: the spec's task). Returns the trained
    model (standardiser included) and the history {"epochs": [...], "best_epoch", "stopped_epoch",
    "monitor"}."""
    from parrot_ser.training.loop import fit

    if len(train_data) == 0:
        raise ConfigError("the training side of this fold is empty")
    task = get_task(task or spec.task, spec.task_options, train_data)
    cb = None if on_epoch is None else (lambda m, epoch, rec: on_epoch(epoch, rec))
    return fit(_Single(train_data, val_data, spec, seed, task), task, spec.optimisation, cb)[0]
