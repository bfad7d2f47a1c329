"""Batched fold x seed training: several models of one grid cell trained together as stacked
parameters (``torch.func.stack_module_state`` + ``vmap(functional_call)``).

Each model keeps everything ``trainer.fit_model`` gives it when trained alone:

- its own initial weights (built after ``seed_everything(seed)``, exactly as ``fit_model`` does),
  the task's model around it (``task.head``: its own training-side standardiser and, for
  dimensional tasks, its own target scaling, as stacked buffers), its own data and batch order (a
  ``torch.Generator`` seeded with its seed, the same permutations as ``fit_model``);
- its own loss and validation entries: the task copy its ``head`` fitted (``Task.stacked_loss``
  over the models' copies, ``model_task``), so every task trains batched;
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
``fit_model``. The epochs, validation and early stopping are the one training loop's (loop.py);
this module is its stacked variant (``_Stacked``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from parrot_ser.device import keep_freed_memory
from parrot_ser.errors import ConfigError
from parrot_ser.models import StandardisedModel, Standardiser
from parrot_ser.training.data import SERData
from parrot_ser.training.spec import RunSpec
from parrot_ser.training.tasks import Task, get_task
from parrot_ser.training.trainer import _eval_order, build_net, seed_everything

Job = tuple[SERData, "SERData | None", int]  # (train side, validation side, seed)


class _StackedAdam:
    """One ``torch.optim.Adam`` per model (the one ``fit_model`` makes: ``trainer.make_adam``, the
    fused kernel on CPU and CUDA) over that model's slices of the stacked (M, ...) parameters, so each
    model's update, state and step count are exactly those of one-at-a-time training, and a model
    that takes no step (a fold with fewer batches, or stopped early) is left untouched.

    The slices are detached views of the stacked leaves: Adam writes into the stacked storage, and
    each step hands it the model's slice of the stacked gradient. (An earlier version re-implemented
    Adam on the stacked tensors with a mask per model: a dozen full-size ``torch.where`` / element-wise
    passes per parameter, which measured as most of a batched step for conv heads.)"""

    def __init__(self, params: dict[str, torch.Tensor], n_models: int, spec: RunSpec):
        from parrot_ser.training.trainer import make_adam

        self.params = params
        self.views = [[p.detach()[m] for p in params.values()] for m in range(n_models)]
        self.opts = [make_adam(v, spec) for v in self.views]

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


def _stack_models(jobs: Sequence[Job], spec: RunSpec, task: Task) -> tuple[list, list[Task], dict, dict, Any]:
    """One model per job, built as fit_model builds it (same seed -> same initial weights; the task's
    ``head`` around the network), the task copy each ``head`` left (its target scaling), their
    stacked parameters/buffers, and the meta-device base module vmap calls."""
    from torch.func import stack_module_state

    models: list[StandardisedModel] = []
    tasks: list[Task] = []
    for tr, _, seed in jobs:
        seed_everything(seed)
        std = Standardiser.fit(tr) if spec.inputs.standardise else Standardiser.identity(tr)
        net = build_net(spec, tr.input_shapes, task.n_outputs(tr))
        models.append(task.head(net, std, tr).to(spec.execution.device))
        tasks.append(copy.copy(task))  # what head() fitted for this model (Task contract)
    params, buffers = stack_module_state(models)  # leaf tensors (M, ...) that require grad
    base = copy.deepcopy(models[0]).to("meta")
    base.net.vmap_safe = True  # OT solver without out= writes (vmap cannot batch them)
    if hasattr(base.net, "cfg"):
        base.net.cfg.track_transport = False  # plans under vmap are not plain tensors; read after training
    return models, tasks, params, buffers, base


def _epoch_batches(jobs: Sequence[Job], live: list[int], gens: list[torch.Generator], bs: int) -> dict:
    batches: dict[int, list[np.ndarray]] = {}
    for m in live:
        n = len(jobs[m][0])
        perm = torch.randperm(n, generator=gens[m]).numpy()
        # A batch of one is skipped as in fit_model (identity plan for batch-level OT).
        batches[m] = [perm[s: s + bs] for s in range(0, n, bs) if not (len(perm[s: s + bs]) < 2 and n >= 2)]
    return batches


class _Stacked:
    """The stacked-models variant of the training loop (loop.py): every job's model as slices of
    stacked parameters, called through ``vmap(functional_call)``; its own Adam (``_StackedAdam``),
    data order and validation side."""

    def __init__(self, jobs: Sequence[Job], spec: RunSpec, task: Task):
        from torch.func import functional_call, vmap

        from parrot_ser.fusion import FusionInput

        self.jobs, self.spec, self.task, self.n_models = jobs, spec, task, len(jobs)
        self.dev = spec.execution.device
        self.models, self.tasks, self.params, self.buffers, base = _stack_models(jobs, spec, task)
        self.keys = list(self.params)
        self.base = base

        def fwd(p, b, *xs):
            return functional_call(base, (p, b), (FusionInput(list(xs)),))

        self.vfwd = vmap(fwd, randomness="different")
        self.opt = _StackedAdam(self.params, self.n_models, spec)
        # Dropout under vmap draws from torch's global generator: seed it from the group's seeds so the
        # same group gives the same numbers run to run.
        torch.manual_seed(int(np.random.SeedSequence([int(s) for _, _, s in jobs]).generate_state(1)[0]))
        self.gens = [torch.Generator().manual_seed(int(seed)) for _, _, seed in jobs]
        self.targets = [task.targets(tr).to(self.dev) for tr, _, _ in jobs]
        self.orders = [_eval_order(v) if v is not None and len(v) else None for _, v, _ in jobs]

    def sub(self, d: dict, g: list[int]) -> dict:
        if len(g) == self.n_models:
            return d
        ix = torch.tensor(g, device=self.dev)
        return {k: v.index_select(0, ix) for k, v in d.items()}

    def val_data(self, m: int) -> SERData | None:
        return self.jobs[m][1]

    def model_task(self, m: int) -> Task:
        return self.tasks[m]

    def train_epoch(self, epoch: int, live: list[int]) -> dict[int, float]:
        batches = _epoch_batches(self.jobs, live, self.gens, int(self.spec.optimisation.batch_size))
        totals, seen = dict.fromkeys(live, 0.0), dict.fromkeys(live, 0)
        self.base.train()
        for t in range(max(len(b) for b in batches.values())):
            self._step(t, live, batches, totals, seen, epoch)
        return {m: totals[m] / max(seen[m], 1) for m in live}

    def _step(self, t: int, live: list[int], batches: dict, totals: dict, seen: dict, epoch: int) -> None:
        """Step ``t`` of an epoch: every live model's t-th batch (models with equal batch sizes in one
        vmap call), one backward over the summed losses (each model's loss depends on its own rows
        only: independent gradients), one stacked Adam step for the models that had a batch."""
        groups: dict[int, list[int]] = {}
        for m in live:
            if t < len(batches[m]):
                groups.setdefault(len(batches[m][t]), []).append(m)
        if not groups:
            return
        total = None
        for size, g in groups.items():
            idxs = [batches[m][t] for m in g]
            xs = _stack_rows([self.jobs[m][0] for m in g], idxs, self.dev)
            ys = torch.stack([self.targets[m][torch.from_numpy(ix).to(self.dev)] for m, ix in zip(g, idxs)])
            with self.spec.forward_context():
                outputs = self.vfwd(self.sub(self.params, g), self.sub(self.buffers, g), *xs)  # (G, B, ...)
            losses = self.task.stacked_loss(outputs.float(), ys, [self.tasks[m] for m in g])
            lv = losses.detach().cpu().numpy()
            if not np.isfinite(lv).all():
                raise ConfigError(f"training diverged (loss {float(lv[~np.isfinite(lv)][0])}) at epoch "
                                  f"{epoch}; lower --lr")
            for m, v in zip(g, lv):
                totals[m] += float(v) * size
                seen[m] += size
            total = losses.sum() if total is None else total + losses.sum()
        for p in self.params.values():
            p.grad = None
        total.backward()
        active = torch.zeros(self.n_models, dtype=torch.bool)
        active[[m for g in groups.values() for m in g]] = True
        self.opt.step(active)

    @torch.no_grad()
    def validate(self, live: list[int]) -> dict[int, np.ndarray]:
        """Validation outputs of every live model with a validation side, each in its data's row
        order, evaluated in the documented batching (hash order, consecutive batches)."""
        self.base.eval()
        ebs, orders = int(self.spec.optimisation.eval_batch_size), self.orders
        todo = [m for m in live if orders[m] is not None]
        chunks: dict[int, list[np.ndarray]] = {m: [] for m in todo}
        n_steps = max((-(-len(orders[m]) // ebs) for m in todo), default=0)
        for t in range(n_steps):
            groups: dict[int, list[int]] = {}
            for m in todo:
                if len(orders[m][t * ebs: (t + 1) * ebs]):
                    groups.setdefault(len(orders[m][t * ebs: (t + 1) * ebs]), []).append(m)
            for _, g in groups.items():
                idxs = [orders[m][t * ebs: (t + 1) * ebs] for m in g]
                xs = _stack_rows([self.jobs[m][1] for m in g], idxs, self.dev)
                out = self.vfwd(self.sub(self.params, g), self.sub(self.buffers, g), *xs).float().cpu().numpy()
                for j, m in enumerate(g):
                    chunks[m].append(out[j])
        res = {}
        for m in todo:
            outputs = np.concatenate(chunks[m], axis=0)
            res[m] = np.empty_like(outputs)
            res[m][orders[m]] = outputs
        self.base.train()
        return res

    def record_extras(self, m: int) -> dict:
        return {"lr": float(self.opt.opts[m].param_groups[0]["lr"])}

    def snapshot(self, m: int) -> dict:
        return {k: self.params[k][m].detach().clone() for k in self.keys}

    @torch.no_grad()
    def finish(self, m: int, best: dict | None) -> StandardisedModel:
        state = best or {k: self.params[k][m].detach() for k in self.keys}
        model = self.models[m]
        for k, p in model.named_parameters():
            p.copy_(state[k])
        return model.eval()


def fit_models_batched(jobs: Sequence[Job], spec: RunSpec, *,
                       on_epoch: Callable[[int, int, dict], None] | None = None, task: Task | str | None = None,
                       ) -> list[tuple[StandardisedModel, dict]]:
    """Train one model per job together: the training loop (loop.fit) with the stacked variant, for
    the spec's model (``spec``: a resolved RunSpec; from a TrainConfig, ``RunSpec.build``).
    Returns, per job and in job order, what ``fit_model`` returns: (trained StandardisedModel,
    history {"epochs", "best_epoch", "stopped_epoch", "monitor"}). ``on_epoch(job_index, epoch,
    record)`` is called after each model's epoch with the record ``fit_model`` passes to its own."""
    from parrot_ser.training.loop import fit

    if spec.inputs.use_frames:
        raise ConfigError("batched training takes pooled features only; use --no-batched with --frames")
    if not jobs:
        return []
    for tr, _, _ in jobs:
        if len(tr) == 0:
            raise ConfigError("the training side of this fold is empty")
    if spec.execution.num_threads:
        torch.set_num_threads(int(spec.execution.num_threads))
    keep_freed_memory()
    task = get_task(task or spec.task, spec.task_options, jobs[0][0])
    return fit(_Stacked(jobs, spec, task), task, spec.optimisation, on_epoch)
