"""Single-PTM heads (one encoder input): ``cnn`` (the paper's conv stack + Dense) and ``fcn`` (an MLP on
the pooled vector)."""

from __future__ import annotations

import torch

from parrot_ser.fusion.base import FusionInput
from parrot_ser.fusion.layers import (
    ConvStack,
    classifier,
)
from parrot_ser.fusion.registry import (
    Base,
    ConvConfig,
    register_model,
)


@register_model("cnn", "single PTM: paper conv stack + Dense(128)")
class CNNModel(Base):
    """Single PTM: the paper's conv stack, flatten, Dense(hidden) -> classes."""

    Config = ConvConfig

    def __init__(self, input_dims, n_classes, cfg):
        super().__init__(input_dims, cfg)
        self.input_dims_ = input_dims
        self.conv = ConvStack(input_dims[0], cfg.conv_channels, cfg.kernel_size, cfg.encoder_pool,
                              cfg.adaptive_len)
        self.head = classifier(self.conv.flat_dim, cfg.hidden, n_classes, cfg.dropout)

    def forward(self, inp: FusionInput) -> torch.Tensor:
        (x,) = self._pooled(inp)
        return self.head(self.conv(x).flatten(1))


@register_model("fcn", "single PTM: MLP on the pooled vector")
class FCNModel(Base):
    """Single PTM: MLP on the pooled vector."""

    def __init__(self, input_dims, n_classes, cfg):
        super().__init__(input_dims, cfg)
        self.input_dims_ = input_dims
        self.head = classifier(input_dims[0], cfg.hidden, n_classes, cfg.dropout)

    def forward(self, inp: FusionInput) -> torch.Tensor:
        (x,) = self._pooled(inp)
        return self.head(x)
