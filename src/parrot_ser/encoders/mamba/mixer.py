"""Mamba mixer with mamba_ssm-compatible parameter names, in pure PyTorch.

Unidirectional form = ``mamba_ssm.modules.mamba_simple.Mamba``; ``bidirectional=True`` adds the Vim /
SSAMBA "bimamba v2" backward parameters (A_b_log, conv1d_b, x_proj_b, dt_proj_b, D_b), run on the
time-reversed sequence, whose output is flipped back and added to the forward output before the
shared out_proj (divided by 2 when ``divide_out``, Vim's ``if_devide_out``).

Padding: ``lengths`` (B,) gives each sequence's number of valid tokens (right padding). The forward
direction is causal, so padded tail tokens never reach valid ones; the backward direction reverses
each sequence *within its own length* so it starts at that sequence's last valid token.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from parrot_ser.encoders.mamba.scan import DEFAULT_CHUNK, causal_conv1d_silu, selective_scan


def flip_valid(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse x (B, L, ...) along time within each sequence's valid length; padding stays at the end."""
    if lengths is None:
        return x.flip(1)
    L = x.shape[1]
    t = torch.arange(L, device=x.device)
    lengths = lengths.to(x.device).view(-1, 1)
    idx = torch.where(t < lengths, lengths - 1 - t, t)  # (B, L)
    idx = idx.view(idx.shape[0], L, *([1] * (x.dim() - 2))).expand_as(x)
    return torch.gather(x, 1, idx)


def length_mask(lengths: torch.Tensor, L: int) -> torch.Tensor:
    return torch.arange(L, device=lengths.device).view(1, L) < lengths.view(-1, 1)


class MambaMixer(nn.Module):
    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", *, bidirectional: bool = False, divide_out: bool = True,
                 conv_bias: bool = True, bias: bool = False, dt_min: float = 0.001, dt_max: float = 0.1,
                 chunk: int = DEFAULT_CHUNK):
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.bidirectional = bidirectional
        self.divide_out = divide_out
        self.chunk = chunk
        di = self.d_inner
        self.in_proj = nn.Linear(d_model, 2 * di, bias=bias)
        self.out_proj = nn.Linear(di, d_model, bias=bias)
        suffixes = ["", "_b"] if bidirectional else [""]
        for sfx in suffixes:
            conv = nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1, bias=conv_bias)
            x_proj = nn.Linear(di, self.dt_rank + 2 * d_state, bias=False)
            dt_proj = nn.Linear(self.dt_rank, di, bias=True)
            self._init_dt(dt_proj, dt_min, dt_max)
            a_log = torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(di, 1)
            self.add_module("conv1d" + sfx, conv)
            self.add_module("x_proj" + sfx, x_proj)
            self.add_module("dt_proj" + sfx, dt_proj)
            self.register_parameter("A" + sfx + "_log" if sfx else "A_log", nn.Parameter(a_log))
            self.register_parameter("D" + sfx, nn.Parameter(torch.ones(di)))

    def _init_dt(self, dt_proj: nn.Linear, dt_min: float, dt_max: float) -> None:
        # mamba_ssm's init (used for random_init models): dt log-uniform in [dt_min, dt_max].
        std = self.dt_rank ** -0.5
        nn.init.uniform_(dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=1e-4)
        with torch.no_grad():
            dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def _direction(self, x: torch.Tensor, sfx: str) -> torch.Tensor:
        """One scan direction on x (B, L, Di) -> y (B, L, Di) before gating (float32)."""
        conv = getattr(self, "conv1d" + sfx)
        x_proj = getattr(self, "x_proj" + sfx)
        dt_proj = getattr(self, "dt_proj" + sfx)
        A_log = self.A_log if not sfx else self.A_b_log
        D = getattr(self, "D" + sfx)
        xc = causal_conv1d_silu(x, conv.weight, conv.bias)  # (B, L, Di), contiguous rows for the scan
        dt, Bm, Cm = torch.split(x_proj(xc), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        # softplus(dt + bias) in fp32, as mamba_ssm's kernel does.
        delta = F.softplus(F.linear(dt, dt_proj.weight).float() + dt_proj.bias.float())
        A = -torch.exp(A_log.float())
        return selective_scan(xc, delta, A, Bm, Cm, D, chunk=self.chunk)

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """hidden: (B, L, d_model); lengths: (B,) valid tokens per sequence (right padding) or None."""
        xz = self.in_proj(hidden)
        x, z = xz.chunk(2, dim=-1)
        y = self._direction(x, "")
        if self.bidirectional:
            yb = flip_valid(self._direction(flip_valid(x, lengths), "_b"), lengths)
            y = y + yb
            if self.divide_out:
                y = y / 2
        y = y * F.silu(z.float())
        out = self.out_proj(y.to(hidden.dtype))
        if lengths is not None:
            out = out * length_mask(lengths, out.shape[1]).unsqueeze(-1).to(out.dtype)
        return out
