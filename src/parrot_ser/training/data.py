"""In-memory training data (one or two encoders' features + integer labels), the training-side
feature standardiser, and batching into ``FusionInput``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from parrot_ser.errors import FeatureStoreError
from parrot_ser.fusion.base import FusionInput


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


@dataclass
class Standardiser:
    """Per-dimension mean/std for each encoder input (pooled, and frames when used), fitted on the
    training side only. Stored as plain arrays so it can be saved (safetensors) and rebuilt."""

    pooled_mean: list[np.ndarray]
    pooled_std: list[np.ndarray]
    frames_mean: list[np.ndarray] | None = None
    frames_std: list[np.ndarray] | None = None

    @staticmethod
    def _std(x: np.ndarray, axis: int = 0) -> np.ndarray:
        s = x.std(axis=axis, dtype=np.float64)
        # Constant dimensions (e.g. zero padding) would divide by 0: leave them unscaled.
        return np.where(s > 1e-8, s, 1.0).astype(np.float32)

    @classmethod
    def fit(cls, data: SERData) -> Standardiser:
        pm = [p.mean(axis=0, dtype=np.float64).astype(np.float32) for p in data.pooled]
        ps = [cls._std(p) for p in data.pooled]
        fm = fs = None
        if data.frames is not None:
            fm, fs = [], []
            for fr in data.frames:
                allf = np.concatenate(fr, axis=0)
                fm.append(allf.mean(axis=0, dtype=np.float64).astype(np.float32))
                fs.append(cls._std(allf))
        return cls(pm, ps, fm, fs)

    @classmethod
    def identity(cls, data: SERData) -> Standardiser:
        return cls.identity_dims(data.input_shapes, data.frame_dims)

    @classmethod
    def identity_dims(cls, input_dims: Sequence, frame_dims: Sequence[int] | None = None) -> Standardiser:
        """Placeholder statistics of the right shapes (to rebuild a model before loading weights).
        ``input_dims``: per input an int D or a shape [D] / [L, D]."""
        shp = lambda d: tuple(int(x) for x in d) if isinstance(d, (list, tuple)) else (int(d),)  # noqa: E731
        z = lambda ds: [np.zeros(shp(d), np.float32) for d in ds]  # noqa: E731
        o = lambda ds: [np.ones(shp(d), np.float32) for d in ds]  # noqa: E731
        return cls(z(input_dims), o(input_dims), None if frame_dims is None else z(frame_dims),
                   None if frame_dims is None else o(frame_dims))

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for i, (m, s) in enumerate(zip(self.pooled_mean, self.pooled_std)):
            out[f"pooled_mean_{i}"], out[f"pooled_std_{i}"] = m, s
        if self.frames_mean is not None and self.frames_std is not None:
            for i, (m, s) in enumerate(zip(self.frames_mean, self.frames_std)):
                out[f"frames_mean_{i}"], out[f"frames_std_{i}"] = m, s
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Standardiser:
        n = len([k for k in arrays if k.startswith("pooled_mean_")])
        nf = len([k for k in arrays if k.startswith("frames_mean_")])
        g = lambda k: np.asarray(arrays[k], dtype=np.float32)  # noqa: E731
        return cls([g(f"pooled_mean_{i}") for i in range(n)], [g(f"pooled_std_{i}") for i in range(n)],
                   [g(f"frames_mean_{i}") for i in range(nf)] if nf else None,
                   [g(f"frames_std_{i}") for i in range(nf)] if nf else None)


class StandardisedModel(torch.nn.Module):
    """The trained network with its standardiser as buffers, so one state dict (one safetensors
    file) holds everything: keys ``net.*`` (the fusion model) and ``std_pooled_mean_0`` ... ."""

    def __init__(self, net: torch.nn.Module, standardiser: Standardiser):
        super().__init__()
        self.net = net
        self.n_inputs = len(standardiser.pooled_mean)
        self.has_frames = standardiser.frames_mean is not None
        for k, v in standardiser.to_arrays().items():
            self.register_buffer(f"std_{k}", torch.from_numpy(np.ascontiguousarray(v)))

    def standardiser(self) -> Standardiser:
        return Standardiser.from_arrays({k[4:]: v.cpu().numpy() for k, v in self.named_buffers()
                                         if k.startswith("std_")})

    def forward(self, x: FusionInput) -> torch.Tensor:
        b = dict(self.named_buffers())
        pooled = [(p - b[f"std_pooled_mean_{i}"]) / b[f"std_pooled_std_{i}"] for i, p in enumerate(x.pooled)]
        frames = x.frames
        if frames is not None and self.has_frames:
            frames = []
            for i, f in enumerate(x.frames):
                z = (f - b[f"std_frames_mean_{i}"]) / b[f"std_frames_std_{i}"]
                if x.frame_mask is not None:  # keep padding at exactly zero
                    z = z * x.frame_mask[i].unsqueeze(-1).to(z.dtype)
                frames.append(z)
        return self.net(FusionInput(pooled, frames, x.frame_mask))

    @property
    def last_transport(self):  # noqa: ANN201 - whatever the OT model exposes
        return getattr(self.net, "last_transport", None)


def make_batch(data: SERData, idx: np.ndarray, *, use_frames: bool = False,
               device: str | torch.device = "cpu") -> FusionInput:
    """Rows ``idx`` of ``data`` as a FusionInput (frames right-padded with a validity mask)."""
    pooled = [torch.from_numpy(np.ascontiguousarray(p[idx], dtype=np.float32)) for p in data.pooled]
    frames = masks = None
    if use_frames and data.frames is not None:
        frames, masks = [], []
        for fr in data.frames:
            seqs = [fr[i] for i in idx]
            t_max = max(int(s.shape[0]) for s in seqs)
            pad = np.zeros((len(seqs), t_max, seqs[0].shape[-1]), dtype=np.float32)
            mask = np.zeros((len(seqs), t_max), dtype=bool)
            for j, s in enumerate(seqs):
                pad[j, : len(s)] = s
                mask[j, : len(s)] = True
            frames.append(torch.from_numpy(pad))
            masks.append(torch.from_numpy(mask))
    return FusionInput(pooled, frames, masks).to(device)
