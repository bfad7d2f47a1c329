"""Building blocks shared by the models: the paper's per-branch conv encoder, SUPERB-style layer
weighting, the classification head, pairwise distances and masked pooling."""

from __future__ import annotations

import torch
from torch import nn

from parrot_ser.device import REFERENCE_KERNELS  # plain torch modules instead of the kernels below
from parrot_ser.errors import ConfigError
from parrot_ser.layer_choice import select_layer

POOLS = ("max2", "adaptive")


def tracing() -> bool:
    """True while torch.onnx.export (or torch.jit.trace) records the model: the models then take
    their plain-module paths (no hand-written autograd kernels, no out= writes, no ops without an
    ONNX form), which compute the same values."""
    return bool(torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())


def adaptive_avg_pool1d(x: torch.Tensor, size: int) -> torch.Tensor:
    """nn.functional.adaptive_avg_pool1d(x, size) for (B, C, L), as the ONNX exporter can write it
    for any L (it refuses sizes that do not divide L): output i is the mean over [floor(i L / size),
    ceil((i + 1) L / size)), the same windows, as a (L, size) averaging matrix."""
    n = x.shape[-1]
    pos = torch.arange(n, device=x.device)[:, None]
    i = torch.arange(size, device=x.device)[None, :]
    start = torch.div(i * n, size, rounding_mode="floor")
    end = torch.div((i + 1) * n + size - 1, size, rounding_mode="floor")
    window = ((pos >= start) & (pos < end)).to(x.dtype)
    return x @ (window / window.sum(0, keepdim=True))


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
    """Turns one model input into (B, D): learnable layer mix, or the layer at store ``position`` of a
    (B, L, D) input (a position along the stored layer axis, not a hidden-state index)."""

    def __init__(self, n_layers: int | None, position: int = -1):
        super().__init__()
        self.mix = LayerWeighting(n_layers) if n_layers else None
        self.position = position

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mix is not None:
            return self.mix(x)
        if x.dim() == 3:
            return select_layer(x, self.position, axis=1)
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
        h = x[:, None, :]
        if REFERENCE_KERNELS or tracing():  # the hand-written kernel below does not trace (ONNX)
            return self.net(h)
        mods = list(self.net)
        for i in range(0, len(mods), 3):  # (conv, ReLU, pool) per level; the Sequential keeps the state_dict keys
            conv, _, pool = mods[i: i + 3]
            h = conv(h)
            h = relu_max2(h) if isinstance(pool, nn.MaxPool1d) else pool(torch.relu(h))
        return h


class _ReLUMax2(torch.autograd.Function):
    """ReLU then MaxPool1d(2), by hand. The forward takes the maximum of the even and odd positions
    (two strided views, no window machinery) and keeps, per output, the input index of the winner
    (ties go to the first position, as in MaxPool1d); the backward is torch's own ReLU backward
    (threshold_backward) and max-pool backward with those indices, so the gradients are MaxPool1d's
    exactly. ``python bench/run.py kernels``: 2.1-2.5x faster forward + backward than ReLU + MaxPool1d
    (whose max_pool2d_with_indices forward is the slow part) on a 32 x 64 x 3838 map; autograd through
    torch.maximum, or a bool winner mask, measured no faster than MaxPool1d."""

    generate_vmap_rule = True  # so torch.func.vmap (batched fold x seed training) can map it

    @staticmethod
    def forward(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = h.shape[-1] // 2 * 2
        a, b = h[..., 0:n:2], h[..., 1:n:2]
        base = torch.arange(0, n, 2, device=h.device)
        winner = (a < b).to(torch.int64).add_(base)  # index into h's last axis
        return torch.relu(torch.maximum(a, b)), winner

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        out, winner = output
        ctx.mark_non_differentiable(winner)
        ctx.save_for_backward(out, winner)
        ctx.in_shape = inputs[0].shape

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _unused: torch.Tensor) -> torch.Tensor:
        out, winner = ctx.saved_tensors
        g = torch.ops.aten.threshold_backward(grad, out, 0.0)  # ReLU: zero where the output is 0
        # max-pool backward on the (..., 1, L) layout max_pool1d itself uses
        like = g.new_empty(()).expand(*ctx.in_shape[:-1], 1, ctx.in_shape[-1])
        gin = torch.ops.aten.max_pool2d_with_indices_backward(
            g.unsqueeze(-2), like, [1, 2], [1, 2], [0, 0], [1, 1], False, winner.unsqueeze(-2))
        return gin.squeeze(-2)


