"""The train/serve input contract: how rows of pooled and frame features (their layer already
chosen by ``layer_choice.select_layer``) become one ``FusionInput`` (frames right-padded, with a
validity mask). Training (training/data.py) and serving (inference/predictor.py) both batch
through :func:`collate`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from parrot_ser.fusion.base import FusionInput
from parrot_ser.layer_choice import select_layer  # noqa: F401  (the one selector, re-exported)


def pad_frames(seqs: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(T_n, F) arrays -> (B, T_max, F) zero-padded float32 and (B, T_max) mask, True on real frames
    ((T_n, L, F) with layer weighting -> (B, T_max, L, F))."""
    t_max = max(int(s.shape[0]) for s in seqs)
    pad = np.zeros((len(seqs), t_max, *seqs[0].shape[1:]), dtype=np.float32)
    mask = np.zeros((len(seqs), t_max), dtype=bool)
    for j, s in enumerate(seqs):
        pad[j, : len(s)] = s
        mask[j, : len(s)] = True
    return torch.from_numpy(pad), torch.from_numpy(mask)


def _rows(p: np.ndarray | torch.Tensor, idx: np.ndarray) -> torch.Tensor:
    if isinstance(p, torch.Tensor):
        return p[torch.as_tensor(idx, device=p.device)]
    return torch.from_numpy(np.ascontiguousarray(p[idx], dtype=np.float32))


def collate(pooled: Sequence[np.ndarray | torch.Tensor], idx: Sequence[int] | np.ndarray,
            frames: Sequence[Sequence[np.ndarray]] | None = None, *, extra: Sequence[torch.Tensor] | None = None,
            device: str | torch.device | None = None) -> FusionInput:
    """Rows ``idx`` of each encoder's pooled features (N, ...) and, when given, of its frame
    sequences, as a FusionInput; ``extra``: pooled rows appended after them (the fixed anchors of a
    batch-dependent model in serving). ``device``: where the batch goes (None: where it is)."""
    idx = np.asarray(list(idx) if not isinstance(idx, np.ndarray) else idx, dtype=np.int64)
    rows = [_rows(p, idx) for p in pooled]
    if extra is not None:
        rows = [torch.cat([r, e.to(r.device, r.dtype)]) for r, e in zip(rows, extra)]
    out = FusionInput(rows)
    if frames is not None:
        padded = [pad_frames([fr[i] for i in idx]) for fr in frames]
        out = FusionInput(rows, [f for f, _ in padded], [m for _, m in padded])
    return out if device is None else out.to(device)
