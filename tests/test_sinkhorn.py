"""Our batched log-domain Sinkhorn against POT, masks, float32 stability, gradients, diagnostics."""

from __future__ import annotations

import importlib
import math

import numpy as np
import ot
import pytest
import torch

from parrot_ser.errors import ConfigError
from parrot_ser.fusion.sinkhorn import plan_stats, sinkhorn

# The module (the package re-exports a function of the same name).
_sk = importlib.import_module("parrot_ser.fusion.sinkhorn")


def _pot(cost: np.ndarray, a: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    return ot.bregman.sinkhorn_log(a, b, cost, eps, numItermax=5000, stopThr=1e-13)


@pytest.mark.parametrize("domain", ["log", "scaling"])
@pytest.mark.parametrize("eps", [0.05, 0.2])
def test_matches_pot_float64_with_marginals(eps, domain):
    g = torch.Generator().manual_seed(0)
    bsz, n, m = 4, 9, 13
    cost = torch.rand(bsz, n, m, generator=g, dtype=torch.float64)
    a = torch.rand(bsz, n, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(bsz, m, generator=g, dtype=torch.float64) + 0.1
    a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    plan = sinkhorn(cost, a=a, b=b, eps=eps, n_iters=5000, tol=1e-13, normalize_cost=None, domain=domain)
    assert plan.dtype == torch.float64 and plan.shape == (bsz, n, m)
    for i in range(bsz):
        ref = _pot(cost[i].numpy(), a[i].numpy(), b[i].numpy(), eps)
        np.testing.assert_allclose(plan[i].numpy(), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(plan.sum(2), a, atol=1e-9, rtol=0)
    torch.testing.assert_close(plan.sum(1), b, atol=1e-9, rtol=0)


def test_max_normalisation_matches_pot_on_scaled_cost():
    g = torch.Generator().manual_seed(1)
    cost = 7.0 * torch.rand(3, 6, 5, generator=g, dtype=torch.float64)
    plan = sinkhorn(cost, eps=0.1, n_iters=3000, tol=1e-13)
    for i in range(3):
        c = cost[i].numpy()
        ref = _pot(c / c.max(), np.full(6, 1 / 6), np.full(5, 1 / 5), 0.1)
        np.testing.assert_allclose(plan[i].numpy(), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("domain", ["log", "scaling"])
def test_masked_problem_equals_cropped_problem(domain):
    g = torch.Generator().manual_seed(2)
    cost = torch.rand(2, 8, 10, generator=g, dtype=torch.float64)
    cost[0, 5:] = float("nan")  # padding may hold garbage; it must not leak into the plan
    mask_a = torch.ones(2, 8, dtype=torch.bool)
    mask_b = torch.ones(2, 10, dtype=torch.bool)
    mask_a[0, 5:] = False
    mask_b[0, 7:] = False
    mask_b[1, :2] = False
    plan = sinkhorn(cost, mask_a=mask_a, mask_b=mask_b, eps=0.05, n_iters=200, domain=domain)
    assert torch.isfinite(plan).all()
    crop0 = sinkhorn(cost[:1, :5, :7], eps=0.05, n_iters=200, domain=domain)
    crop1 = sinkhorn(cost[1:, :, 2:], eps=0.05, n_iters=200, domain=domain)
    torch.testing.assert_close(plan[0, :5, :7], crop0[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(plan[1, :, 2:], crop1[0], atol=1e-12, rtol=0)
    assert plan[0, 5:].abs().max() == 0 and plan[0, :, 7:].abs().max() == 0 and plan[1, :, :2].abs().max() == 0


@pytest.mark.parametrize("domain", ["log", "scaling"])
def test_fully_masked_problem_gives_zero_plan_and_finite_gradient(domain):
    cost = torch.rand(2, 4, 3, dtype=torch.float64, requires_grad=True)
    mask_a = torch.ones(2, 4, dtype=torch.bool)
    mask_a[1] = False
    plan = sinkhorn(cost, mask_a=mask_a, eps=0.1, n_iters=20, domain=domain)
    (plan * torch.rand_like(plan)).sum().backward()
    assert plan[1].abs().max() == 0
    assert torch.isfinite(cost.grad).all()


def test_float32_small_eps_stays_finite():
    g = torch.Generator().manual_seed(3)
    cost = 100.0 * torch.rand(4, 30, 40, generator=g)
    plan, iters = sinkhorn(cost, eps=1e-3, n_iters=300, return_iters=True)  # auto -> log domain here
    assert iters == 300
    assert plan.dtype == torch.float32
    assert torch.isfinite(plan).all()
    # column marginals are exact after each v-update; rows close to uniform
    torch.testing.assert_close(plan.sum(1), torch.full((4, 40), 1 / 40), atol=1e-5, rtol=0)
    assert (plan.sum(2) - 1 / 30).abs().sum(1).max() < 0.2
    # small eps -> nearly a permutation-like plan: few partners per row
    assert plan_stats(plan)["eff_partners"] < 3


@pytest.mark.parametrize("domain", ["log", "scaling"])
def test_grad_stop_vs_plan(domain):
    cost = torch.rand(2, 5, 6, requires_grad=True)
    stopped = sinkhorn(cost, grad="stop", n_iters=10, domain=domain)
    assert not stopped.requires_grad
    live = sinkhorn(cost, grad="plan", n_iters=10, domain=domain)
    assert live.requires_grad
    (live * torch.arange(30.0).reshape(5, 6)).sum().backward()
    assert torch.isfinite(cost.grad).all() and cost.grad.abs().sum() > 0
    torch.testing.assert_close(stopped, live.detach())


def test_log_and_scaling_domains_agree_and_auto_picks_log_for_tiny_eps():
    g = torch.Generator().manual_seed(4)
    cost = torch.rand(3, 12, 9, generator=g)
    mask_b = torch.ones(3, 9, dtype=torch.bool)
    mask_b[0, 6:] = False
    p_log = sinkhorn(cost, mask_b=mask_b, eps=0.05, n_iters=30, domain="log")
    p_sc = sinkhorn(cost, mask_b=mask_b, eps=0.05, n_iters=30, domain="scaling")
    torch.testing.assert_close(p_log, p_sc, atol=1e-6, rtol=1e-4)
    # eps=1e-3 on a max-normalised cost: exp(-1000) underflows float32, so the scaling domain breaks
    # down (plan not finite or marginals lost) while auto (-> log) stays exact on the columns.
    p_auto = sinkhorn(cost, eps=1e-3, n_iters=50)
    torch.testing.assert_close(p_auto.sum(1), torch.full((3, 9), 1 / 9), atol=1e-5, rtol=0)
    p_bad = sinkhorn(cost, eps=1e-3, n_iters=50, domain="scaling")
    assert not torch.isfinite(p_bad).all() or (p_bad.sum(1) - 1 / 9).abs().max() > 1e-3


def test_early_stop_reaches_tol_in_fewer_iterations():
    cost = torch.rand(3, 10, 12, dtype=torch.float64)
    plan, iters = sinkhorn(cost, eps=0.3, n_iters=1000, tol=1e-8, check_every=5, return_iters=True)
    assert iters < 1000 and iters % 5 == 0
    assert (plan.sum(2) - 1 / 10).abs().sum(1).max() < 1e-8


def test_plan_stats_extremes():
    ident = torch.eye(4)[None] / 4
    s = plan_stats(ident)
    assert s["eff_partners"] == pytest.approx(1.0)
    assert s["marginal_err_a"] == pytest.approx(0.0, abs=1e-12)
    uniform = torch.full((2, 4, 8), 1 / 32)
    s = plan_stats(uniform)
    assert s["eff_partners"] == pytest.approx(8.0)
    assert s["eff_partners_frac"] == pytest.approx(1.0)
    assert s["entropy"] == pytest.approx(math.log(32))
    skewed = uniform.clone()
    skewed[:, 0] *= 2
    assert plan_stats(skewed)["marginal_err_a"] > 0.1


def test_bad_arguments_are_typed_errors():
    with pytest.raises(ConfigError, match="cost must be"):
        sinkhorn(torch.rand(4, 4))
    with pytest.raises(ConfigError, match="grad"):
        sinkhorn(torch.rand(1, 4, 4), grad="nope")
    with pytest.raises(ConfigError, match="mask_a"):
        sinkhorn(torch.rand(1, 4, 4), mask_a=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ConfigError, match="eps"):
        sinkhorn(torch.rand(1, 4, 4), eps=0)


def _blocks_of(monkeypatch, problems: int, n: int, m: int, dtype: torch.dtype) -> None:
    """Make the CPU scaling solver split a batch into blocks of `problems` problems."""
    monkeypatch.setattr(_sk, "_BLOCK_BYTES", problems * n * m * torch.finfo(dtype).bits // 8)
    assert _sk._block_size(99, n, m, dtype, torch.device("cpu")) == problems


@pytest.mark.parametrize("tol", [None, 1e-11])
def test_cache_blocks_give_the_same_plans_as_one_block(monkeypatch, tol):
    g = torch.Generator().manual_seed(5)
    bsz, n, m = 5, 7, 9
    cost = torch.rand(bsz, n, m, generator=g, dtype=torch.float64)
    mask_a = torch.ones(bsz, n, dtype=torch.bool)
    mask_a[3, 4:] = False
    kw = dict(mask_a=mask_a, eps=0.1, n_iters=400, tol=tol, normalize_cost=None, domain="scaling",
              return_iters=True)
    _blocks_of(monkeypatch, bsz, n, m, torch.float64)
    whole, it_whole = sinkhorn(cost, **kw)
    _blocks_of(monkeypatch, 2, n, m, torch.float64)  # blocks of 2, 2, 1
    blocked, it_blocked = sinkhorn(cost, **kw)
    torch.testing.assert_close(blocked, whole, atol=1e-15, rtol=0)
    assert it_blocked == it_whole
    for i in (0, 4):  # against POT, in the first and the last block
        ref = _pot(cost[i].numpy(), np.full(n, 1 / n), np.full(m, 1 / m), 0.1)
        np.testing.assert_allclose(blocked[i].numpy(), ref, atol=1e-6, rtol=0)


def test_cache_blocks_backpropagate_like_one_block(monkeypatch):
    g = torch.Generator().manual_seed(6)
    cost = torch.rand(3, 4, 6, generator=g, dtype=torch.float64)
    weights = torch.rand(3, 4, 6, generator=g, dtype=torch.float64)
    grads = []
    for per_block in (3, 1):
        _blocks_of(monkeypatch, per_block, 4, 6, torch.float64)
        c = cost.clone().requires_grad_(True)
        (sinkhorn(c, eps=0.2, n_iters=30, domain="scaling") * weights).sum().backward()
        grads.append(c.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-12, rtol=0)


@pytest.mark.parametrize("domain", ["log", "scaling"])
def test_early_stop_is_per_problem_and_batch_independent(domain):
    # Problem 0 has a nearly flat cost (converges in a few iterations), problem 1 a steep one (slow):
    # with tol each stops at its own first converged check, so solving it alone gives the same plan.
    g = torch.Generator().manual_seed(7)
    cost = torch.rand(2, 8, 11, generator=g, dtype=torch.float64)
    cost[0] *= 0.05
    kw = dict(eps=0.05, n_iters=2000, tol=1e-10, check_every=1, normalize_cost=None, domain=domain,
              return_iters=True)
    both, it_both = sinkhorn(cost, **kw)
    alone0, it0 = sinkhorn(cost[:1], **kw)
    alone1, it1 = sinkhorn(cost[1:], **kw)
    assert it0 < it1 == it_both  # the reported count is the slowest problem's
    torch.testing.assert_close(both[0], alone0[0], atol=1e-15, rtol=0)
    torch.testing.assert_close(both[1], alone1[0], atol=1e-15, rtol=0)
    rows = both.sum(2) - 1 / 8
    assert rows.abs().sum(1).max() < 1e-10


def test_fixed_iterations_ignore_convergence():
    # Without tol (the models' setting) every problem runs exactly n_iters: no batch-dependent stop.
    cost = torch.rand(2, 5, 5, dtype=torch.float64)
    cost[0] = 0.0  # converged after one iteration
    for domain in ("log", "scaling"):
        plan, iters = sinkhorn(cost, eps=0.1, n_iters=37, domain=domain, return_iters=True)
        assert iters == 37
        torch.testing.assert_close(plan[0], torch.full((5, 5), 1 / 25, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(0, 3, 4), (2, 0, 4), (2, 3, 0)])
def test_empty_batch_or_side_gives_empty_plan(shape):
    for domain in ("log", "scaling"):
        plan, iters = sinkhorn(torch.rand(*shape), domain=domain, tol=1e-6, return_iters=True)
        assert plan.shape == shape and iters <= 50
