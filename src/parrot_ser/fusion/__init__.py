"""Fusion models and optimal transport. ``build_model(name, input_dims, n_classes, **config)``;
each model declares its typed config and what it is on its class (``register_model``)."""

from parrot_ser.fusion.base import FusionInput, ModelSpec
from parrot_ser.fusion.models import (
    MODELS,
    ConvConfig,
    FusionConfig,
    HeadConfig,
    OTConfig,
    TokenOTConfig,
    XAttnConfig,
    build_model,
    config_keys,
    get_model_spec,
    list_models,
    model_options,
    register_model,
)
from parrot_ser.fusion.sinkhorn import plan_stats, sinkhorn

__all__ = [
    "MODELS",
    "ConvConfig",
    "FusionConfig",
    "FusionInput",
    "HeadConfig",
    "ModelSpec",
    "OTConfig",
    "TokenOTConfig",
    "XAttnConfig",
    "build_model",
    "config_keys",
    "get_model_spec",
    "list_models",
    "model_options",
    "plan_stats",
    "register_model",
    "sinkhorn",
]
