"""Batched fold x seed training: several models of one grid cell trained together as stacked
parameters (``torch.func.stack_module_state`` + ``vmap(functional_call)``).

Each model keeps everything ``trainer.fit_model`` gives it when trained alone:

- its own initial weights (built after ``seed_everything(seed)``, exactly as ``fit_model`` does),
  its own training-side standardiser (stacked buffers), its own data and batch order (a
  ``torch.Generator`` seeded with its seed, the same permutations as ``fit_model``);
- its own Adam state and step count (``_StackedAdam`` below: one torch.optim.Adam per model,
  applied only to the models that took a step, so a model whose epoch has fewer batches, or that
  stopped early, is left untouched);
- its own early stopping on its own validation speakers, evaluated with the documented evaluation
  batching (utt_id order, ``eval_batch_size``; it matters for the batch-dependent ``parrot``), and
  its own best weights.

What differs from one-at-a-time training: dropout masks come from one generator for the stacked
models (``vmap(randomness="different")``, seeded from the group's seeds), so with dropout > 0 the
numbers are a different (equally valid) random draw, deterministic run to run for the same group;
with dropout 0 both paths compute the same thing up to float rounding (batched matmuls sum in
another order). Models whose batches have different sizes at a step (a fold's last, shorter batch)
are run as separate vmap groups, so no padding row ever enters a batch-level OT plan.

Frame inputs (``use_frames``) are not batched (ragged per-model padding); callers fall back to
``fit_model``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from parrot_ser.device import keep_freed_memory
from parrot_ser.errors import ConfigError
from parrot_ser.models import StandardisedModel, Standardiser
from parrot_ser.training.config import TrainConfig
from parrot_ser.training.data import SERData
from parrot_ser.training.metrics import compute_metrics
from parrot_ser.training.trainer import _eval_order, build_net, seed_everything

Job = tuple[SERData, "SERData | None", int]  # (train side, validation side, seed)


def _metric(config: TrainConfig) -> str:
    """The early-stopping metric of a classification run (the only task trained here: fold_runs sends
    regression and multitask to fit_model); "auto" means macro-F1."""
    return "macro_f1" if config.early_stop_metric == "auto" else config.early_stop_metric


class _StackedAdam:
    """One ``torch.optim.Adam`` per model (the one ``fit_model`` makes: ``trainer.make_adam``, the
    fused kernel on CPU and CUDA) over that model's slices of the stacked (M, ...) parameters, so each
    model's update, state and step count are exactly those of one-at-a-time training, and a model
    that takes no step (a fold with fewer batches, or stopped early) is left untouched.

    The slices are detached views of the stacked leaves: Adam writes into the stacked storage, and
    each step hands it the model's slice of the stacked gradient. (An earlier version re-implemented
    Adam on the stacked tensors with a mask per model: a dozen full-size ``torch.where`` / element-wise
    passes per parameter, which measured as most of a batched step for conv heads.)"""

    def __init__(self, params: dict[str, torch.Tensor], n_models: int, config: TrainConfig):
        from parrot_ser.training.trainer import make_adam

        self.params = params
        self.views = [[p.detach()[m] for p in params.values()] for m in range(n_models)]
        self.opts = [make_adam(v, config) for v in self.views]

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        for m in torch.nonzero(active.cpu()).flatten().tolist():
            for view, p in zip(self.views[m], self.params.values()):
                # unused parameter (e.g. frame projections on pooled inputs): no grad, Adam skips it
                view.grad = None if p.grad is None else p.grad[m]
            self.opts[m].step()


def _stack_rows(datas: Sequence[SERData], idxs: Sequence[np.ndarray], device: str) -> list[torch.Tensor]:
    """Input i of every model's batch stacked: (G, B, *shape_i)."""
    out = []
    for i in range(datas[0].n_inputs):
        arr = np.stack([np.ascontiguousarray(d.pooled[i][ix], dtype=np.float32) for d, ix in zip(datas, idxs)])
        out.append(torch.from_numpy(arr).to(device))
    return out


@dataclass
class _Tracks:
    """Per-model early stopping state of a batched fit (one list entry per model)."""

    has_val: list[bool]
    monitor: list[str]
    best_key: list[tuple[float, float] | None]
    best_state: list[dict | None]
    best_epoch: list[int]
    bad: list[int]
    history: list[list[dict]]
    running: list[bool]

    @classmethod
    def start(cls, jobs: Sequence[Job], config: TrainConfig) -> _Tracks:
        n = len(jobs)
        has_val = [v is not None and len(v) > 0 for _, v, _ in jobs]
        metric = _metric(config)
        return cls(has_val, [f"val_{metric}" if hv else "none" for hv in has_val], [None] * n,
                   [None] * n, [0] * n, [0] * n, [[] for _ in range(n)], [True] * n)

    def record(self, m: int, rec: dict, val: Any, logits: np.ndarray | None, config: TrainConfig, n_cls: int,
               params: dict, keys: list[str]) -> None:
        """Add the validation metrics of model ``m`` to its epoch record; keep its best weights."""
        epoch = rec["epoch"]
        if self.has_val[m]:
            vl = float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(val.labels)).item())
            met = compute_metrics(val.labels, logits.argmax(1), n_cls)
            rec.update(val_loss=vl, val_accuracy=met["accuracy"], val_macro_f1=met["macro_f1"])
            key = (met["macro_f1"], -vl) if _metric(config) == "macro_f1" else (-vl, met["macro_f1"])
            if self.best_key[m] is None or key > self.best_key[m]:
                self.best_key[m], self.best_epoch[m], self.bad[m] = key, epoch, 0
                self.best_state[m] = {k: params[k][m].detach().clone() for k in keys}
            else:
                self.bad[m] += 1
        else:
            self.best_epoch[m] = epoch
        self.history[m].append(rec)
        if self.has_val[m] and config.patience and self.bad[m] >= config.patience:
            self.running[m] = False


