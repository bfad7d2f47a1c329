"""The model registry (``register_model``, ``build_model``, options) and what the model families share:
the typed configs they extend and the base classes ``Base`` / ``TwoBranch``. The models live one
family per module (single.py, pooled_fusion.py, batch_ot.py, tokens.py; fusion/__init__.py).

Input convention for two-input models: ``pooled[0]`` is the Mamba PTM (branch p, R_p) and
``pooled[1]`` the attention PTM (branch q, R_q). Each pooled input is (B, D), or (B, L, D) for
several layers (``layer_weighting=True`` learns a softmax mix over L, SUPERB style; otherwise the
layer at store ``position`` (default the last) is taken).
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from parrot_ser.errors import ConfigError
from parrot_ser.fusion.base import FusionInput, ModelSpec
from parrot_ser.fusion.layers import (
    BranchEncoder,
    InputSelect,
    classifier,
    tracing,
)
from parrot_ser.fusion.sinkhorn import plan_stats, sinkhorn
from parrot_ser.registry import Option, Registry, coerce, dataclass_options

# --- typed configs: one per family, defaults from the paper (SPEC section 1) --------------------------


@dataclass
class ModelConfig:
    """Keys every model takes (fcn)."""

    dropout: float = 0.3
    hidden: int = 128
    layer_weighting: bool = False
    n_layers: int | tuple[int, ...] | None = None  # layers L per input, needed with layer_weighting
    # A POSITION along the stored layer axis of (B, L, D) inputs without layer weighting (InputSelect),
    # not a hidden-state index (a "layer" everywhere else, layer_choice.py): training and serving
    # select the layer before the model, so runs keep the default. Until RunSpec format /2 the key was
    # "layer"; that key is still read, with a one-line note (model_options).
    position: int = -1

    def validate(self) -> None:
        if isinstance(self.n_layers, list):
            self.n_layers = tuple(self.n_layers)
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.layer_weighting and not self.n_layers:
            raise ConfigError("layer_weighting=True needs n_layers (layers per input, e.g. 13 for a base PTM)")


@dataclass
class ConvConfig(ModelConfig):
    """The paper's conv stack (cnn and every two-branch model)."""

    conv_channels: tuple[int, ...] = (64, 128)
    kernel_size: int = 3
    # "max2": the paper's MaxPool1d(2) after each conv (14.7M-parameter Linear for 3840 dims);
    # "adaptive": the last pooling is AdaptiveMaxPool1d(adaptive_len), a fixed small flatten.
    encoder_pool: str = "max2"
    adaptive_len: int = 32

    def validate(self) -> None:
        super().validate()
        self.conv_channels = tuple(int(c) for c in self.conv_channels)


@dataclass
class FusionConfig(ConvConfig):
    """Two branches embedded to ``embed_dim`` (concat, hadamard, gated)."""

    embed_dim: int = 120


@dataclass
class OTConfig(FusionConfig):
    """Sinkhorn optimal transport (ot, parrot; parrot-token adds its token sets)."""

    ot_eps: float = 0.05
    ot_iters: int = 50
    ot_grad: str = "stop"  # "stop": plan without gradient (re-implementation); "plan": through Sinkhorn
    ot_cost_scale: str | None = "max"  # cost / max before Sinkhorn, so eps is scale-free
    track_transport: bool = True  # keep the last plan + plan_stats in model.last_transport

    def validate(self) -> None:
        super().validate()
        if self.ot_grad not in ("stop", "plan"):
            raise ConfigError(f"ot_grad must be 'stop' or 'plan', got {self.ot_grad!r}")
        if self.ot_cost_scale in ("none", "None"):
            self.ot_cost_scale = None
        if self.ot_cost_scale not in ("max", "mean", None):
            raise ConfigError(f"ot_cost_scale must be 'max', 'mean' or None, got {self.ot_cost_scale!r}")


# --- the registry --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelEntry:
    spec: ModelSpec
    factory: Callable[[list[int], int, ModelConfig], nn.Module]
    config: type[ModelConfig]


# Models are the classes of the family modules of this package (single.py, ...; one
# decorated class each); the package's helpers are not providers.
MODELS: Registry[ModelEntry] = Registry("model", package="parrot_ser.fusion", skip=("base", "layers", "sinkhorn"))


def register_model(name: str, description: str) -> Callable[[type], type]:
    """Class decorator: register a model under ``name``. What the model is (``n_inputs``,
    ``batch_dependent``, ``uses_frames``) and its typed ``Config`` are read from the class, where
    they are declared once."""
    def deco(cls: type) -> type:
        spec = ModelSpec(name, int(cls.n_inputs), bool(cls.batch_dependent), bool(cls.uses_frames), description)
        MODELS.add(name, ModelEntry(spec, cls, cls.Config))
        return cls

    return deco


def config_keys() -> tuple[str, ...]:
    """Every key some model's config takes."""
    return tuple(sorted({f.name for _, e in MODELS.items() for f in fields(e.config)}))


