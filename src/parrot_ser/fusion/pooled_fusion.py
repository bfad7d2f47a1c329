"""Two-branch fusion baselines on pooled features: ``concat`` (the paper's baseline without fusion
branches), ``hadamard`` (HPFB only) and ``gated`` (gated multimodal unit)."""

from __future__ import annotations

import torch
from torch import nn

from parrot_ser.fusion.registry import (
    TwoBranch,
    register_model,
)


@register_model("concat", "concat [R_p, R_q] (paper baseline, fusion branches removed)")
class Concat(TwoBranch):
    width = 2

    def fuse(self, rp, rq, fp, fq, inp):
        return torch.cat([rp, rq], -1)


@register_model("hadamard", "HPFB only: R_p * R_q")
class Hadamard(TwoBranch):
    width = 1

    def fuse(self, rp, rq, fp, fq, inp):
        return rp * rq


@register_model("gated", "gated multimodal unit (Arevalo et al. 2017)")
class Gated(TwoBranch):
    """Gated multimodal unit (Arevalo et al. 2017): h = z * tanh(W_p R_p) + (1 - z) * tanh(W_q R_q),
    z = sigmoid(W_z [R_p, R_q]) per dimension."""

    width = 1

    def __init__(self, input_dims, n_classes, cfg):
        super().__init__(input_dims, n_classes, cfg)
        e = cfg.embed_dim
        self.wp, self.wq = nn.Linear(e, e, bias=False), nn.Linear(e, e, bias=False)
        self.wz = nn.Linear(2 * e, e)

    def fuse(self, rp, rq, fp, fq, inp):
        z = torch.sigmoid(self.wz(torch.cat([rp, rq], -1)))
        return z * torch.tanh(self.wp(rp)) + (1 - z) * torch.tanh(self.wq(rq))
