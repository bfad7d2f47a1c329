"""Fusion models and optimal transport. ``build_model(name, input_dims, n_classes, **config)``;
each model declares its typed config and what it is on its class (``register_model``).

registry.py is the registry and the shared bases (configs, Base, TwoBranch); one module per model
family registers its models: single.py (cnn, fcn), pooled_fusion.py (concat, hadamard, gated),
batch_ot.py (ot, parrot), tokens.py (parrot-token, xattn). A new family is one new module here
with ``@register_model`` (the registry imports every module of this package but base, layers and
sinkhorn)."""

from parrot_ser.fusion.base import FusionInput, ModelSpec
from parrot_ser.fusion.registry import (
    MODELS,
    ConvConfig,
    FusionConfig,
    ModelConfig,
    OTConfig,
    build_model,
    config_keys,
    config_options,
    get_model_spec,
    list_models,
    model_options,
    register_model,
)
from parrot_ser.fusion.sinkhorn import plan_stats, sinkhorn
from parrot_ser.fusion.tokens import TokenOTConfig, XAttnConfig

__all__ = [
    "MODELS",
    "ConvConfig",
    "FusionConfig",
    "FusionInput",
    "ModelConfig",
    "ModelSpec",
    "OTConfig",
    "TokenOTConfig",
    "XAttnConfig",
    "build_model",
    "config_keys",
    "config_options",
    "get_model_spec",
    "list_models",
    "model_options",
    "plan_stats",
    "register_model",
    "sinkhorn",
]
