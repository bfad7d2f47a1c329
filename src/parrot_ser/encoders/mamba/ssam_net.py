"""SSAM ("Audio Mamba", Yadav & Tan 2024) in pure PyTorch, parameter names as in the official
``checkpoint-<epoch>.pth`` 'model' dict, so official weights load strictly.

Input: (B, 1, T=200, F=80) normalised log-mel chunks (time first, ``frequency_first=False`` in the
official configs). Conv2d patches (4 time x 16 freq) -> (B, 50, 5, D) read time-major -> 250 tokens,
+ fixed 2-D sin-cos position embedding, cls token at index 0, 12 unidirectional Mamba blocks
(LayerNorm eps 1e-6, residual fp32), ``encoder_norm`` on residual + hidden.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from parrot_ser.encoders.mamba.blocks import Block, make_norm
from parrot_ser.encoders.mamba.mixer import MambaMixer

CHUNK_FRAMES = 200
N_MELS = 80
PATCH = (4, 16)  # (time, freq)
GRID = (CHUNK_FRAMES // PATCH[0], N_MELS // PATCH[1])  # (50, 5)

# Pretraining-only parameters present in official checkpoints; loaded nowhere, listed in docs/mamba.md.
IGNORED_PREFIXES = ("pred.", "mask_token")


def sincos_2d(dim: int, grid: tuple[int, int], cls_token: bool = True) -> np.ndarray:
    """MAE-style fixed 2-D sin-cos table as audio-mamba-official's ``get_2d_sincos_pos_embed``:
    first half of the channels encodes the inner (w) grid coordinate, second half the outer (h)."""
    gh, gw = grid

    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    ww, hh = np.meshgrid(np.arange(gw, dtype=np.float32), np.arange(gh, dtype=np.float32))
    emb = np.concatenate([one_d(dim // 2, ww), one_d(dim // 2, hh)], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros([1, dim]), emb], axis=0)
    return emb.astype(np.float32)


class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.proj(x)  # (B, D, 50, 5)
        return out.permute(0, 2, 3, 1).reshape(x.shape[0], -1, out.shape[1])  # time-major tokens


class SSAMModel(nn.Module):
    def __init__(self, dim: int = 768, depth: int = 12, d_state: int = 24, d_conv: int = 4, expand: int = 3,
                 norm_eps: float = 1e-6, rms_norm: bool = False):
        super().__init__()
        self.dim = dim
        self.depth = depth
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.from_numpy(sincos_2d(dim, GRID)).unsqueeze(0), requires_grad=False)
        self.blocks = nn.ModuleList(
            Block(dim, MambaMixer(dim, d_state, d_conv, expand), make_norm(dim, norm_eps, rms_norm))
            for _ in range(depth))
        # Always LayerNorm: the official MambaSSAST takes encoder_norm from its base class
        # (norm_layer=LayerNorm eps 1e-6); rms_norm only changes the blocks' norms.
        self.encoder_norm = nn.LayerNorm(dim, eps=norm_eps)
        nn.init.normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
        """x: (B, 1, 200, 80) -> {layer: (B, 250, D) patch tokens (cls dropped)}. Layer i is the residual
        stream after block i; the last block's output is ``encoder_norm``-ed (the official output)."""
        B = x.shape[0]
        tok = self.patch_embed(x) + self.pos_embed[:, 1:, :]
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(B, -1, -1)
        hidden = torch.cat([cls, tok], dim=1)
        residual = None
        want = set(layers)
        out: dict[int, torch.Tensor] = {}
        last = max(want)
        for i, blk in enumerate(self.blocks):
            hidden, residual = blk(hidden, residual)
            if i in want:
                stream = residual + hidden.float()
                if i == self.depth - 1:
                    stream = self.encoder_norm(stream.to(self.encoder_norm.weight.dtype))
                out[i] = stream[:, 1:, :]
            if i == last:
                break
        return out


def regroup_frames(tokens: torch.Tensor, corrected: bool = False) -> torch.Tensor:
    """(B, 250, D) tokens -> (B, 50, 5*D) frame features.

    Official quirk (default): ``rearrange('b (f t) d -> b t (f d)')`` applied to *time-major* tokens,
    so "frame" t concatenates tokens f*50 + t, which mixes time steps. ``corrected=True`` groups the
    5 frequency patches of each time step (tokens t*5 + f). The mean over frames is the same."""
    B, n, D = tokens.shape
    gt, gf = GRID
    if corrected:
        return tokens.reshape(B, gt, gf * D)
    return tokens.reshape(B, gf, gt, D).permute(0, 2, 1, 3).reshape(B, gt, gf * D)
