"""Models on per-utterance token sets (conv positions of the pooled vector, or PTM frames): ``parrot-token``
(OT between the two token sets of each utterance; batch-independent) and ``xattn`` (cross-attention)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from parrot_ser.errors import ConfigError
from parrot_ser.fusion.base import FusionInput
from parrot_ser.fusion.layers import (
    adaptive_avg_pool1d,
    attend,
    full_precision,
    masked_mean,
    pairwise_dist,
    tracing,
)
from parrot_ser.fusion.registry import (
    FusionConfig,
    OTConfig,
    TwoBranch,
    register_model,
)


def _check_tokens(cfg: TokenOTConfig | XAttnConfig) -> None:
    if isinstance(cfg.frame_dims, list):
        cfg.frame_dims = tuple(cfg.frame_dims)
    if cfg.token_source not in ("auto", "conv", "frames"):
        raise ConfigError(f"token_source must be 'auto', 'conv' or 'frames', got {cfg.token_source!r}")


@dataclass
class TokenOTConfig(OTConfig):
    """parrot-token: OT between the token sets inside one utterance. Conv feature maps are
    average-pooled to at most ``ot_tokens`` positions (958 x 190 plans per utterance would dominate
    the run time for nothing)."""

    ot_tokens: int = 64
    token_source: str = "auto"  # "auto": frames when FusionInput.frames is given, else conv positions
    frame_dims: tuple[int, ...] | None = None  # frame feature widths; default: input_dims

    def validate(self) -> None:
        super().validate()
        _check_tokens(self)


@dataclass
class XAttnConfig(FusionConfig):
    """xattn: multi-head cross-attention between the two token sets (see TokenOTConfig)."""

    ot_tokens: int = 64
    token_source: str = "auto"
    frame_dims: tuple[int, ...] | None = None
    n_heads: int = 4

    def validate(self) -> None:
        super().validate()
        _check_tokens(self)


class _Tokens(TwoBranch):
    """Per-utterance token sets: the conv feature positions of both branches (pooled inputs) or the
    PTM frame sequences (FusionInput.frames with frame_mask), projected to embed_dim."""

    uses_frames = True

    def __init__(self, input_dims, n_classes, cfg):
        super().__init__(input_dims, n_classes, cfg)
        e = cfg.embed_dim
        self.tok_p = nn.Linear(self.enc_p.conv.channels, e)
        self.tok_q = nn.Linear(self.enc_q.conv.channels, e)
        self.frame_p = self.frame_q = None
        if cfg.token_source != "conv":
            fd = cfg.frame_dims or tuple(input_dims)
            if len(fd) != 2:
                raise ConfigError(f"frame_dims must give 2 widths, got {fd}")
            self.frame_p, self.frame_q = nn.Linear(fd[0], e), nn.Linear(fd[1], e)

    def _conv_tokens(self, fmap: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
        if fmap.shape[-1] > self.cfg.ot_tokens:
            pool = adaptive_avg_pool1d if tracing() else nn.functional.adaptive_avg_pool1d  # same windows
            fmap = pool(fmap, self.cfg.ot_tokens)
        return proj(fmap.transpose(1, 2))

    @staticmethod
    def _mix_frames(x: torch.Tensor, sel: nn.Module, side: str) -> torch.Tensor:
        """Frames (B, T, L, F) of a layer-weighted input -> (B, T, F) with the SAME learned layer
        weights as that input's pooled vector (one layer mix per encoder); (B, T, F) pass through."""
        if x.dim() != 4:
            return x
        if sel.mix is None:
            raise ConfigError(f"frames of branch {side} hold {x.shape[2]} layers but the model has no layer "
                              "weighting (train with --layer weighted)")
        w = torch.softmax(sel.mix.weights, 0).to(x.dtype)
        return torch.einsum("l,btlf->btf", w, x)

    def tokens(self, fp, fq, inp: FusionInput):
        use_frames = self.cfg.token_source == "frames" or (
            self.cfg.token_source == "auto" and inp.frames is not None)
        if not use_frames:
            return self._conv_tokens(fp, self.tok_p), None, self._conv_tokens(fq, self.tok_q), None
        if inp.frames is None or len(inp.frames) != 2:
            raise ConfigError("token_source='frames' needs FusionInput.frames for both inputs")
        masks = inp.frame_mask or [None, None]
        out = []
        for x, mask, proj, side, sel in zip(inp.frames, masks, (self.frame_p, self.frame_q), "pq", self.select):
            x = self._mix_frames(x, sel, side)
            if x.shape[-1] != proj.in_features:
                raise ConfigError(f"frames of branch {side} have {x.shape[-1]} features, "
                                  f"the model was built for {proj.in_features} (frame_dims)")
            if mask is not None and not mask.any(1).all():
                raise ConfigError(f"frames of branch {side}: an utterance has no valid frame")
            out += [proj(x), mask]
        return tuple(out)


