"""The feature standardiser and the head that carries it: per-dimension mean/std of each encoder
input, fitted on the training side of a fold only, stored as buffers next to the weights so one
state dict (one safetensors file) is the whole trained model, in training and in serving."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from parrot_ser.fusion.base import FusionInput


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
    def fit(cls, data: Any) -> Standardiser:
        """Statistics of ``data`` (anything with ``pooled`` arrays and ``frames`` lists, e.g. SERData)."""
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
    def identity(cls, data: Any) -> Standardiser:
        return cls.identity_dims(data.input_shapes, data.frame_dims)

    @classmethod
    def identity_dims(cls, input_dims: Sequence, frame_dims: Sequence[int] | None = None) -> Standardiser:
        """Placeholder statistics of the right shapes (to rebuild a model before loading weights).
        ``input_dims``: per input an int D or a shape [D] / [L, D]. Frames of a layer-weighted input
        ([L, D]) keep the same layer axis: their statistics are (L, F), one per layer."""
        shp = lambda d: tuple(int(x) for x in d) if isinstance(d, (list, tuple)) else (int(d),)  # noqa: E731
        z = lambda ds: [np.zeros(shp(d), np.float32) for d in ds]  # noqa: E731
        o = lambda ds: [np.ones(shp(d), np.float32) for d in ds]  # noqa: E731
        fshapes = None if frame_dims is None else [
            [shp(d)[0], int(f)] if len(shp(d)) == 2 else int(f) for d, f in zip(input_dims, frame_dims)]
        return cls(z(input_dims), o(input_dims), None if fshapes is None else z(fshapes),
                   None if fshapes is None else o(fshapes))

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
    file) holds everything: keys ``net.*`` (the fusion model) and ``std_pooled_mean_0`` ... .

    A model with dimensional outputs (regression, multitask) also carries the training side's target
    mean/std (``tgt_mean``, ``tgt_std``): its outputs after the first ``n_classes`` (the class logits)
    are z-scores that ``forward`` turns back into the data's own scale, so training, export, the
    service and ONNX all answer in that scale."""

    def __init__(self, net: torch.nn.Module, standardiser: Standardiser, *, n_classes: int = 0,
                 target_mean: np.ndarray | None = None, target_std: np.ndarray | None = None):
        super().__init__()
        self.net = net
        self.n_inputs = len(standardiser.pooled_mean)
        self.has_frames = standardiser.frames_mean is not None
        for k, v in standardiser.to_arrays().items():
            self.register_buffer(f"std_{k}", torch.from_numpy(np.ascontiguousarray(v)))
        self.n_classes = int(n_classes)
        self.has_targets = target_mean is not None
        if target_mean is not None:
            std = np.ones_like(target_mean) if target_std is None else target_std
            self.register_buffer("tgt_mean", torch.as_tensor(np.asarray(target_mean, np.float32)))
            self.register_buffer("tgt_std", torch.as_tensor(np.asarray(std, np.float32)))

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
                    m = x.frame_mask[i]
                    z = z * m.reshape(*m.shape, *([1] * (z.dim() - m.dim()))).to(z.dtype)  # (B, T[, L], F)
                frames.append(z)
        out = self.net(FusionInput(pooled, frames, x.frame_mask))
        if not self.has_targets:
            return out
        k = self.n_classes
        dims = out[:, k:] * self.tgt_std.to(out.dtype) + self.tgt_mean.to(out.dtype)
        return torch.cat([out[:, :k], dims], dim=1) if k else dims

    @property
    def last_transport(self):  # noqa: ANN201 - whatever the OT model exposes
        return getattr(self.net, "last_transport", None)
