"""Executing prepared runs (``run.prepare_run``): which seed/folds train together, where, and with
how many threads. None of this changes what a run computes or its identity (run fingerprint).

Units of work: with batched training, the folds of one seed of one cell train together (one
unit, one stacked set of models); one at a time, each seed/fold is a unit. Grouping by seed (not by
the number of workers) keeps a unit's composition, and with it its numbers, the same whatever
``--workers`` or engine runs it, and when a killed run resumes (a unit is retrained whole).

Engines (the driver, this process, is always the single writer of every RUN_DIR: units return
weights and entries, ``run.write_fold_result`` writes them as each unit finishes, so a killed
driver loses only the units in flight and resumes from what was written):

- ``local``, 1 worker: in this process, per-epoch progress.
- ``local``, N workers (default: every usable core): a ``concurrent.futures.ProcessPoolExecutor``
  (spawn context: no forked OpenMP runtime); each worker gets ``cores // N`` torch threads (at
  least 1) so the machine is not oversubscribed, and reads the features from the store itself.
  A worker ends within a second of its driver's death (``_exit_with_parent``), so a killed run
  leaves no process training for nobody.
- ``ray``: each unit is a Ray task with a resource request (``num_cpus`` = threads per task,
  ``num_gpus`` when the device is CUDA), features shipped once per encoder combination through the
  object store (``ray.put``), so worker nodes need parrot-ser installed but not the store.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from parrot_ser.errors import ConfigError
from parrot_ser.raycluster import ENGINES, check_engine, ray_init
from parrot_ser.training.fold_runs import PreparedRun, train_folds, write_fold_result
from parrot_ser.training.logs import EpochLog
from parrot_ser.training.spec import Execution, RunSpec
from parrot_ser.training.splits import Fold
from parrot_ser.workers import exit_with_parent as _exit_with_parent
from parrot_ser.workers import usable_cores

# CPU heuristic for --batched auto: vmap over stacked models only pays where a model's step is tiny
# (per-step Python/dispatch overhead dominates); where a model's own matmuls and convs fill the core
# the stacked weights and activations fall out of cache, and functorch runs the stacked convolutions
# as grouped ones. Measured (bench/bench_batched.py --quick, 5 models x 1 epoch, 1 thread, after the
# per-model fused Adam): fcn 0.04M params 1.07x faster, cnn on logmel 1.3M params 0.81x, parrot on
# 960 + 768 dims 6.7M params 0.74x. On CUDA the stacked kernels fill the GPU instead.
BATCHED_CPU_MAX_PARAMS = 200_000
# Below this many (utterance x epoch x seed/fold) training rows, automatic --workers stays in this
# process: about a minute of small-head training, against seconds to start each worker.
MIN_PARALLEL_WORK = 200_000


def resolve_batched(batched: bool | None, spec: RunSpec, input_shapes: list, n_outputs: int) -> bool:
    """--batched / --no-batched as given; automatic (None): batched on CUDA, and on CPU only for
    heads below BATCHED_CPU_MAX_PARAMS parameters. Frame inputs are never batched."""
    if batched is not None:
        if batched and spec.inputs.use_frames:
            raise ConfigError("--batched takes pooled features only; drop --frames or use --no-batched")
        return bool(batched)
    if spec.inputs.use_frames:
        return False
    if str(spec.execution.device).startswith("cuda"):
        return True
    from parrot_ser.training.trainer import build_net

    net = build_net(spec, input_shapes, n_outputs)
    return sum(p.numel() for p in net.parameters()) < BATCHED_CPU_MAX_PARAMS


@dataclass
class Unit:
    """One piece of work: some (seed, fold) runs of one prepared run. ``spec``: the run's
    ``RunSpec.to_dict()`` (plain data: it travels to worker processes and Ray tasks, which rebuild it
    with ``RunSpec.from_dict`` and their own thread count)."""

    run_key: str
    data_key: tuple
    features_dir: str | None
    encoders: list[str]
    spec: dict
    jobs: list[tuple[int, Fold]]
    batched: bool

    @property
    def model(self) -> str:
        return self.spec["model"]

    def run_spec(self, threads: int | None = None) -> RunSpec:
        spec = RunSpec.from_dict(self.spec)
        return spec if threads is None else spec.with_threads(threads)


def make_units(runs: Sequence[PreparedRun], batched: bool | None) -> list[Unit]:
    units = []
    for p in runs:
        if not p.todo:
            continue
        b = resolve_batched(batched, p.spec, p.run_info["input_shapes"],
                            int(p.run_info.get("task", {}).get("n_outputs") or len(p.sdata.classes)))
        groups: dict[Any, list] = {}
        for s, f in p.todo:
            groups.setdefault(s if b else (s, f.index), []).append((s, f))
        key = _data_key(p)
        for jobs in groups.values():
            units.append(Unit(p.key, key, p.features_dir, p.encoders, p.spec.to_dict(), jobs, b))
    # Units of the same encoder combination next to each other: a worker keeps one combination loaded.
    units.sort(key=lambda u: str(u.data_key))
    return units


def _data_key(p: PreparedRun) -> tuple:
    return (p.features_dir, tuple(p.encoders), str(p.spec.inputs.layer), bool(p.spec.inputs.use_frames))


def run_prepared(runs: Sequence[PreparedRun], *, batched: bool | None = None, workers: int | None = None,
              engine: str = "local", address: str | None = None, progress: Any = None,
              data: dict | None = None, on_run_done: Callable[[PreparedRun], None] | None = None) -> None:
    """Train every missing seed/fold of ``runs`` and write them into their RUN_DIRs.

    ``workers``: local worker processes (None/0 = every usable core; 1 = in this process).
    ``data``: {encoders tuple: (SERData, meta rows, metas)} already in memory (else read from each
    run's features_dir). ``on_run_done(prepared)`` is called when a prepared run has all its seed/folds."""
    check_engine(engine)
    units = make_units(runs, batched)
    by_key = {p.key: p for p in runs}
    remaining = {p.key: len(p.todo) for p in runs}
    tasks: dict[str, Any] = {}
    if progress is not None:
        for p in runs:
            if p.todo:
                tasks[p.key] = progress.add_task(f"{p.model} ({'+'.join(p.encoders)})",
                                                 total=len(p.todo) * p.spec.optimisation.epochs, rate="")

    def deliver(unit: Unit, results: list[dict], logged: bool = False) -> None:
        prepared = by_key[unit.run_key]
        for r in results:
            write_fold_result(prepared, r, logged=logged)
            if unit.run_key in tasks:
                progress.update(tasks[unit.run_key], rate=f"seed {r['seed']} fold {r['fold']} done")
        remaining[unit.run_key] -= len(results)
        if progress is not None and unit.run_key in tasks and not workers_inline:
            progress.advance(tasks[unit.run_key], len(results) * prepared.spec.optimisation.epochs)
        if remaining[unit.run_key] == 0 and on_run_done is not None:
            on_run_done(prepared)

    for p in runs:  # nothing to train: finished already
        if not p.todo and on_run_done is not None:
            on_run_done(p)
    if not units:
        return
    if workers:
        n_workers = int(workers)
    else:
        # Automatic: every core, unless the work is too small to pay for starting worker processes
        # (a spawned worker imports torch: seconds on a busy machine, more than a tiny grid trains).
        work = sum(len(u.jobs) * len(by_key[u.run_key].sdata) * by_key[u.run_key].spec.optimisation.epochs for u in units)
        n_workers = usable_cores() if work >= MIN_PARALLEL_WORK else 1
    n_workers = max(1, min(n_workers, len(units)))
    workers_inline = engine == "local" and n_workers == 1
    mem = data or {}
    if workers_inline:
        _run_inline(units, by_key, mem, progress, tasks, deliver)
    elif engine == "local":
        _run_processes(units, by_key, mem, n_workers, deliver)
    else:
        _run_ray(units, by_key, mem, address, deliver)


def _threads_for(execution: Execution, n_parallel: int) -> int:
    if execution.num_threads:
        return int(execution.num_threads)
    return max(1, usable_cores() // max(1, n_parallel))


# --- in this process -------------------------------------------------------------------------------

def _load(unit: Unit, spec: RunSpec, mem: dict):
    if unit.data_key in mem:
        return mem[unit.data_key]
    if tuple(unit.encoders) in mem:
        return mem[tuple(unit.encoders)]
    if unit.features_dir is None:
        raise ConfigError("no features: give a features directory or the data")
    from parrot_ser.training.data import load_features

    return load_features(unit.features_dir, spec)


def _run_inline(units, by_key, mem, progress, tasks, deliver) -> None:
    cache: dict = {}
    for u in units:
        prepared = by_key[u.run_key]
        if u.data_key not in cache:
            cache = {u.data_key: _load(u, prepared.spec, mem)}  # one encoder combination in memory
        sdata = cache[u.data_key][0]
        task = tasks.get(u.run_key)
        counted: dict = {}
        # Per-epoch CSV / TensorBoard written live here (a long run can be watched); units that run
        # elsewhere get theirs written by the driver from the returned history.
        logs = {(s, f.index): EpochLog(prepared.out, f"seed{s}_fold{f.index}", lr=prepared.spec.optimisation.lr) for s, f in u.jobs}

        def on_epoch(s, k, epoch, rec, _task=task, _counted=counted, _logs=logs):
            _logs[(s, k)](epoch, rec)
            if _task is not None:
                extra = f"seed {s} fold {k} ep {epoch}"
                if rec.get("val_macro_f1") is not None:
                    extra += f" valF1 {rec['val_macro_f1']:.1f}"
                if rec.get("val_ccc") is not None:
                    extra += f" valCCC {rec['val_ccc']:.3f}"
                progress.update(_task, advance=1, rate=extra)
                _counted[(s, k)] = _counted.get((s, k), 0) + 1

        try:
            results = train_folds(sdata, prepared.spec, u.jobs, batched=u.batched, on_epoch=on_epoch)
        finally:
            for lg in logs.values():
                lg.close()
        if task is not None:  # early-stopped epochs count as done
            progress.advance(task, sum(prepared.spec.optimisation.epochs - counted.get((s, f.index), 0) for s, f in u.jobs))
        deliver(u, results, logged=True)


# --- local worker processes ------------------------------------------------------------------------

_WORKER_CACHE: dict = {}


def _worker_init(threads: int, driver_pid: int) -> None:
    import torch

    torch.set_num_threads(int(threads))
    _exit_with_parent(driver_pid)


def _worker_run(unit: Unit, threads: int, data: Any = None) -> list[dict]:
    spec = unit.run_spec(threads)
    if data is None:
        if unit.data_key not in _WORKER_CACHE:
            _WORKER_CACHE.clear()  # one encoder combination per worker at a time
            _WORKER_CACHE[unit.data_key] = _load(unit, spec, {})
        data = _WORKER_CACHE[unit.data_key]
    return train_folds(data[0], spec, unit.jobs, batched=unit.batched)


def _run_processes(units, by_key, mem, n_workers, deliver) -> None:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = _threads_for(by_key[units[0].run_key].spec.execution, n_workers)
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(threads, os.getpid())) as pool:
        pending = {}
        for u in units:
            # In-memory data (no store to read) travels with the unit; otherwise workers read the store.
            payload = _load(u, by_key[u.run_key].spec, mem) if u.features_dir is None else None
            pending[pool.submit(_worker_run, u, threads, payload)] = u
        try:
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for f in done:
                    deliver(pending.pop(f), f.result())
        except BaseException:
            for f in pending:
                f.cancel()
            raise


# --- Ray -----------------------------------------------------------------------------------------

def _ray_run(unit: Unit, threads: int, data: Any) -> list[dict]:
    import torch

    torch.set_num_threads(int(threads))
    return train_folds(data[0], unit.run_spec(threads), unit.jobs, batched=unit.batched)


def _run_ray(units, by_key, mem, address, deliver) -> None:
    ray = ray_init(address)
    cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
    ex0 = by_key[units[0].run_key].spec.execution
    threads = _threads_for(ex0, min(len(units), cluster_cpus))
    threads = max(1, min(threads, cluster_cpus))
    gpus = 0.25 if str(ex0.device).startswith("cuda") else 0  # small heads: four units share one GPU
    task = ray.remote(_ray_run)
    refs: dict = {}
    pending = {}
    for u in units:
        if u.data_key not in refs:
            refs[u.data_key] = ray.put(_load(u, by_key[u.run_key].spec, mem))
        pending[task.options(num_cpus=threads, num_gpus=gpus).remote(u, threads, refs[u.data_key])] = u
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for r in done:
                deliver(pending.pop(r), ray.get(r))
    except BaseException:
        for r in pending:
            ray.cancel(r)
        raise


def execution_summary(runs: Sequence[PreparedRun], batched: bool | None) -> dict:
    """What would run: counts of units and seed/folds (for logs and tests)."""
    units = make_units(runs, batched)
    return {"units": len(units), "runs": sum(len(u.jobs) for u in units),
            "batched_units": sum(1 for u in units if u.batched)}


__all__ = ["ENGINES", "Unit", "make_units", "execution_summary", "ray_init", "resolve_batched", "run_prepared",
           "usable_cores"]
