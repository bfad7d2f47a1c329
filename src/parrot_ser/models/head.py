"""Building a trained head from its description, and its weights on disk.

A head = the registered fusion model (fusion/) wrapped with its standardiser
(:class:`StandardisedModel`). Its architecture is fully described by a run's ``run.json`` (model
name, input shapes, labels, frame widths, and the resolved run spec's ``model_config`` /
``inputs.use_frames``; runs written before the spec: the training config's ``dropout`` /
``use_frames`` / ``model`` options); :func:`head_from_run` rebuilds it without any training code, and
training builds its networks from the same spec through :func:`spec_options`, so serving (inference/)
and training (training/) share one definition."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parrot_ser.errors import ConfigError
from parrot_ser.models.standardise import StandardisedModel, Standardiser


def build_head(model_name: str, input_shapes: Sequence, n_classes: int, *, dropout: float | None = None,
               options: Mapping[str, Any] | None = None, use_frames: bool = False,
               frame_dims: Sequence[int] | None = None) -> torch.nn.Module:
    """The fusion/head network from the model registry. ``input_shapes``: per input D, or [D] /
    [L, D] (all layers: layer weighting over L is switched on). ``dropout``: the default of the
    model's own ``dropout`` (a ``dropout`` in ``options`` wins). Frame widths go in ``frame_dims``
    when frames are used."""
    from parrot_ser.fusion import build_model, get_model_spec

    shapes = [list(s) if isinstance(s, (list, tuple)) else [int(s)] for s in input_shapes]
    input_dims = [int(s[-1]) for s in shapes]
    spec = get_model_spec(model_name)
    if spec.n_inputs != len(input_dims):
        raise ConfigError(f"model {model_name!r} takes {spec.n_inputs} encoder input(s); "
                          f"{len(input_dims)} given")
    kw = {**({} if dropout is None else {"dropout": dropout}), **dict(options or {})}
    if any(len(s) == 2 for s in shapes):
        kw.setdefault("layer_weighting", True)
        kw.setdefault("n_layers", tuple(int(s[0]) for s in shapes))
    if use_frames:
        if not spec.uses_frames:
            raise ConfigError(f"model {model_name!r} does not use frame features; drop --frames")
        if frame_dims is not None:
            kw.setdefault("frame_dims", list(frame_dims))
    return build_model(model_name, list(input_dims), n_classes, **kw)


# Model config keys the input shapes decide (build_head fills them from the data: (L, D) inputs switch
# layer weighting on over L layers; frame widths). A run spec holds them at their defaults unless the
# user gave them, so those defaults are left to build_head.
FROM_INPUTS = ("layer_weighting", "n_layers", "frame_dims")


def spec_options(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """``build_head`` options from a run spec's resolved model config (training/spec.py): the
    data-decided keys left to build_head when unset, keys of a former spec format (``layer``, now
    ``position``) under their current names. It is our own resolved record, not user input: renamed
    silently."""
    from parrot_ser.fusion.registry import RENAMED_KEYS

    return {RENAMED_KEYS.get(k, k): v for k, v in model_config.items() if not (k in FROM_INPUTS and not v)}


def head_from_run(run: Mapping[str, Any]) -> StandardisedModel:
    """An untrained StandardisedModel with the architecture of a run (a ``run.json`` dict, or a
    bundle's model description with the bundle's ``run_spec`` as ``spec``); ``load_state_dict`` then
    fills weights and statistics. The run's resolved ``spec`` gives the model's options (runs written
    before it: their ``config``); its ``task`` (training/tasks.py; absent = classification) gives the
    output size and the dimensions."""
    spec = run.get("spec")
    if spec:
        options, dropout, use_frames = spec_options(spec["model_config"]), None, bool(spec["inputs"]["use_frames"])
    else:
        cfg = run.get("config") or {}
        options, dropout, use_frames = cfg.get("model") or {}, cfg.get("dropout"), bool(cfg.get("use_frames"))
    shapes = run.get("input_shapes") or run["input_dims"]
    std = Standardiser.identity_dims(shapes, run.get("frame_dims"))
    task = run.get("task") or {}
    dims = list(task.get("dims") or [])
    n_classes = len(run.get("labels") or [])
    net = build_head(run["model"], shapes, n_classes + len(dims), dropout=dropout, options=options,
                     use_frames=use_frames, frame_dims=run.get("frame_dims"))
    if not dims:
        return StandardisedModel(net, std)
    return StandardisedModel(net, std, n_classes=n_classes, target_mean=np.zeros(len(dims), np.float32),
                             target_std=np.ones(len(dims), np.float32))


def save_weights(model: torch.nn.Module | Mapping[str, torch.Tensor], path: str | Path,
                 metadata: Mapping[str, str] | None = None) -> Path:
    """A model's (or a state dict's) tensors as safetensors, written atomically (a crash leaves no
    half file); ``metadata``: text fields stored in the file header."""
    from safetensors.torch import save_file

    from parrot_ser.files import atomic_path

    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    sd = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=dict(metadata) if metadata else None)
    return Path(path)


def load_weights(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Fill ``model`` from a safetensors file (strict: every key, every shape) and set it to eval."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()
