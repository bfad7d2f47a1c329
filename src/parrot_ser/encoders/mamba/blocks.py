"""The mamba_ssm ``Block`` wiring shared by SSAM and SSAMBA (non-fused path, which the fused Triton
path computes identically): residual = residual + hidden (first block: residual = input);
hidden = Norm(residual); hidden = Mixer(hidden). The residual stream is kept in float32."""

from __future__ import annotations

import torch
from torch import nn

from parrot_ser.encoders.mamba.mixer import MambaMixer


def make_norm(dim: int, eps: float, rms: bool) -> nn.Module:
    # torch.nn.RMSNorm computes x * rsqrt(mean(x^2) + eps) * weight, as mamba_ssm's RMSNorm.
    return nn.RMSNorm(dim, eps=eps) if rms else nn.LayerNorm(dim, eps=eps)


class Block(nn.Module):
    def __init__(self, dim: int, mixer: MambaMixer, norm: nn.Module):
        super().__init__()
        self.mixer = mixer
        self.norm = norm

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor | None,
                lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        residual = hidden if residual is None else residual + hidden
        residual = residual.float()
        hidden = self.norm(residual.to(self.norm.weight.dtype))
        return self.mixer(hidden, lengths), residual
