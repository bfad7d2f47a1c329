"""Batched, masked Sinkhorn (entropic optimal transport) in torch, log or scaling domain.

Hand-written on purpose: POT's solvers take one (n, m) problem at a time (a Python loop over a
mini-batch), have no notion of padded points (ragged frame sequences), and their stopping rules
are not ours (fixed iteration count for reproducible, batch-independent results; optional
early stop on the marginal error, per problem). Everything here is logsumexp calls or batched
mat-vecs on (B, n, m) tensors, so it runs on any device and autograd can go through it
(``grad="plan"``). docs/fusion.md ("Sinkhorn") has the measurements behind the CPU choices.
"""

from __future__ import annotations

import math

import torch

from parrot_ser.errors import ConfigError

_COST_SCALES = ("max", "mean", None)
_GRADS = ("plan", "stop")


def _neg_big(dtype: torch.dtype) -> float:
    # A large finite negative number instead of -inf for "no mass": exp() underflows to exactly 0,
    # while logsumexp over all-masked entries stays finite, so neither the forward nor the backward
    # pass can produce NaN (-inf - -inf). Divided by 8 so sums of three such terms cannot overflow.
    return torch.finfo(dtype).min / 8


def _check_mask(mask: torch.Tensor | None, shape: tuple[int, int], name: str) -> torch.Tensor | None:
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise ConfigError(f"sinkhorn: {name} must be a bool tensor, got {mask.dtype}")
    if tuple(mask.shape) != shape:
        raise ConfigError(f"sinkhorn: {name} has shape {tuple(mask.shape)}, expected {shape}")
    return mask


def _marginal(w: torch.Tensor | None, mask: torch.Tensor | None, shape: tuple[int, int], name: str,
              like: torch.Tensor) -> torch.Tensor:
    """Weights (B, n): given ones with masked points zeroed, or uniform over the valid points."""
    if w is None:
        if mask is None:
            return torch.full(shape, 1.0 / shape[1], dtype=like.dtype, device=like.device)
        m = mask.to(like.dtype)
        return m / m.sum(-1, keepdim=True).clamp_min(1.0)
    if tuple(w.shape) != shape:
        raise ConfigError(f"sinkhorn: {name} has shape {tuple(w.shape)}, expected {shape}")
    if (w < 0).any():
        raise ConfigError(f"sinkhorn: {name} has negative weights")
    w = w.to(like.dtype)
    return w if mask is None else w * mask.to(like.dtype)


def scale_cost(cost: torch.Tensor, valid: torch.Tensor | None, how: str | None) -> torch.Tensor:
    """Divide each problem's cost by its max (or mean) over valid entries, so eps is scale-free."""
    if how is None:
        return cost
    if how not in _COST_SCALES:
        raise ConfigError(f"sinkhorn: normalize_cost must be one of {_COST_SCALES}, got {how!r}")
    if how == "max":
        c = cost if valid is None else cost.masked_fill(~valid, float("-inf"))
        scale = c.amax(dim=(1, 2), keepdim=True)
    else:
        if valid is None:
            scale = cost.mean(dim=(1, 2), keepdim=True)
        else:
            v = valid.to(cost.dtype)
            scale = (cost * v).sum(dim=(1, 2), keepdim=True) / v.sum(dim=(1, 2), keepdim=True).clamp_min(1.0)
    # A zero cost (e.g. one point on each side, identical points) stays zero instead of NaN.
    scale = torch.nan_to_num(scale, neginf=0.0).clamp_min(torch.finfo(cost.dtype).tiny ** 0.5)
    return cost / scale


def _solve(cost: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor, eps: float, n_iters: int,
           tol: float | None, check_every: int, a: torch.Tensor) -> tuple[torch.Tensor, int]:
    log_k = -cost / eps
    log_u = torch.zeros_like(log_a)
    log_v = torch.zeros_like(log_b)
    # Problems that met tol keep their potentials (frozen), so each problem stops at its own first
    # converged check, as in the scaling solver: the result does not depend on the rest of the batch.
    frozen = None
    it = 0
    for it in range(1, n_iters + 1):
        new_u = log_a - torch.logsumexp(log_k + log_v[:, None, :], dim=2)
        new_v = log_b - torch.logsumexp(log_k + new_u[:, :, None], dim=1)
        if frozen is None:
            log_u, log_v = new_u, new_v
        else:
            log_u = torch.where(frozen[:, None], log_u, new_u)
            log_v = torch.where(frozen[:, None], log_v, new_v)
        # After the v-update the column marginals are exact; the row marginals measure convergence.
        if tol is not None and it % check_every == 0 and it < n_iters:
            with torch.no_grad():
                rows = torch.exp(log_u + torch.logsumexp(log_k + log_v[:, None, :], dim=2))
                done = (rows - a).abs().sum(-1) < tol
                if bool(done.all()):
                    break
                frozen = done if frozen is None else frozen | done
    plan = torch.exp(log_u[:, :, None] + log_k + log_v[:, None, :])
    return plan, it