# The model option ``position`` was called ``layer`` (a word that means a hidden-state index everywhere
# else): configs, run.json files and bundles that still say ``layer`` are read as ``position``.
RENAMED_KEYS = {"layer": "position"}
RENAMED_NOTE = ("note: the model option 'layer' (a position along the stored layer axis) is now spelled "
                "'position'; 'layer' still works")
_noted: set[str] = set()


def _renamed(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the old key names mapped to the new ones (a one-line note once per process)."""
    out = {}
    for key, value in options.items():
        new = RENAMED_KEYS.get(key)
        if new is not None and new not in options:
            if key not in _noted:
                _noted.add(key)
                print(RENAMED_NOTE, file=sys.stderr)
            key = new
        out[key] = _renamed(value) if isinstance(value, Mapping) else value
    return out


def model_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of model ``name`` out of a TrainConfig ``model`` mapping: flat keys apply to every
    model that takes them (ignored by the others), a block keyed by a model name (``parrot: {ot_eps:
    0.1}``) to that model only and wins. A key no model takes, or a block key its model does not take,
    is a one-line ConfigError; an old key name (``layer``) is read as its new one (``position``)."""
    own = {f.name for f in fields(MODELS.get(name).config)}
    flat, block = {}, {}
    for key, value in _renamed(options).items():
        if key in MODELS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"model config block {key!r} must be a mapping of keys, got {value!r}")
            takes = {f.name for f in fields(MODELS.get(key).config)}
            unknown = sorted(set(value) - takes)
            if unknown:
                raise ConfigError(f"unknown model config key(s) {', '.join(unknown)} for model {key!r}; "
                                  f"known: {', '.join(sorted(takes))}")
            if key == name:
                block = dict(value)
        elif key in own:
            flat[key] = value
        elif key not in config_keys():
            raise ConfigError(f"unknown model config key(s) {key}; known: {', '.join(config_keys())} "
                              f"(or a block per model: {', '.join(MODELS.names())})")
    return {**flat, **block}


def ignored_options(name: str, options: Mapping[str, Any]) -> list[str]:
    """What of a TrainConfig ``model`` mapping model ``name`` leaves out (:func:`model_options`' rule):
    flat keys it does not take (other models' keys) and other models' blocks (``"the parrot: block"``)."""
    own = {f.name for f in fields(MODELS.get(name).config)}
    flat = [k for k in options if k not in MODELS and RENAMED_KEYS.get(k, k) not in own]
    return [*flat, *(f"the {k}: block" for k in options if k in MODELS and k != name)]