def relu_max2(h: torch.Tensor) -> torch.Tensor:
    """MaxPool1d(2)(ReLU(h)) computed as ReLU(max(even, odd)): the same values (ReLU is monotone, so it
    commutes with max), the ReLU on half the positions, and an element-wise maximum of two strided
    views instead of max_pool2d_with_indices (see _ReLUMax2). An odd last position is dropped, as in
    MaxPool1d."""
    if torch.is_grad_enabled() and h.requires_grad:
        return _ReLUMax2.apply(h)[0]
    n = h.shape[-1] // 2 * 2  # inference (and ONNX export): plain ops, no autograd.Function to trace
    return torch.relu(torch.maximum(h[..., 0:n:2], h[..., 1:n:2]))


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


class Dropout(nn.Dropout):
    """nn.Dropout with the keep-mask drawn by ``uniform_`` and thresholded: the same
    distribution (keep with probability 1 - p, kept values scaled by 1 / (1 - p)), another random draw
    than torch's ``bernoulli_``, which measured about 2x slower forward + backward on CPU (32 x 9984, the
    flatten of a cnn head on logmel; ``python bench/run.py kernels``). Deterministic for a seed, as
    torch's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or REFERENCE_KERNELS:
            return super().forward(x)
        # out-of-place ge: functorch has no batching rule for ge_ (the batched trainer vmaps this)
        keep = torch.empty_like(x).uniform_().ge(self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * keep


def classifier(in_dim: int, hidden: int, n_classes: int, dropout: float) -> nn.Sequential:
    """Dense(hidden) + ReLU + dropout -> classes (logits; softmax lives in the loss). Models keep it as
    their ``.head`` attribute: that name is in every saved state dict (weights, bundles), so it stays."""
    return nn.Sequential(Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(), Dropout(dropout),
                         nn.Linear(hidden, n_classes))


def full_precision(like: torch.Tensor) -> torch.autocast:
    """Autocast off on ``like``'s device: for the optimal-transport step (distances by the
    |x|^2 + |y|^2 - 2xy expansion, then Sinkhorn's exp(-cost / eps) iterations), which bf16's 8-bit
    mantissa breaks (cancellation in the distances, plans that no longer meet their marginals).
    Under ``--precision bf16`` the OT step runs in float32 on float32 copies of its inputs, as
    mixed-precision training keeps reductions and solvers in float32; without autocast it changes
    nothing."""
    return torch.autocast(like.device.type, enabled=False)


def pairwise_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (..., n, m). Clamped before the sqrt so the gradient at 0 is finite
    (torch.cdist's is NaN there, which matters with grad="plan")."""
    sq = (x * x).sum(-1)[..., :, None] + (y * y).sum(-1)[..., None, :] - 2 * x @ y.transpose(-1, -2)
    return sq.clamp_min(1e-12).sqrt()


def attend(mha: nn.MultiheadAttention, q: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor | None,
           ) -> torch.Tensor:
    """``mha(q, kv, kv, key_padding_mask=~kv_mask)[0]`` in eval mode (batch_first), written with
    shapes that stay dynamic when traced: the same weights, the same values up to float rounding."""
    e, h = mha.embed_dim, mha.num_heads
    wq, wk, wv = mha.in_proj_weight.chunk(3)
    bq, bk, bv = mha.in_proj_bias.chunk(3)

    def heads(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, w, b).reshape(x.shape[0], -1, h, e // h).transpose(1, 2)

    qh, kh, vh = heads(q, wq, bq), heads(kv, wk, bk), heads(kv, wv, bv)
    scores = qh @ kh.transpose(-1, -2) / float(e // h) ** 0.5
    if kv_mask is not None:
        scores = scores.masked_fill(~kv_mask[:, None, None, :], float("-inf"))
    out = (torch.softmax(scores, -1) @ vh).transpose(1, 2).reshape(q.shape[0], -1, e)
    return mha.out_proj(out)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T, E) -> (B, E), mean over valid positions."""
    if mask is None:
        return x.mean(1)
    m = mask.to(x.dtype)[:, :, None]
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)
