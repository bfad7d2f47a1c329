"""SSAMBA (Shams et al. 2024) in pure PyTorch, parameter names as in the released state dicts once the
``module.v.`` prefix is removed (``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``layers.{i}``,
``norm_f``).

Input: (B, T, 128) normalised Kaldi fbank, read as an image (B, 1, 128, T). Conv2d 16x16 patches with a
configurable stride, tokens in frequency-major order (index f * T' + t), learned position embedding
(pretraining grid 8 x 64, cut/interpolated to this grid exactly as AMBAModel's fine-tuning branch),
cls token at 0, bidirectional v2 Mamba layers used in pairs (layer 2i on the sequence, 2i+1 on the
reversed sequence, hidden and residual summed), final ``norm_f`` on residual + hidden, and (official
pooled paths) ``norm_f`` applied once more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from parrot_ser.encoders.mamba.blocks import Block, make_norm
from parrot_ser.encoders.mamba.mixer import MambaMixer

PATCH = 16
N_MELS = 128
PRETRAIN_TDIM = 1024  # pretraining input frames (p_input_tdim)
IGNORED_PREFIXES = ("cpredlayer.", "gpredlayer.", "mask_embed", "p_input_fdim", "p_input_tdim", "v.head.",
                    "mlp_head.")


class SSAMBAModel(nn.Module):
    def __init__(self, dim: int = 768, depth: int = 24, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 norm_eps: float = 1e-5, rms_norm: bool = False, fstride: int = PATCH, tstride: int = PATCH,
                 pretrain_grid: tuple[int, int] = (N_MELS // PATCH, PRETRAIN_TDIM // PATCH),
                 bidirectional_pairs: bool = True, divide_out: bool = True, double_final_norm: bool = True):
        super().__init__()
        self.dim, self.depth = dim, depth
        self.fstride, self.tstride = fstride, tstride
        self.pretrain_grid = pretrain_grid
        self.bidirectional_pairs = bidirectional_pairs
        self.double_final_norm = double_final_norm
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(1, dim, kernel_size=PATCH, stride=PATCH)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pretrain_grid[0] * pretrain_grid[1], dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.layers = nn.ModuleList(
            Block(dim, MambaMixer(dim, d_state, d_conv, expand, bidirectional=True, divide_out=divide_out),
                  make_norm(dim, norm_eps, rms_norm))
            for _ in range(depth))
        self.norm_f = make_norm(dim, norm_eps, rms_norm)

    @property
    def num_outputs(self) -> int:
        return self.depth // 2 if self.bidirectional_pairs else self.depth

    def grid_pos_embed(self, f_dim: int, t_dim: int) -> torch.Tensor:
        """Position table for an (f_dim, t_dim) grid: the pretraining table (p_f, p_t) centre-cut where the
        new grid is smaller, bilinearly resized where it is larger (AMBAModel's rule, with its f-axis cut
        using f_dim where the upstream code has a t_dim typo)."""
        pf, pt = self.pretrain_grid
        pe = self.pos_embed[:, 1:, :].transpose(1, 2).reshape(1, self.dim, pf, pt)
        if t_dim < pt:
            s = pt // 2 - t_dim // 2
            pe = pe[:, :, :, s:s + t_dim]
        elif t_dim > pt:
            pe = F.interpolate(pe, size=(pe.shape[2], t_dim), mode="bilinear")
        if f_dim < pf:
            s = pf // 2 - f_dim // 2
            pe = pe[:, :, s:s + f_dim, :]
        elif f_dim > pf:
            pe = F.interpolate(pe, size=(f_dim, t_dim), mode="bilinear")
        return pe.reshape(1, self.dim, f_dim * t_dim).transpose(1, 2)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.patch_embed.proj.weight, self.patch_embed.proj.bias
        return F.conv2d(x, w, b, stride=(self.fstride, self.tstride))

    def forward(self, fbank: torch.Tensor, layers: list[int]) -> tuple[dict[int, torch.Tensor], tuple[int, int]]:
        """fbank (B, T, 128) -> ({output index: (B, 1 + F'*T', D) tokens, cls first}, (F', T')).
        Output i is the residual stream after pair i (after layer i without pairing); the last one gets
        ``norm_f`` (twice by default, as the official pooled paths)."""
        x = fbank.unsqueeze(1).transpose(2, 3)  # (B, 1, 128, T)
        p = self._conv(x)  # (B, D, F', T')
        f_dim, t_dim = p.shape[2], p.shape[3]
        tok = p.flatten(2).transpose(1, 2)  # frequency-major
        B = tok.shape[0]
        hidden = torch.cat([self.cls_token.expand(B, -1, -1), tok], dim=1)
        pos = torch.cat([self.pos_embed[:, :1, :], self.grid_pos_embed(f_dim, t_dim)], dim=1)
        hidden = hidden + pos
        residual = None
        want = set(layers)
        last = max(want)
        out: dict[int, torch.Tensor] = {}
        n_out = self.num_outputs
        for i in range(n_out):
            if self.bidirectional_pairs:
                hf, rf = self.layers[2 * i](hidden, residual)
                hb, rb = self.layers[2 * i + 1](hidden.flip([1]), None if residual is None else residual.flip([1]))
                hidden, residual = hf + hb.flip([1]), rf + rb.flip([1])
            else:
                hidden, residual = self.layers[i](hidden, residual)
            if i in want:
                stream = residual + hidden.float()
                if i == n_out - 1:
                    stream = self.norm_f(stream.to(self.norm_f.weight.dtype))
                    if self.double_final_norm:
                        stream = self.norm_f(stream)
                out[i] = stream
            if i == last:
                break
        return out, (f_dim, t_dim)