def _typed(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Model options checked against their declared types: text (the CLI's --model-option, a quoted
    YAML value) typed by ``registry.coerce``; a value of another type is a one-line ConfigError (a
    hidden size of 1.5 or an ot_eps of "abc" would otherwise fail deep inside torch). Values are not
    converted otherwise (an int for a float stays an int: the run identity sees what was given)."""
    declared = config_options(name)
    out = {}
    for key, value in options.items():
        opt = declared.get(key)
        typ = opt.type if opt is not None else None
        if typ in (bool, int, float):
            value = coerce(opt, value, f"model {name!r}")
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (isinstance(value, bool) if typ is bool else number and (typ is float or isinstance(value, int))):
                raise ConfigError(f"model {name!r}: option {key} expects {typ.__name__}, got {value!r}")
        out[key] = value
    return out


def make_config(name: str, options: Mapping[str, Any]) -> ModelConfig:
    cfg = MODELS.get(name).config(**_typed(name, model_options(name, options)))
    cfg.validate()
    return cfg


def config_options(name: str) -> dict[str, Option]:
    """Model ``name``'s config keys with their declared types and defaults (``parrot-ser models show``)."""
    return dataclass_options(MODELS.get(name).config)


def list_models() -> list[ModelSpec]:
    return [entry.spec for _, entry in MODELS.items()]


def get_model_spec(name: str) -> ModelSpec:
    return MODELS.get(name).spec


def build_model(name: str, input_dims: list[int], n_classes: int, **config: Any) -> nn.Module:
    """Build a registered model. ``config``: keys of the model's typed config, flat or in a block per
    model (see :func:`model_options`; unknown keys are an error). The model carries ``spec``,
    ``config`` (a plain dict of its own config), ``input_dims`` and ``n_classes``."""
    entry = MODELS.get(name)
    dims = [int(d) for d in input_dims]
    if len(dims) != entry.spec.n_inputs:
        raise ConfigError(f"model {name!r} takes {entry.spec.n_inputs} input(s), got {len(dims)} ({dims})")
    if any(d < 1 for d in dims):
        raise ConfigError(f"model {name!r}: input dims must be positive, got {dims}")
    if n_classes < 1:  # outputs: the class logits and/or one per dimension (training/tasks.py)
        raise ConfigError(f"model {name!r}: need at least 1 output, got {n_classes}")
    cfg = make_config(name, config)
    model = entry.factory(dims, int(n_classes), cfg)
    model.spec = entry.spec
    model.config = asdict(cfg)
    model.input_dims = dims
    model.n_classes = int(n_classes)
    return model


# ---------------------------------------------------------------------------------------------
# Base classes


class Base(nn.Module):
    # What a model is, declared once on its class (register_model reads them).
    n_inputs = 1
    batch_dependent = False  # True when a prediction depends on the other rows of the batch (paper OT)
    uses_frames = False  # True when the model can consume frame features (FusionInput.frames)
    Config: type[ModelConfig] = ModelConfig
    # Set by the batched trainer on the module it maps with torch.func.vmap: the OT solver then
    # avoids out= writes, which vmap cannot batch (same numbers).
    vmap_safe = False

    def __init__(self, input_dims: list[int], cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        n_layers = cfg.n_layers if cfg.layer_weighting else None
        if isinstance(n_layers, int):
            n_layers = (n_layers,) * len(input_dims)
        if n_layers is not None and len(n_layers) != len(input_dims):
            raise ConfigError(f"n_layers {n_layers} does not match the {len(input_dims)} inputs")
        self.select = nn.ModuleList(
            InputSelect(n_layers[i] if n_layers else None, cfg.position) for i in range(len(input_dims))
        )
        self.last_transport: dict | None = None

    def _pooled(self, inp: FusionInput) -> list[torch.Tensor]:
        if len(inp.pooled) != self.n_inputs:
            raise ConfigError(f"model expects {self.n_inputs} pooled input(s), got {len(inp.pooled)}")
        xs = [sel(x) for sel, x in zip(self.select, inp.pooled)]
        for i, (x, d) in enumerate(zip(xs, self.input_dims_)):
            if x.shape[-1] != d:
                raise ConfigError(f"input {i} has {x.shape[-1]} features, the model was built for {d}")
        return xs

    def _keep(self, plan: torch.Tensor, **extra) -> None:
        if self.cfg.track_transport:
            self.last_transport = {"plan": plan.detach(), "stats": plan_stats(plan),
                                   **{k: (v.detach() if isinstance(v, torch.Tensor) else v)
                                      for k, v in extra.items()}}

    def _sinkhorn(self, cost: torch.Tensor, mask_a=None, mask_b=None) -> torch.Tensor:
        # Fixed iteration count (tol=None): an early stop decided over the whole batch would make
        # per-utterance results depend on the batch.
        c = self.cfg
        # Costs here are distances (>= 0): divided by their max they lie in [0, 1], so the "auto"
        # domain choice (scaling while max cost / eps <= 30 in float32) is known without looking at
        # the data. Deciding it here gives the same plans and no data-dependent branch, which
        # torch.func.vmap (batched training of stacked models) cannot trace.
        domain = "auto"
        if c.ot_cost_scale == "max" and cost.dtype in (torch.float32, torch.float64):
            domain = "scaling" if 1.0 / c.ot_eps <= (30.0 if cost.dtype == torch.float32 else 300.0) else "log"
        return sinkhorn(cost, mask_a=mask_a, mask_b=mask_b, eps=c.ot_eps, n_iters=c.ot_iters,
                        normalize_cost=c.ot_cost_scale, grad=c.ot_grad, domain=domain,
                        preallocate=not (self.vmap_safe or tracing()))  # out= writes do not trace


class TwoBranch(Base, ABC):
    """R_p, R_q from two BranchEncoders; subclasses say how they are fused (``width`` x embed_dim)."""

    n_inputs = 2
    width = 2
    Config: type[ModelConfig] = FusionConfig

    def __init__(self, input_dims, n_classes, cfg):
        super().__init__(input_dims, cfg)
        self.input_dims_ = input_dims
        enc = lambda d: BranchEncoder(d, cfg.conv_channels, cfg.kernel_size, cfg.embed_dim,  # noqa: E731
                                      cfg.encoder_pool, cfg.adaptive_len)
        self.enc_p, self.enc_q = enc(input_dims[0]), enc(input_dims[1])
        self.head = classifier(self.width * cfg.embed_dim, cfg.hidden, n_classes, cfg.dropout)

    @abstractmethod
    def fuse(self, rp, rq, fp, fq, inp: FusionInput) -> torch.Tensor:
        """Fuse R_p, R_q (B, embed_dim) (and the conv feature maps fp, fq) into the head input."""

    def forward(self, inp: FusionInput) -> torch.Tensor:
        xp, xq = self._pooled(inp)
        rp, fp = self.enc_p(xp)
        rq, fq = self.enc_q(xq)
        z = self.fuse(rp, rq, fp, fq, inp)
        if z.shape[-1] != self.width * self.cfg.embed_dim:  # a static shape: free, and vmap-safe
            raise ConfigError(f"{type(self).__name__}.fuse gave {z.shape[-1]} features; its width {self.width} x "
                              f"embed_dim {self.cfg.embed_dim} = {self.width * self.cfg.embed_dim} expected")
        return self.head(z)
