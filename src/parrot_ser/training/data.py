"""In-memory training data (one or two encoders' features + integer labels) and its batching into
``FusionInput`` (through the model layer's ``collate``, the same as serving)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from parrot_ser.errors import FeatureStoreError
from parrot_ser.fusion.base import FusionInput
from parrot_ser.models.batch import collate


@dataclass
class SERData:
    """Features of N utterances for one or more encoders.

    ``pooled[i]``: (N, D_i) float32 for encoder i. ``frames[i]``: N arrays (T_n, F_i) or None.
    ``labels``: (N,) int64 indices into ``classes``."""

    pooled: list[np.ndarray]
    labels: np.ndarray
    utt_ids: list[str]
    classes: list[str]
    frames: list[list[np.ndarray]] | None = None
    speakers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.labels)
        for i, p in enumerate(self.pooled):
            if len(p) != n:
                raise FeatureStoreError(f"encoder input {i} has {len(p)} rows for {n} labels")
        if len(self.utt_ids) != n:
            raise FeatureStoreError(f"{len(self.utt_ids)} utterance ids for {n} labels")
        if self.frames is not None and any(len(f) != n for f in self.frames):
            raise FeatureStoreError("frame features do not cover every utterance")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_inputs(self) -> int:
        return len(self.pooled)

    @property
    def input_dims(self) -> list[int]:
        return [int(p.shape[-1]) for p in self.pooled]

    @property
    def input_shapes(self) -> list[list[int]]:
        """Per-row shape of each input: [D] or [L, D] (all layers)."""
        return [[int(d) for d in p.shape[1:]] for p in self.pooled]

    @property
    def frame_dims(self) -> list[int] | None:
        if self.frames is None:
            return None
        return [int(f[0].shape[-1]) if len(f) else 0 for f in self.frames]

    def subset(self, idx: Sequence[int] | np.ndarray) -> SERData:
        idx = np.asarray(idx, dtype=np.int64)
        return SERData(
            pooled=[p[idx] for p in self.pooled],
            labels=self.labels[idx],
            utt_ids=[self.utt_ids[i] for i in idx],
            classes=list(self.classes),
            frames=None if self.frames is None else [[f[i] for i in idx] for f in self.frames],
            speakers=[self.speakers[i] for i in idx] if self.speakers else [],
        )


def make_batch(data: SERData, idx: np.ndarray, *, use_frames: bool = False,
               device: str | torch.device = "cpu") -> FusionInput:
    """Rows ``idx`` of ``data`` as a FusionInput (models.collate: frames right-padded with a mask)."""
    return collate(data.pooled, idx, data.frames if use_frames else None, device=device)
