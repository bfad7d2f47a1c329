"""Fusion models and optimal transport. ``build_model(name, input_dims, n_classes, **config)``."""

from parrot_ser.fusion.base import FusionInput, ModelSpec
from parrot_ser.fusion.models import (
    CONFIG_KEYS,
    MODELS,
    ModelConfig,
    build_model,
    get_model_spec,
    list_models,
)
from parrot_ser.fusion.sinkhorn import plan_stats, sinkhorn

__all__ = [
    "CONFIG_KEYS",
    "MODELS",
    "FusionInput",
    "ModelConfig",
    "ModelSpec",
    "build_model",
    "get_model_spec",
    "list_models",
    "plan_stats",
    "sinkhorn",
]