# Bytes of K per block of problems on CPU: the two mat-vecs per iteration are memory-bound, and a
# block that stays in the per-core L2 cache (2 MiB on the machines we measured, typical for current
# x86) runs its whole iteration loop from cache instead of streaming the batch from L3/RAM twice per
# iteration. Measured per iteration on 32 x 150 x 250 (1 thread): float32 209 us with 8-problem
# blocks (1.2 MB) vs 364 us for one (32, 150, 250) bmm; float64 357 us (4 problems) vs 724 us.
# Smaller blocks lose it again to per-call overhead, larger ones spill out of L2.
_BLOCK_BYTES = 5 << 18  # 1.25 MiB


def _block_size(bsz: int, n: int, m: int, dtype: torch.dtype, device: torch.device) -> int:
    if device.type != "cpu":
        return max(1, bsz)  # GPUs want one big launch, not cache-sized pieces
    per_problem = n * m * torch.finfo(dtype).bits // 8
    return max(1, min(bsz, _BLOCK_BYTES // max(1, per_problem)))


def _scaling_block(cost: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float, n_iters: int,
                   tol: float | None, check_every: int, out: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """Sinkhorn-Knopp on one cache-sized block; each problem stops at its own first converged check.

    Without autograd, K is built inside ``out`` (the block's slice of the returned plan) and scaled
    into the plan in place at the end: no fresh (B, n, m) allocation per block, whose first-touch
    page faults measured several times the cost of the arithmetic on them."""
    k = torch.mul(cost, -1.0 / eps) if out is None else torch.mul(cost, -1.0 / eps, out=out)
    k = k.exp_()
    # Both products as row-vector x matrix, (B, 1, m) @ K^T and (B, 1, n) @ K, with K^T a transposed
    # view (BLAS reads it with its trans flag): measured as fast as a contiguous K^T copy and ~2x
    # faster than the K @ v column form, and no copy to make or to keep in cache.
    kt = k.transpose(1, 2)
    a3, b3 = a[:, None, :], b[:, None, :]
    neg_a = -a3
    u = torch.ones_like(a3)
    v = torch.ones_like(b3)
    # Problems that met tol are frozen: their (u, v) at that check are kept (fu, fv) while the rest of
    # the block iterates on. Not dropped from the block: copying K to compact a cache-sized block
    # measured dearer than the few extra mat-vecs of its converged problems.
    frozen = fu = fv = None
    n_frozen = 0
    stopped = n_iters
    for it in range(1, n_iters + 1):
        kv = torch.bmm(v, kt)
        # The marginal error of the previous iteration's (u, v) needs exactly this K v: checking
        # costs a few ops on (B, 1, n) vectors, no extra pass over K and no plan.
        if tol is not None and it > 1 and (it - 1) % check_every == 0:
            with torch.no_grad():
                conv = torch.addcmul(neg_a, u, kv).abs_().sum(2) < tol  # (B, 1)
                if frozen is not None:
                    conv |= frozen
                n_conv = int(conv.sum())
            if n_conv == conv.shape[0]:
                stopped = it - 1
                break
            if n_conv > n_frozen:
                # Keep the earlier frozen values; everyone else's current (u, v) (only the newly
                # converged ones' will be read).
                if frozen is None:
                    fu, fv = u, v
                else:
                    f3 = frozen[:, :, None]
                    fu, fv = torch.where(f3, fu, u), torch.where(f3, fv, v)
                frozen, n_frozen = conv, n_conv
        u = a3 / kv
        v = b3 / torch.bmm(u, k)
    if frozen is not None:
        f3 = frozen[:, :, None]
        u, v = torch.where(f3, fu, u), torch.where(f3, fv, v)
    u = u.reshape(u.shape[0], -1, 1)
    if out is not None:
        return k.mul_(v).mul_(u), stopped
    return u * k * v, stopped


def _solve_scaling(cost: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float, n_iters: int,
                   tol: float | None, check_every: int, preallocate: bool = True,
                   ) -> tuple[torch.Tensor, int]:
    """Plain Sinkhorn-Knopp with batched matrix-vector products: the same iterates as the log-domain
    loop, several times cheaper per iteration (no exp/log on the (B, n, m) tensor), but only safe
    while exp(-cost/eps) stays far from underflow (see _scaling_safe). Runs block by block (cache
    sized on CPU), each block's whole loop at once."""
    bsz, n, m = cost.shape
    step = _block_size(bsz, n, m, cost.dtype, cost.device)
    track = torch.is_grad_enabled() and (cost.requires_grad or a.requires_grad or b.requires_grad)
    # Without autograd each block writes its plan straight into the output (no concatenation).
    plan = None if track or not preallocate else torch.empty_like(cost, memory_format=torch.contiguous_format)
    pieces = []
    iters = 0
    for s in range(0, bsz, step):
        e = min(bsz, s + step)
        p, it = _scaling_block(cost[s:e], a[s:e], b[s:e], eps, n_iters, tol, check_every,
                               None if plan is None else plan[s:e])
        pieces.append(p)
        iters = max(iters, it)
    if plan is None:
        plan = pieces[0] if len(pieces) == 1 else torch.cat(pieces) if pieces else cost * 0  # empty batch
    return plan, iters


# Largest cost/eps for which the scaling domain is used by domain="auto": exp(-30) ~ 1e-13 leaves
# float32 scalings far from overflow (1/n * 1e13); float64 has room for exp(-300).
_SCALING_LIMIT = {torch.float16: 5.0, torch.bfloat16: 5.0, torch.float32: 30.0, torch.float64: 300.0}


def _scaling_safe(cost: torch.Tensor, eps: float) -> bool:
    limit = _SCALING_LIMIT.get(cost.dtype, 0.0)
    if cost.numel() == 0:
        return True
    lo, hi = torch.aminmax(cost)  # one pass instead of abs() + max()
    return max(-float(lo), float(hi)) / eps <= limit


def _check_args(cost: torch.Tensor, grad: str, domain: str, eps: float, n_iters: int) -> None:
    if cost.dim() != 3:
        raise ConfigError(f"sinkhorn: cost must be (B, n, m), got shape {tuple(cost.shape)}")
    if grad not in _GRADS:
        raise ConfigError(f"sinkhorn: grad must be one of {_GRADS}, got {grad!r}")
    if domain not in ("auto", "log", "scaling"):
        raise ConfigError(f"sinkhorn: domain must be 'auto', 'log' or 'scaling', got {domain!r}")
    if not eps > 0:
        raise ConfigError(f"sinkhorn: eps must be > 0, got {eps}")
    if n_iters < 1:
        raise ConfigError(f"sinkhorn: n_iters must be >= 1, got {n_iters}")


def sinkhorn(
    cost: torch.Tensor,
    *,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    mask_a: torch.Tensor | None = None,
    mask_b: torch.Tensor | None = None,
    eps: float = 0.05,
    n_iters: int = 50,
    tol: float | None = None,
    check_every: int = 5,
    normalize_cost: str | None = "max",
    grad: str = "plan",
    domain: str = "auto",
    return_iters: bool = False,
    preallocate: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, int]:
    """Entropic OT plans for a batch of problems.

    cost (B, n, m); a (B, n) / b (B, m) marginals (uniform over valid points when None);
    mask_a (B, n) / mask_b (B, m) bool, True on valid points (invalid points get zero mass and
    zero rows/columns in the plan). eps is the entropic regularisation (relative to the
    normalised cost when ``normalize_cost`` is "max" or "mean"). ``tol``: each problem stops at its
    own first check (every ``check_every`` iterations) where its L1 row-marginal error is below tol
    and keeps those potentials while the others go on, so its plan does not depend on the batch;
    the returned iteration count is the slowest problem's. ``grad="stop"`` computes the
    plan without autograd (the paper re-implementation's choice); ``"plan"`` differentiates
    through the unrolled iterations. ``domain``: "log" (logsumexp updates, stable for any eps),
    "scaling" (Sinkhorn-Knopp with batched mat-vecs, faster) or "auto" (scaling while
    max|cost|/eps is small enough for the dtype not to underflow, else log; the choice is made once
    for the whole batch, and both give the same iterates up to rounding). Returns the plan
    (B, n, m) (and the iterations run when ``return_iters``). ``preallocate=False`` skips writing
    the plan into one preallocated tensor (``out=`` ops), which torch.func.vmap cannot map.
    """
    _check_args(cost, grad, domain, eps, n_iters)
    if not cost.is_floating_point():
        cost = cost.float()
    bsz, n, m = cost.shape
    mask_a = _check_mask(mask_a, (bsz, n), "mask_a")
    mask_b = _check_mask(mask_b, (bsz, m), "mask_b")
    if n == 0 or m == 0:  # no points on one side: nothing to transport (and no 1/n for uniform weights)
        plan = cost * 0 if grad == "plan" else torch.zeros_like(cost)
        return (plan, 0) if return_iters else plan
    valid = None
    if mask_a is not None or mask_b is not None:
        ma = mask_a if mask_a is not None else torch.ones(bsz, n, dtype=torch.bool, device=cost.device)
        mb = mask_b if mask_b is not None else torch.ones(bsz, m, dtype=torch.bool, device=cost.device)
        valid = ma[:, :, None] & mb[:, None, :]

    ctx = torch.no_grad() if grad == "stop" else torch.enable_grad()
    with ctx:
        wa = _marginal(a, mask_a, (bsz, n), "a", cost)
        wb = _marginal(b, mask_b, (bsz, m), "b", cost)
        c = scale_cost(cost, valid, normalize_cost)
        if valid is not None:
            c = c.masked_fill(~valid, 0.0)  # padded entries may hold garbage (NaN/inf); mass is 0 anyway
        big = _neg_big(c.dtype)
        # A problem without mass on one side (every point masked) would make the potentials of the
        # other side grow without bound; solve a dummy uniform problem there and zero its plan below.
        # Only masks or given weights can empty a side; skipping the check otherwise also keeps
        # this function free of data-dependent branches, so torch.func.vmap can map it over stacked
        # models (batched fold x seed training).
        maybe_empty = mask_a is not None or mask_b is not None or a is not None or b is not None
        empty = (wa.sum(-1) == 0) | (wb.sum(-1) == 0) if maybe_empty else None
        if empty is not None and empty.any():
            wa = torch.where(empty[:, None], torch.full_like(wa, 1.0 / n), wa)
            wb = torch.where(empty[:, None], torch.full_like(wb, 1.0 / m), wb)
        log_a = torch.where(wa > 0, wa.clamp_min(torch.finfo(c.dtype).tiny).log(), big)
        log_b = torch.where(wb > 0, wb.clamp_min(torch.finfo(c.dtype).tiny).log(), big)
        every = max(1, int(check_every))
        use_scaling = domain == "scaling" or (domain == "auto" and _scaling_safe(c.detach(), float(eps)))
        if use_scaling:
            plan, it = _solve_scaling(c, wa, wb, float(eps), int(n_iters), tol, every, preallocate)
        else:
            plan, it = _solve(c, log_a, log_b, float(eps), int(n_iters), tol, every, wa)
        if valid is not None:
            plan = plan * valid.to(plan.dtype)
    return (plan, it) if return_iters else plan



@torch.no_grad()
def plan_stats(
    plan: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
) -> dict[str, float]:
    """Diagnostics of a batch of plans (B, n, m) (or one (n, m) plan).

    entropy: mean over problems of -sum P log P. eff_partners: exp of the entropy of each row
    normalised to sum 1 (1 = a row sends all its mass to one point, m = mass spread evenly),
    averaged over rows with mass; also its min/max and the ratio to m; row_entropy: the mean of those
    row entropies. marginal_err_a/_b: mean
    L1 error of row/column sums against a/b (uniform over rows/columns that carry mass when None).
    """
    p = plan.detach().double()
    if p.dim() == 2:
        p = p[None]
    bsz, n, m = p.shape
    xlogx = torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p))
    entropy = -xlogx.sum(dim=(1, 2))
    rows = p.sum(2)
    cols = p.sum(1)
    has = rows > 0
    q = p / rows.clamp_min(1e-300)[:, :, None]
    qlogq = torch.where(q > 0, q * q.clamp_min(1e-300).log(), torch.zeros_like(q))
    row_ent = -qlogq.sum(2)[has]
    eff = torch.exp(row_ent)

    def _ref(w: torch.Tensor | None, sums: torch.Tensor) -> torch.Tensor:
        if w is not None:
            return w.detach().double().reshape(sums.shape)
        live = (sums > 0).double()
        return live / live.sum(-1, keepdim=True).clamp_min(1.0)

    err_a = (rows - _ref(a, rows)).abs().sum(-1).mean()
    err_b = (cols - _ref(b, cols)).abs().sum(-1).mean()
    eff_mean = float(eff.mean()) if eff.numel() else float("nan")
    return {
        "entropy": float(entropy.mean()),
        "eff_partners": eff_mean,
        "row_entropy": float(row_ent.mean()) if row_ent.numel() else float("nan"),
        "eff_partners_min": float(eff.min()) if eff.numel() else float("nan"),
        "eff_partners_max": float(eff.max()) if eff.numel() else float("nan"),
        "eff_partners_frac": eff_mean / m if m else float("nan"),
        "marginal_err_a": float(err_a),
        "marginal_err_b": float(err_b),
        "n": n,
        "m": m,
        "batch": bsz,
        "max_entropy": math.log(n * m) if n and m else 0.0,
    }