@register_model("parrot-token", "PARROT with per-utterance OT between token sets (conv positions or PTM frames)")
class ParrotToken(_Tokens):
    """Batch-independent PARROT: OT between the two token sets of each utterance (masked), each set
    transported onto the other (barycentric), Hadamard products of aligned tokens, masked means,
    plus the pooled HP branch. Head input [HP, F_q, F_p] as in parrot."""

    width = 5
    Config = TokenOTConfig

    def fuse(self, rp, rq, fp, fq, inp):
        tp, mp, tq, mq = self.tokens(fp, fq, inp)
        with full_precision(tp):  # float32 OT under --precision bf16 (layers.full_precision)
            tp, tq = tp.float(), tq.float()
            plan = self._sinkhorn(pairwise_dist(tp, tq), mp, mq)  # (B, Tp, Tq)
            self._keep(plan, mask_a=mp, mask_b=mq)
            tiny = torch.finfo(plan.dtype).tiny
            q_to_p = plan @ tq / plan.sum(2, keepdim=True).clamp_min(tiny)  # aligned with tp
            p_to_q = plan.transpose(1, 2) @ tp / plan.sum(1)[:, :, None].clamp_min(tiny)  # aligned with tq
            f_q = torch.cat([masked_mean(p_to_q * tq, mq), masked_mean(tq, mq)], -1)
            f_p = torch.cat([masked_mean(q_to_p * tp, mp), masked_mean(tp, mp)], -1)
        return torch.cat([rp * rq, f_q, f_p], -1)


@register_model("xattn", "cross-attention between the branches' token sets")
class CrossAttention(_Tokens):
    """Cross-attention fusion: each branch's tokens attend to the other's (multi-head, key padding
    masks), residual + LayerNorm, masked means; head input [R_p, R_q, attended p, attended q]."""

    width = 4
    Config = XAttnConfig

    def __init__(self, input_dims, n_classes, cfg):
        super().__init__(input_dims, n_classes, cfg)
        if cfg.embed_dim % cfg.n_heads:
            raise ConfigError(f"embed_dim {cfg.embed_dim} is not divisible by n_heads {cfg.n_heads}")
        e = cfg.embed_dim
        self.att_pq = nn.MultiheadAttention(e, cfg.n_heads, dropout=cfg.dropout, batch_first=True)
        self.att_qp = nn.MultiheadAttention(e, cfg.n_heads, dropout=cfg.dropout, batch_first=True)
        self.norm_p, self.norm_q = nn.LayerNorm(e), nn.LayerNorm(e)

    def fuse(self, rp, rq, fp, fq, inp):
        tp, mp, tq, mq = self.tokens(fp, fq, inp)
        if tracing():  # nn.MultiheadAttention traces with the example's token count frozen
            ap, aq = attend(self.att_pq, tp, tq, mq), attend(self.att_qp, tq, tp, mp)
        else:
            ap, _ = self.att_pq(tp, tq, tq, key_padding_mask=None if mq is None else ~mq, need_weights=False)
            aq, _ = self.att_qp(tq, tp, tp, key_padding_mask=None if mp is None else ~mp, need_weights=False)
        hp = self.norm_p(tp + ap)
        hq = self.norm_q(tq + aq)
        return torch.cat([rp, rq, masked_mean(hp, mp), masked_mean(hq, mq)], -1)
