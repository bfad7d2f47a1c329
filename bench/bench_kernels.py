"""Each of issue 10's training kernels against the torch piece it replaces, at the paper-size head's
shapes (batch 32, SSAM-base's 3840 pooled dims), torch's default threads, best of N, in one process:

- ReLU + MaxPool1d(2), forward + backward on 32 x 64 x 3838 (layers.relu_max2)
- Adam on the 17.8M parameters of the paper-size `parrot`: torch.optim.Adam's default CPU path
  against trainer.make_adam (fused)
- dropout 0.3, forward + backward on 32 x 9984 (layers.Dropout against nn.Dropout)
- one paper-size `parrot` training step with glibc's default allocator, then after
  device.keep_freed_memory (measured in that order: the setting cannot be undone)
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from common import best_time, log, record


def _pool(repeats: int) -> tuple[float, float]:
    from parrot_ser.fusion.layers import relu_max2

    x = torch.randn(32, 64, 3838, requires_grad=True)
    g = torch.randn(32, 64, 1919)
    pool = nn.MaxPool1d(2)
    ref = best_time(lambda: pool(torch.relu(x)).backward(g), repeats)
    new = best_time(lambda: relu_max2(x).backward(g), repeats)
    return ref, new


def _adam(repeats: int) -> tuple[float, float]:
    from parrot_ser.fusion import build_model
    from parrot_ser.training.spec import RunSpec
    from parrot_ser.training.trainer import make_adam

    times = []
    for make in (lambda p: torch.optim.Adam(p, lr=1e-3), lambda p: make_adam(p, RunSpec.build("parrot"))):
        params = list(build_model("parrot", [3840, 768], 6).parameters())
        for p in params:
            p.grad = torch.randn_like(p)
        opt = make(params)
        times.append(best_time(opt.step, repeats))
    return times[0], times[1]


def _dropout(repeats: int) -> tuple[float, float]:
    from parrot_ser.fusion.layers import Dropout

    x = torch.randn(32, 9984, requires_grad=True)
    g = torch.randn(32, 9984)
    ref_mod, new_mod = nn.Dropout(0.3).train(), Dropout(0.3).train()
    return (best_time(lambda: ref_mod(x).backward(g), repeats),
            best_time(lambda: new_mod(x).backward(g), repeats))


def _allocator(repeats: int) -> tuple[float, float]:
    """One paper-size parrot training step (fused Adam) with glibc's default allocator, then after
    keep_freed_memory in the same process (in that order: the setting cannot be undone)."""
    from parrot_ser.device import keep_freed_memory
    from parrot_ser.fusion import FusionInput, build_model
    from parrot_ser.training.spec import RunSpec
    from parrot_ser.training.trainer import make_adam

    torch.manual_seed(0)
    model = build_model("parrot", [3840, 768], 6)
    opt = make_adam(model.parameters(), RunSpec.build("parrot"))
    inp = FusionInput([torch.randn(32, 3840), torch.randn(32, 768)])
    y = torch.randint(0, 6, (32,))

    def step() -> None:
        loss = nn.functional.cross_entropy(model(inp), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    ref = best_time(step, repeats)
    if not keep_freed_memory():
        return ref, float("nan")
    return ref, best_time(step, repeats)


CASES = [("ReLU + MaxPool1d(2), 32 x 64 x 3838, fwd + bwd", _pool),
         ("Adam step, paper-size parrot (17.8M params)", _adam),
         ("dropout 0.3, 32 x 9984, fwd + bwd", _dropout),
         ("paper-size parrot training step, freed memory kept", _allocator)]


def run(quick: bool = False) -> Iterable[dict]:
    repeats = 3 if quick else 10
    log(f"torch threads {torch.get_num_threads()}, best of {repeats}")
    for what, fn in CASES:
        ref, new = fn(repeats)
        log(f"{what:<55} torch {ref * 1e3:7.1f} ms   ours {new * 1e3:7.1f} ms   {ref / new:5.2f}x")
        yield record(f"{what}: ours", new, "s", baseline="the torch piece it replaces", baseline_value=ref)
