"""The Mamba mixer and scan against a per-time-step reference written here from the SPEC formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from parrot_ser.encoders.mamba.mixer import MambaMixer, flip_valid
from parrot_ser.encoders.mamba.scan import selective_scan_reference, selective_scan_torch


def _randomise(m: MambaMixer, seed: int = 0) -> MambaMixer:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "A" in name and "log" in name:
                p.copy_(torch.rand(p.shape, generator=g) * 2 - 1)  # A = -exp(A_log) in (-e, -1/e)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m.eval()


def ref_direction(x, conv_w, conv_b, x_proj_w, dt_w, dt_b, A_log, D, d_state):
    """x: (L, Di) for one sequence; explicit loops over time (SPEC section 3)."""
    L, di = x.shape
    k = conv_w.shape[-1]
    xc = torch.zeros(L, di)
    for t in range(L):  # causal depthwise conv: out_t = b + sum_j w[j] * x[t - (k-1) + j]
        acc = conv_b.clone()
        for j in range(k):
            s = t - (k - 1) + j
            if s >= 0:
                acc = acc + conv_w[:, 0, j] * x[s]
        xc[t] = F.silu(acc)
    R = dt_w.shape[1]
    A = -torch.exp(A_log)
    h = torch.zeros(di, d_state)
    ys = []
    for t in range(L):
        proj = x_proj_w @ xc[t]
        dt, B, C = proj[:R], proj[R:R + d_state], proj[R + d_state:]
        delta = F.softplus(dt_w @ dt + dt_b)  # (Di,)
        h = torch.exp(delta[:, None] * A) * h + delta[:, None] * B[None, :] * xc[t][:, None]
        ys.append(h @ C + D * xc[t])
    return torch.stack(ys)


def ref_mixer(m: MambaMixer, hidden: torch.Tensor) -> torch.Tensor:
    """hidden: (L, d_model) one unpadded sequence."""
    xz = hidden @ m.in_proj.weight.T
    x, z = xz[:, :m.d_inner], xz[:, m.d_inner:]
    y = ref_direction(x, m.conv1d.weight, m.conv1d.bias, m.x_proj.weight, m.dt_proj.weight, m.dt_proj.bias,
                      m.A_log, m.D, m.d_state)
    if m.bidirectional:
        yb = ref_direction(x.flip(0), m.conv1d_b.weight, m.conv1d_b.bias, m.x_proj_b.weight, m.dt_proj_b.weight,
                           m.dt_proj_b.bias, m.A_b_log, m.D_b, m.d_state).flip(0)
        y = (y + yb) / 2
    return (y * F.silu(z)) @ m.out_proj.weight.T


@pytest.mark.parametrize("chunk", [1, 5, 16, 64])
def test_scan_matches_reference(chunk):
    g = torch.Generator().manual_seed(1)
    B, L, Di, N = 2, 37, 12, 5
    u = torch.randn(B, L, Di, generator=g)
    delta = F.softplus(torch.randn(B, L, Di, generator=g))
    A = -torch.rand(Di, N, generator=g) * 3
    Bm, Cm = torch.randn(B, L, N, generator=g), torch.randn(B, L, N, generator=g)
    D = torch.randn(Di, generator=g)
    ref = selective_scan_reference(u, delta, A, Bm, Cm, D)
    out = selective_scan_torch(u, delta, A, Bm, Cm, D, chunk=chunk)
    assert out.shape == (B, L, Di)
    assert (out - ref).abs().max() < 1e-4


@pytest.mark.parametrize("bidirectional", [False, True])
def test_mixer_matches_formula_reference(bidirectional):
    m = _randomise(MambaMixer(16, d_state=4, d_conv=4, expand=2, bidirectional=bidirectional, chunk=7))
    assert m.dt_rank == math.ceil(16 / 16)
    hidden = torch.randn(2, 19, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = m(hidden)
        for b in range(2):
            ref = ref_mixer(m, hidden[b])
            assert (out[b] - ref).abs().max() < 1e-4


def test_mixer_parameter_names_match_mamba_ssm():
    uni = set(dict(MambaMixer(32, d_state=24, expand=3).named_parameters()))
    assert uni == {"in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight",
                   "dt_proj.bias", "A_log", "D", "out_proj.weight"}
    bi = set(dict(MambaMixer(32, bidirectional=True).named_parameters()))
    assert bi - uni == {"A_b_log", "conv1d_b.weight", "conv1d_b.bias", "x_proj_b.weight", "dt_proj_b.weight",
                        "dt_proj_b.bias", "D_b"}


def test_flip_valid_reverses_within_length():
    x = torch.arange(10.0).view(2, 5, 1)
    out = flip_valid(x, torch.tensor([5, 3]))
    assert out[0, :, 0].tolist() == [4, 3, 2, 1, 0]
    assert out[1, :, 0].tolist() == [7, 6, 5, 8, 9]


@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_never_affects_valid_positions(bidirectional):
    m = _randomise(MambaMixer(16, d_state=4, expand=2, bidirectional=bidirectional, chunk=4), seed=5)
    g = torch.Generator().manual_seed(7)
    lens = [11, 6, 9]
    seqs = [torch.randn(n, 16, generator=g) for n in lens]
    L = max(lens)
    batch = torch.randn(3, L, 16, generator=g) * 100  # garbage in the padding must not leak
    for i, s in enumerate(seqs):
        batch[i, :len(s)] = s
    with torch.no_grad():
        out = m(batch, torch.tensor(lens))
        for i, s in enumerate(seqs):
            alone = m(s.unsqueeze(0))[0]  # (transformers parity: checked in bench/bench_mamba.py)
            assert (out[i, :len(s)] - alone).abs().max() < 1e-5
            assert torch.all(out[i, len(s):] == 0)
    if bidirectional:  # without lengths, the backward direction would start in the padding
        with torch.no_grad():
            wrong = m(batch)
            assert (wrong[1, :lens[1]] - m(seqs[1].unsqueeze(0))[0]).abs().max() > 1e-3


def test_scan_is_differentiable_when_grad_is_needed():
    m = _randomise(MambaMixer(8, d_state=3, expand=2, bidirectional=True))
    x = torch.randn(1, 6, 8, requires_grad=True)
    m(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.no_grad():
        assert (m(x) - ref_mixer(m, x[0].detach())).abs().max() < 1e-4
