"""The paper's batch-level optimal transport: ``ot`` (OTFB only) and ``parrot`` ([HP, F_q, F_p]); the plan
couples the utterances of a mini-batch, so both are batch-dependent."""

from __future__ import annotations

import torch

from parrot_ser.fusion.layers import (
    full_precision,
    pairwise_dist,
)
from parrot_ser.fusion.registry import (
    OTConfig,
    TwoBranch,
    register_model,
)


class _BatchOT(TwoBranch):
    """The paper's OTFB: the B rows of the mini-batch are the point clouds (B x B plan)."""

    batch_dependent = True
    Config = OTConfig

    def batch_ot(self, rp: torch.Tensor, rq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bsz = rp.shape[0]
        with full_precision(rp):  # float32 OT under --precision bf16 (layers.full_precision)
            rp, rq = rp.float(), rq.float()
            plan = self._sinkhorn(pairwise_dist(rp, rq)[None])[0]  # (B, B), rows: p, columns: q
            self._keep(plan[None])
            # Barycentric maps, rescaled by B (uniform marginals 1/B) so each transported row lines up
            # with the row it is concatenated with: q_to_p[i] ~ R_q mass sent to R_p[i], and vice versa.
            # (The paper writes G R_p / G^T R_q; this is the re-implementation's row-aligned reading.)
            q_to_p = bsz * plan @ rq
            p_to_q = bsz * plan.T @ rp
        f_q = torch.cat([p_to_q, rq], -1)
        f_p = torch.cat([q_to_p, rp], -1)
        return f_q, f_p


@register_model("ot", "OTFB only, OT across the rows of the mini-batch")
class OTOnly(_BatchOT):
    width = 4

    def fuse(self, rp, rq, fp, fq, inp):
        return torch.cat(self.batch_ot(rp, rq), -1)


@register_model("parrot", "PARROT (paper): [HP, F_q, F_p], OT across the mini-batch")
class Parrot(_BatchOT):
    width = 5

    def fuse(self, rp, rq, fp, fq, inp):
        f_q, f_p = self.batch_ot(rp, rq)
        return torch.cat([rp * rq, f_q, f_p], -1)
