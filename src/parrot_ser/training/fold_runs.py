"""What one execution unit runs for a prepared run (``PreparedRun``): fit each (seed, fold) -> evaluate
its test side (metrics, transport statistics) -> hand back the result; the driver then writes it
into RUN_DIR with ``write_fold_result``. Used by run.py and by execute.py (in this process, worker
processes or Ray actors)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parrot_ser.files import atomic_path, write_json_atomic
from parrot_ser.models import save_weights
from parrot_ser.training.data import SERData
from parrot_ser.training.logs import EpochLog
from parrot_ser.training.rundir import RUN_FORMAT, entry_name, entry_path, transport_plan_path, weights_path
from parrot_ser.training.spec import RunSpec
from parrot_ser.training.splits import Fold
from parrot_ser.training.tasks import get_task
from parrot_ser.training.trainer import eval_batch_transports, fit_model, predict_logits


@dataclass
class PreparedRun:
    """A prepared cross-validation run: identity checked, folds made, run.json written; ``todo``
    lists the (seed, fold) runs still to train (finished ones are in ``done``). Everything after
    preparation (execution, the training loop, the workers) reads the resolved ``spec``; the
    TrainConfig it was built from stays at the edge (run.json records it as ``config``)."""

    out: Path
    model: str
    encoders: list[str]
    spec: RunSpec
    seeds: list[int]
    fingerprint: str
    accepted: set[str]
    run_info: dict
    fold_records: dict
    sdata: SERData
    done: dict[str, dict]
    todo: list[tuple[int, Fold]]
    features_dir: str | None
    t_start: float

    @property
    def key(self) -> str:
        return str(self.out)


def transport_summary(tr: Any) -> tuple[np.ndarray | None, dict]:
    """A 2-D plan to draw (the first problem of the batch) and the scalar statistics of what a model's
    ``last_transport`` holds (a dict or an object with ``plan`` / ``stats``). The statistics are
    ``fusion.sinkhorn.plan_stats`` (their one owner: the model's own, else computed from the plan)
    plus any other scalars the model reported (e.g. the Sinkhorn iterations)."""
    from parrot_ser.fusion.sinkhorn import plan_stats

    if tr is None:
        return None, {}
    if isinstance(tr, dict):
        plan, stats = tr.get("plan"), {k: v for k, v in tr.items() if k not in ("plan", "stats")}
        stats.update(tr.get("stats") if isinstance(tr.get("stats"), dict) else {})
    else:
        plan, stats = getattr(tr, "plan", None), dict(getattr(tr, "stats", None) or {})
    if plan is not None and not any(k in stats for k in ("eff_partners", "entropy")):
        stats.update(plan_stats(plan if hasattr(plan, "detach") else torch.as_tensor(np.asarray(plan))))
    clean: dict = {}
    for k, v in stats.items():
        try:
            arr = np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if arr.size >= 1 and np.isfinite(arr).all():
            clean[k] = float(arr.mean())
    if plan is None:
        return None, clean
    p = np.asarray(plan.detach().float().cpu() if hasattr(plan, "detach") else plan, dtype=np.float64)
    while p.ndim > 2:
        p = p[0]
    clean["plan_shape"] = list(p.shape)
    return p, clean


def eval_transport_stats(net: Any, data: SERData, spec: RunSpec) -> tuple[np.ndarray | None, dict]:
    """Transport statistics over ALL evaluation batches of ``data`` (mean weighted by batch size;
    ``n_batches`` says how many) and the plan of the first batch, to draw."""
    per = [(n, *transport_summary(tr)) for n, tr in eval_batch_transports(net, data, spec)]
    if not per:
        return None, {}
    keys = sorted({k for _, _, st in per for k, v in st.items() if isinstance(v, float)})
    stats: dict = {}
    for k in keys:
        vals = [(n, st[k]) for n, _, st in per if isinstance(st.get(k), float)]
        stats[k] = float(sum(n * v for n, v in vals) / sum(n for n, _ in vals))
    first = per[0][2]
    if "plan_shape" in first:
        stats["plan_shape"] = first["plan_shape"]  # of the drawn (first) batch
    stats["n_batches"] = len(per)
    return per[0][1], stats


def train_folds(sdata: SERData, spec: RunSpec, jobs: Sequence[tuple[int, Fold]], *,
                batched: bool = False, on_epoch: Callable[[int, int, int, dict], None] | None = None,
                ) -> list[dict]:
    """Train and test the (seed, fold) ``jobs`` of one cell (the spec's model): one at a time (``fit_model``) or all
    together (``batched.fit_models_batched``). Returns one result per job, in job order:
    {"seed", "fold", "fold_name", "state" (state dict, CPU tensors), "plan" (first test batch's OT
    plan or None), "entry" (the finished-run entry without its fingerprint)}. Writes nothing: the
    caller (the driver) is the single writer of RUN_DIR, wherever this ran.

    ``on_epoch(seed, fold, epoch, record)`` is called after each epoch of each model."""
    from parrot_ser.training.batched import fit_models_batched

    task = get_task(spec.task, spec.task_options, sdata)
    sides = [(sdata.subset(f.train), sdata.subset(f.val), sdata.subset(f.test)) for _, f in jobs]
    t0 = time.perf_counter()
    if batched and len(jobs) > 1:
        cb = None
        if on_epoch is not None:
            def cb(j: int, epoch: int, rec: dict) -> None:
                on_epoch(jobs[j][0], jobs[j][1].index, epoch, rec)
        fitted = fit_models_batched([(tr, va, s) for (s, _), (tr, va, _) in zip(jobs, sides)], spec, on_epoch=cb)
        t_fit = [(time.perf_counter() - t0) / len(jobs)] * len(jobs)  # one shared fit: its time split evenly
        how = "batched"
    else:
        fitted, t_fit = [], []
        for (s, fold), (tr, va, _) in zip(jobs, sides):
            t1 = time.perf_counter()
            cb = None
            if on_epoch is not None:
                def cb(epoch: int, rec: dict, _s=s, _k=fold.index) -> None:
                    on_epoch(_s, _k, epoch, rec)
            fitted.append(fit_model(tr, va, spec, s, on_epoch=cb))
            t_fit.append(time.perf_counter() - t1)
        how = "single"
    results = []
    for (s, fold), (tr, va, te), (net, hist), tf in zip(jobs, sides, fitted, t_fit):
        t1 = time.perf_counter()
        pred = task.predict(predict_logits(net, te, spec))
        t_pred = time.perf_counter() - t1
        metrics = task.test_metrics(pred, te)
        plan, tstats = eval_transport_stats(net, te, spec)
        # Every state-dict key as its own tensor (clone: no shared storage), so a plain
        # load_file + load_state_dict(strict=True) restores it.
        sd = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
        entry = {
            "seed": s, "fold": fold.index, "fold_name": fold.name,
            "metrics": metrics, "best_epoch": hist["best_epoch"], "stopped_epoch": hist["stopped_epoch"],
            "monitor": hist["monitor"], "history": hist["epochs"],
            "timings": {"fit_s": tf, "predict_s": t_pred, "n_train": len(tr), "n_val": len(va), "n_test": len(te),
                        "training": how},
            "transport": tstats or None,
            "test_utt_ids": te.utt_ids, "test_labels": te.labels.tolist(), **task.entry_outputs(pred, te),
        }
        results.append({"seed": s, "fold": fold.index, "state": sd,
                        "plan": None if plan is None else plan.astype(np.float32), "entry": entry})
    return results


def write_fold_result(prepared: PreparedRun, res: dict, *, logged: bool = False) -> dict:
    """Write one trained seed/fold into RUN_DIR (per-epoch log unless ``logged`` live already,
    weights, transport plan, then the entry, atomically and last: its presence marks the seed/fold as
    finished). Returns the entry."""
    out = prepared.out
    name = entry_name(res["seed"], res["fold"])
    if not logged:  # trained elsewhere (worker process, Ray): the driver writes the epoch log from the history
        with EpochLog(out, name, lr=prepared.spec.optimisation.lr) as elog:
            for rec in res["entry"]["history"]:
                elog(int(rec["epoch"]), rec)
    if res["plan"] is not None:
        with atomic_path(transport_plan_path(out, name)) as tmp, open(tmp, "wb") as f:
            np.save(f, res["plan"])
    save_weights(res["state"], weights_path(out, name),
                 {"model": prepared.model, "seed": str(res["seed"]), "fold": str(res["fold"]),
                  "fingerprint": prepared.fingerprint, "format": RUN_FORMAT})
    entry = {"fingerprint": prepared.fingerprint, **res["entry"]}
    write_json_atomic(entry_path(out, name), entry)
    prepared.done[name] = entry
    return entry