def _stack_models(jobs: Sequence[Job], model_name: str, config: TrainConfig) -> tuple[list, dict, dict, Any]:
    """One StandardisedModel per job, built as fit_model builds it (same seed -> same initial weights),
    their stacked parameters/buffers, and the meta-device base module vmap calls."""
    from torch.func import stack_module_state

    models: list[StandardisedModel] = []
    for tr, _, seed in jobs:
        seed_everything(seed)
        std = Standardiser.fit(tr) if config.standardise else Standardiser.identity(tr)
        net = build_net(model_name, tr.input_shapes, len(tr.classes), config, None)
        models.append(StandardisedModel(net, std).to(config.device))
    params, buffers = stack_module_state(models)  # leaf tensors (M, ...) that require grad
    base = copy.deepcopy(models[0]).to("meta")
    base.net.vmap_safe = True  # OT solver without out= writes (vmap cannot batch them)
    if hasattr(base.net, "cfg"):
        base.net.cfg.track_transport = False  # plans under vmap are not plain tensors; read after training
    return models, params, buffers, base


def _epoch_batches(jobs: Sequence[Job], live: list[int], gens: list[torch.Generator], bs: int) -> dict:
    batches: dict[int, list[np.ndarray]] = {}
    for m in live:
        n = len(jobs[m][0])
        perm = torch.randperm(n, generator=gens[m]).numpy()
        # A batch of one is skipped as in fit_model (identity plan for batch-level OT).
        batches[m] = [perm[s: s + bs] for s in range(0, n, bs) if not (len(perm[s: s + bs]) < 2 and n >= 2)]
    return batches


def _train_step(t: int, live: list[int], batches: dict, ctx: dict, totals: dict, seen: dict, epoch: int) -> None:
    """Step ``t`` of an epoch: every live model's t-th batch (models with equal batch sizes in one vmap
    call), one backward over the summed losses (each model's loss depends on its own rows only:
    independent gradients), one stacked Adam step for the models that had a batch."""
    jobs, dev, n_cls, n_models = ctx["jobs"], ctx["dev"], ctx["n_cls"], ctx["n_models"]
    groups: dict[int, list[int]] = {}
    for m in live:
        if t < len(batches[m]):
            groups.setdefault(len(batches[m][t]), []).append(m)
    if not groups:
        return
    total = None
    for size, g in groups.items():
        idxs = [batches[m][t] for m in g]
        xs = _stack_rows([jobs[m][0] for m in g], idxs, dev)
        ys = torch.stack([ctx["labels"][m][torch.from_numpy(ix).to(dev)] for m, ix in zip(g, idxs)])
        with ctx["autocast"]():
            logits = ctx["vfwd"](ctx["sub"](ctx["params"], g), ctx["sub"](ctx["buffers"], g), *xs)  # (G, B, C)
        logits = logits.float()
        losses = F.cross_entropy(logits.reshape(-1, n_cls), ys.reshape(-1),
                                 reduction="none").reshape(len(g), size).mean(1)
        lv = losses.detach().cpu().numpy()
        if not np.isfinite(lv).all():
            raise ConfigError(f"training diverged (loss {float(lv[~np.isfinite(lv)][0])}) at epoch "
                              f"{epoch}; lower --lr")
        for m, v in zip(g, lv):
            totals[m] += float(v) * size
            seen[m] += size
        total = losses.sum() if total is None else total + losses.sum()
    for p in ctx["params"].values():
        p.grad = None
    total.backward()
    active = torch.zeros(n_models, dtype=torch.bool)
    active[[m for g in groups.values() for m in g]] = True
    ctx["opt"].step(active)


def _restore_best(models: list, params: dict, keys: list[str], tracks: _Tracks) -> list[tuple[StandardisedModel, dict]]:
    out = []
    with torch.no_grad():
        for m, model in enumerate(models):
            state = tracks.best_state[m] or {k: params[k][m].detach() for k in keys}
            for k, p in model.named_parameters():
                p.copy_(state[k])
            model.eval()
            for r in tracks.history[m]:  # JSON-safe
                for k, v in r.items():
                    if isinstance(v, float) and not math.isfinite(v):
                        r[k] = None
            out.append((model, {"epochs": tracks.history[m], "best_epoch": tracks.best_epoch[m],
                                "stopped_epoch": len(tracks.history[m]), "monitor": tracks.monitor[m]}))
    return out


