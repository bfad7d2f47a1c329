"""Training throughput of `parrot` and `parrot-token` on CREMA-D-sized synthetic features.

7442 utterances, pooled features of 3840 (SSAM base) + 768 (HuBERT base) dims, 6 classes,
batch 32, Adam, paper defaults (the paper's 14.7M-parameter flatten -> Linear per Mamba branch).
Reports seconds per epoch (forward + backward + Adam), achieved GFLOP/s (matmul/conv FLOPs of
one step counted by torch.utils.flop_counter.FlopCounterMode, Adam's element-wise work not
counted) against the machine's dense matmul throughput (common.matmul_gflops), and the share of
the step time spent inside Sinkhorn. Quick mode times 12 steps of an epoch and extrapolates
(the metric name says so); the full mode times 60 steps and extrapolates too.

Two kinds of variant, each in processes of its own:
- one process at torch's default threads (reference kernels, fp32, bf16): one model's step time,
  what a single fold trained alone sees;
- "workers" (fp32, bf16): one process per core with one thread each, started together and timed
  over the same stretch (a barrier after warm-up), each training its own model. This is how the
  default `train` / `grid` run a CREMA-D-sized job: folds are independent work, one per worker
  (execute.py). Its "effective seconds per epoch" is the wall time of the stretch divided by the
  model-epochs the workers finished together: the time a 5-fold run takes per epoch and fold.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

import torch
from torch.utils.flop_counter import FlopCounterMode

import parrot_ser.fusion.registry as registry_mod
from common import (
    barrier,
    concurrent_lines,
    log,
    matmul_gflops,
    memory_gbps,
    print_lines,
    record,
    variant_lines,
)
from parrot_ser.fusion import FusionInput, build_model
from parrot_ser.training.execute import usable_cores

N_UTT, DIMS, N_CLASSES, BATCH = 7442, [3840, 768], 6, 32


class _SinkhornTimer:
    """Wraps the sinkhorn the models call, summing its wall time."""

    def __init__(self):
        self.seconds = 0.0
        self._orig = registry_mod.sinkhorn

    def __enter__(self):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            out = self._orig(*args, **kwargs)
            self.seconds += time.perf_counter() - t0
            return out

        registry_mod.sinkhorn = timed
        return self

    def __exit__(self, *exc):
        registry_mod.sinkhorn = self._orig


def step_flops(model, inp: FusionInput, y: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        loss = torch.nn.functional.cross_entropy(model(inp), y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


VARIANTS = {"reference": {"PARROT_REFERENCE_KERNELS": "1"}, "fp32": {}, "bf16": {}}
WORKER_VARIANTS = ("fp32", "bf16")  # also run as one process per core (see the module doc)


def _measure(variant: str, quick: bool, worker: tuple[int, str, int] | None = None) -> Iterable[dict]:
    """One variant in this process: log lines on stderr, records as dicts. ``worker``: (index,
    barrier dir, copies) when this process is one of concurrent_lines' copies."""
    from parrot_ser.device import keep_freed_memory
    from parrot_ser.training.config import TrainConfig
    from parrot_ser.training.spec import RunSpec
    from parrot_ser.training.trainer import make_adam

    keep_freed_memory()  # what fit_model does (a no-op for the reference variant)
    cfg = RunSpec.build("parrot", TrainConfig(precision="bf16" if variant == "bf16" else "fp32"))
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(N_UTT, d, generator=g) for d in DIMS]
    labels = torch.randint(0, N_CLASSES, (N_UTT,), generator=g)
    steps_per_epoch = -(-N_UTT // BATCH)
    # A full epoch of two 18M-parameter models takes many minutes on a 2-core CPU and every step
    # has the same shapes, so both modes time a fixed number of steps and extrapolate (labelled).
    n_steps = 12 if quick else 60
    if worker is None:
        peak = matmul_gflops()
        bw = memory_gbps()
        log(f"machine dense matmul: {peak:.1f} GFLOP/s, memory copy bandwidth {bw:.1f} GB/s "
            f"(torch threads {torch.get_num_threads()}); ridge point {peak / bw:.1f} FLOP/byte")
    for name in ("parrot",) if quick else ("parrot", "parrot-token"):
        torch.manual_seed(worker[0] if worker else 0)  # each worker its own model (same shapes)
        model = build_model(name, DIMS, N_CLASSES)
        opt = make_adam(model.parameters(), cfg)  # fused unless reference
        n_params = sum(p.numel() for p in model.parameters())
        perm = torch.randperm(N_UTT, generator=g)
        batches = [perm[i:i + BATCH] for i in range(0, N_UTT, BATCH)][:n_steps]

        def step(idx: torch.Tensor, model=model, opt=opt) -> None:
            inp = FusionInput([f[idx] for f in feats])
            with cfg.forward_context():
                logits = model(inp)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        flops = step_flops(model, FusionInput([f[batches[0]] for f in feats]), labels[batches[0]])
        step(batches[0])  # warm-up (allocations, Adam state)
        if worker is not None:
            index, sync, copies = worker
            barrier(sync, index, copies, name=name)
            t0 = time.perf_counter()
            for idx in batches:
                step(idx)
            yield {"model": name, "variant": variant, "elapsed": time.perf_counter() - t0, "steps": len(batches),
                   "flops": flops, "steps_per_epoch": steps_per_epoch, "threads": torch.get_num_threads()}
            continue
        timer = _SinkhornTimer()
        with timer:
            t0 = time.perf_counter()
            for idx in batches:
                step(idx)
            elapsed = time.perf_counter() - t0
        per_step = elapsed / len(batches)
        epoch = per_step * steps_per_epoch
        gflops = flops / per_step / 1e9
        # Roofline: bytes a step must move at least = parameter traffic (forward and backward read the
        # weights, backward writes the gradients, Adam reads param/grad/m/v and writes param/m/v:
        # 10 float32 passes = 40 bytes per parameter); activations come on top, so this is a floor.
        step_bytes = 40 * n_params
        gbps = step_bytes / per_step / 1e9
        intensity = flops / step_bytes
        bound = "compute" if intensity > peak / bw else "memory"
        log(f"[{variant}] {name:<13} roofline: >= {step_bytes / 1e6:.0f} MB/step -> {gbps:.1f} GB/s of {bw:.1f}; "
            f"intensity <= {intensity:.1f} FLOP/byte vs ridge {peak / bw:.1f}: {bound}-bound side; "
            f"attainable {min(peak, intensity * bw):.0f} GFLOP/s, achieved {gflops:.1f}")
        share = 100.0 * timer.seconds / elapsed
        stats = model.last_transport["stats"] if model.last_transport else {}
        label = f" (extrapolated from {len(batches)} of {steps_per_epoch} steps)"
        log(f"[{variant}] {name:<13} {n_params / 1e6:5.1f}M params  {per_step * 1e3:7.1f} ms/step  "
            f"{epoch:7.1f} s/epoch{label}  {gflops:6.1f} GFLOP/s ({100 * gflops / peak:4.1f}% of matmul)  "
            f"Sinkhorn {share:4.1f}% of the time  plan eff. partners {stats.get('eff_partners', float('nan')):.1f}"
            f" of {stats.get('m', 0)}")
        yield {"model": name, "variant": variant, "epoch": epoch, "label": label, "gflops": gflops, "peak": peak,
               "share": share, "gbps": gbps, "bw": bw}
    if variant == "fp32" and worker is None:
        yield from _batched_vs_single(feats, labels, n_steps=2 if quick else 5)


def run(quick: bool = False) -> Iterable[dict]:
    results: dict[tuple[str, str], dict] = {}
    flag = ["--quick"] if quick else []
    for variant, env in VARIANTS.items():
        for rec in variant_lines(__file__, env, variant, *flag):
            if "metric" in rec:  # a finished record (the batched comparison)
                yield rec
            else:
                results[(rec["model"], variant)] = rec
    n = usable_cores()
    for variant in WORKER_VARIANTS:
        copies = concurrent_lines(__file__, VARIANTS[variant], n, variant, *flag)
        for recs in zip(*copies):  # one record per model, from every copy
            wall = max(r["elapsed"] for r in recs)
            done = sum(r["steps"] for r in recs)
            epoch = wall / done * recs[0]["steps_per_epoch"]
            gflops = recs[0]["flops"] * done / wall / 1e9
            name = recs[0]["model"]
            label = (f" (effective: wall time / model-epochs of {n} concurrent workers x {recs[0]['threads']} "
                     f"thread(s), extrapolated from {recs[0]['steps']} steps each)")
            log(f"[{variant} x {n} workers] {name:<13} {n} processes x {recs[0]['threads']} thread(s): "
                f"{wall / recs[0]['steps'] * 1e3:7.1f} ms per step each, effective {epoch:7.1f} s per model-epoch"
                f"{label}  {gflops:6.1f} GFLOP/s together")
            results[(name, f"{variant}, {n} workers")] = {
                "epoch": epoch, "label": label, "gflops": gflops,
                "peak": results[(name, variant)]["peak"], "share": None}
    for (name, variant), m in results.items():
        yield record(f"{name} [{variant}] seconds per epoch{m['label']}", m["epoch"], "s")
        yield record(f"{name} [{variant}] achieved GFLOP/s", m["gflops"], "GFLOP/s",
                     baseline="dense matmul (common.matmul_gflops)", baseline_value=m["peak"],
                     ratio=m["gflops"] / m["peak"])
        if m["share"] is not None:
            yield record(f"{name} [{variant}] share of step time in Sinkhorn", m["share"], "%")
        if variant != "reference" and (name, "reference") in results:
            ref = results[(name, "reference")]["epoch"]
            log(f"{name:<13} {variant}: {m['epoch']:.1f} s/epoch vs reference {ref:.1f} s/epoch in this run: "
                f"{ref / m['epoch']:.2f}x")
            yield record(f"{name} [{variant}] seconds per epoch vs the reference kernels (this run)", m["epoch"], "s",
                         baseline="reference kernels, same run", baseline_value=ref)
        before = 89.3 if name == "parrot" else 124.2
        yield record(f"{name} [{variant}] seconds per epoch vs the {before} s measured before issue 10 (docs)",
                     m["epoch"], "s", baseline="docs/benchmarks.md, earlier run (not this run)", baseline_value=before)


def _batched_vs_single(feats, labels, n_steps: int, n_models: int = 4) -> Iterable[dict]:
    """Paper-size parrot: one step of ``n_models`` stacked models (torch.func.vmap, what --batched
    does) against ``n_models`` single-model steps, same batches. Per model-step time ratio."""
    import copy

    from torch.func import functional_call, stack_module_state, vmap

    from parrot_ser.training.batched import _StackedAdam
    from parrot_ser.training.spec import RunSpec
    from parrot_ser.training.trainer import make_adam

    torch.manual_seed(0)
    ms = [build_model("parrot", DIMS, N_CLASSES) for _ in range(n_models)]
    for m in ms:
        m.cfg.track_transport = False
    params, bufs = stack_module_state(ms)
    base = copy.deepcopy(ms[0]).to("meta")
    base.vmap_safe = True
    vf = vmap(lambda p, b, *xs: functional_call(base, (p, b), (FusionInput(list(xs)),)), randomness="different")
    sopt = _StackedAdam(params, n_models, RunSpec.build("parrot"))
    opts = [make_adam(m.parameters(), RunSpec.build("parrot")) for m in ms]
    idx = torch.arange(BATCH)
    xs = [f[idx].expand(n_models, -1, -1).contiguous() for f in feats]
    y = labels[idx].expand(n_models, -1).reshape(-1)

    def batched():
        loss = torch.nn.functional.cross_entropy(vf(params, bufs, *xs).reshape(-1, N_CLASSES), y) * n_models
        for p in params.values():
            p.grad = None
        loss.backward()
        sopt.step(torch.ones(n_models, dtype=torch.bool))

    def single():
        for m, o in zip(ms, opts):
            loss = torch.nn.functional.cross_entropy(m(FusionInput([f[idx] for f in feats])), labels[idx])
            o.zero_grad(set_to_none=True)
            loss.backward()
            o.step()

    times = {"batched": float("inf"), "single": float("inf")}
    for fn in (batched, single):
        fn()  # warm-up
    for _ in range(n_steps):  # interleaved, best of n
        for name, fn in (("batched", batched), ("single", single)):
            t0 = time.perf_counter()
            fn()
            times[name] = min(times[name], time.perf_counter() - t0)
    log(f"parrot paper size, {n_models} models: stacked step {times['batched'] * 1e3:.0f} ms vs {n_models} single "
        f"steps {times['single'] * 1e3:.0f} ms")
    yield record(f"parrot paper size: {n_models} stacked models (vmap) per step", times["batched"], "s",
                 baseline=f"{n_models} single-model steps", baseline_value=times["single"])


if __name__ == "__main__":  # one variant, as a subprocess of run(): JSON lines on stdout
    rest = [a for a in sys.argv[2:] if a != "--quick"]  # concurrent_lines adds: index, barrier dir, copies
    print_lines(_measure(sys.argv[1], "--quick" in sys.argv,
                         (int(rest[0]), rest[1], int(rest[2])) if rest else None))
