"""Building blocks shared by the models: the paper's per-branch conv encoder, SUPERB-style layer
weighting, the classification head, pairwise distances and masked pooling."""

from __future__ import annotations

import torch
from torch import nn

from parrot_ser.errors import ConfigError

POOLS = ("max2", "adaptive")


class LayerWeighting(nn.Module):
    """SUPERB-style learnable layer mix: softmax(w) over L layers, (B, L, D) -> (B, D)."""

    def __init__(self, n_layers: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(n_layers))  # uniform at start, as in s3prl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.weights.numel():
            raise ConfigError(
                f"layer weighting expects (B, {self.weights.numel()}, D) inputs, got {tuple(x.shape)}"
            )
        w = torch.softmax(self.weights, 0).to(x.dtype)
        return torch.einsum("l,bld->bd", w, x)


class InputSelect(nn.Module):
    """Turns one model input into (B, D): learnable layer mix, or one fixed layer for (B, L, D)."""

    def __init__(self, n_layers: int | None, layer: int = -1):
        super().__init__()
        self.mix = LayerWeighting(n_layers) if n_layers else None
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mix is not None:
            return self.mix(x)
        if x.dim() == 3:
            return x[:, self.layer]
        if x.dim() != 2:
            raise ConfigError(f"pooled features must be (B, D) or (B, L, D), got {tuple(x.shape)}")
        return x


class ConvStack(nn.Module):
    """The paper's conv stack: the pooled vector read as a 1-channel signal over the feature axis;
    per level Conv1d(k, no padding) + ReLU + pooling. ``pool="max2"`` is the paper (MaxPool1d(2),
    the flattened output grows with the input: 128 x 958 for 3840 dims); ``"adaptive"`` replaces
    the last pooling with AdaptiveMaxPool1d(adaptive_len) so the flatten has a fixed, small width."""

    def __init__(self, in_dim: int, channels: tuple[int, ...] = (64, 128), kernel_size: int = 3,
                 pool: str = "max2", adaptive_len: int = 32):
        super().__init__()
        if pool not in POOLS:
            raise ConfigError(f"encoder_pool must be one of {POOLS}, got {pool!r}")
        layers: list[nn.Module] = []
        c_in, length = 1, in_dim
        for i, c_out in enumerate(channels):
            layers += [nn.Conv1d(c_in, c_out, kernel_size), nn.ReLU()]
            length = length - kernel_size + 1
            last = i == len(channels) - 1
            if pool == "adaptive" and last:
                layers.append(nn.AdaptiveMaxPool1d(adaptive_len))
                length = adaptive_len if length > 0 else length
            else:
                layers.append(nn.MaxPool1d(2))
                length //= 2
            if length < 1:
                raise ConfigError(
                    f"input dim {in_dim} is too small for the conv stack {tuple(channels)} "
                    f"(kernel {kernel_size}, pool {pool})"
                )
            c_in = c_out
        self.net = nn.Sequential(*layers)
        self.channels = c_in
        self.length = length

    @property
    def flat_dim(self) -> int:
        return self.channels * self.length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, C, T) feature positions."""
        return self.net(x[:, None, :])


class BranchEncoder(nn.Module):
    """Conv stack + flatten + Linear -> embed_dim: R_p / R_q of the paper. ``forward`` returns the
    embedding and the conv feature map (B, C, T) (the token set of the parrot-token / xattn models)."""

    def __init__(self, in_dim: int, channels: tuple[int, ...], kernel_size: int, embed_dim: int,
                 pool: str, adaptive_len: int):
        super().__init__()
        self.conv = ConvStack(in_dim, channels, kernel_size, pool, adaptive_len)
        self.proj = nn.Linear(self.conv.flat_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.conv(x)
        return self.proj(fmap.flatten(1)), fmap


def head(in_dim: int, hidden: int, n_classes: int, dropout: float) -> nn.Sequential:
    """Dense(hidden) + ReLU + dropout -> classes (logits; softmax lives in the loss)."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, n_classes))


def pairwise_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (..., n, m). Clamped before the sqrt so the gradient at 0 is finite
    (torch.cdist's is NaN there, which matters with grad="plan")."""
    sq = (x * x).sum(-1)[..., :, None] + (y * y).sum(-1)[..., None, :] - 2 * x @ y.transpose(-1, -2)
    return sq.clamp_min(1e-12).sqrt()


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T, E) -> (B, E), mean over valid positions."""
    if mask is None:
        return x.mean(1)
    m = mask.to(x.dtype)[:, :, None]
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)
