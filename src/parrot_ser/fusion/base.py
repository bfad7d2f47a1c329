"""What every model (single-PTM head, fusion baseline, PARROT) consumes and how it is registered."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class FusionInput:
    """One mini-batch. ``pooled[i]``: (B, D_i) for encoder i. ``frames[i]``: (B, T_i, F_i) padded
    frame features with ``frame_mask[i]`` (B, T_i) True on valid frames; None for pooled-only runs."""

    pooled: list[torch.Tensor]
    frames: list[torch.Tensor] | None = None
    frame_mask: list[torch.Tensor] | None = None

    def to(self, device: str | torch.device) -> FusionInput:
        mv = lambda xs: None if xs is None else [x.to(device) for x in xs]  # noqa: E731
        return FusionInput(mv(self.pooled), mv(self.frames), mv(self.frame_mask))


@dataclass(frozen=True)
class ModelSpec:
    name: str
    n_inputs: int  # 1 for single-PTM heads, 2 for fusion models
    batch_dependent: bool  # True when a prediction depends on the other rows of the batch (paper OT)
    uses_frames: bool  # True when the model can consume frame features (FusionInput.frames)
    description: str = ""