def fit_models_batched(jobs: Sequence[Job], model_name: str, config: TrainConfig, *,
                       on_epoch: Callable[[int, int, dict], None] | None = None,
                       ) -> list[tuple[StandardisedModel, dict]]:
    """Train one model per job together. Returns, per job and in job order, what ``fit_model``
    returns: (trained StandardisedModel, history {"epochs", "best_epoch", "stopped_epoch",
    "monitor"}). ``on_epoch(job_index, epoch, record)`` is called after each model's epoch with the
    same record ``fit_model`` passes to its ``on_epoch``."""
    from torch.func import functional_call, vmap

    from parrot_ser.fusion import FusionInput

    config.validate()
    if config.use_frames:
        raise ConfigError("batched training takes pooled features only; use --no-batched with --frames")
    if not jobs:
        return []
    for tr, _, _ in jobs:
        if len(tr) == 0:
            raise ConfigError("the training side of this fold is empty")
    if config.num_threads:
        torch.set_num_threads(int(config.num_threads))
    keep_freed_memory()
    dev = config.device
    n_models = len(jobs)
    models, params, buffers, base = _stack_models(jobs, model_name, config)
    keys = list(params)

    def fwd(p, b, *xs):
        return functional_call(base, (p, b), (FusionInput(list(xs)),))

    def sub(d: dict, g: list[int]) -> dict:
        if len(g) == n_models:
            return d
        ix = torch.tensor(g, device=dev)
        return {k: v.index_select(0, ix) for k, v in d.items()}

    vfwd = vmap(fwd, randomness="different")
    opt = _StackedAdam(params, n_models, config)
    # Dropout under vmap draws from torch's global generator: seed it from the group's seeds so the
    # same group gives the same numbers run to run.
    torch.manual_seed(int(np.random.SeedSequence([int(s) for _, _, s in jobs]).generate_state(1)[0]))
    gens = [torch.Generator().manual_seed(int(seed)) for _, _, seed in jobs]
    n_cls = len(jobs[0][0].classes)
    tracks = _Tracks.start(jobs, config)
    eval_orders = [_eval_order(v) if hv else None for (_, v, _), hv in zip(jobs, tracks.has_val)]
    ctx = {"autocast": config.autocast, "jobs": jobs, "dev": dev, "n_cls": n_cls, "n_models": n_models, "vfwd": vfwd, "sub": sub, "opt": opt,
           "params": params, "buffers": buffers, "labels": [torch.from_numpy(tr.labels).to(dev) for tr, _, _ in jobs]}
    for epoch in range(1, config.epochs + 1):
        live = [m for m in range(n_models) if tracks.running[m]]
        if not live:
            break
        batches = _epoch_batches(jobs, live, gens, int(config.batch_size))
        totals, seen = dict.fromkeys(live, 0.0), dict.fromkeys(live, 0)
        base.train()
        for t in range(max(len(b) for b in batches.values())):
            _train_step(t, live, batches, ctx, totals, seen, epoch)
        val_logits = _predict_stacked(vfwd, base, params, buffers, sub, jobs, eval_orders, live,
                                      int(config.eval_batch_size), dev)
        for m in live:
            rec = {"epoch": epoch, "train_loss": totals[m] / max(seen[m], 1)}
            tracks.record(m, rec, jobs[m][1], val_logits[m] if tracks.has_val[m] else None, config, n_cls,
                          params, keys)
            if on_epoch is not None:
                on_epoch(m, epoch, rec)
    return _restore_best(models, params, keys, tracks)


@torch.no_grad()
def _predict_stacked(vfwd, base, params, buffers, sub, jobs, orders, live, ebs, dev) -> dict[int, np.ndarray]:
    """Validation logits of every live model with a validation side, each in its data's row order,
    evaluated in the documented batching (utt_id order, consecutive batches of ``ebs``)."""
    base.eval()
    todo = [m for m in live if orders[m] is not None]
    chunks: dict[int, list[np.ndarray]] = {m: [] for m in todo}
    n_steps = max((-(-len(orders[m]) // ebs) for m in todo), default=0)
    for t in range(n_steps):
        groups: dict[int, list[int]] = {}
        for m in todo:
            ix = orders[m][t * ebs: (t + 1) * ebs]
            if len(ix):
                groups.setdefault(len(ix), []).append(m)
        for _, g in groups.items():
            idxs = [orders[m][t * ebs: (t + 1) * ebs] for m in g]
            xs = _stack_rows([jobs[m][1] for m in g], idxs, dev)
            logits = vfwd(sub(params, g), sub(buffers, g), *xs).float().cpu().numpy()
            for j, m in enumerate(g):
                chunks[m].append(logits[j])
    out = {}
    for m in todo:
        logits = np.concatenate(chunks[m], axis=0)
        res = np.empty_like(logits)
        res[orders[m]] = logits
        out[m] = res
    base.train()
    return out
