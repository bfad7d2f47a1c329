"""Pieces shared by the SSAM and SSAMBA Encoder wrappers (encoders/ssam.py, encoders/ssamba.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parrot_ser.audio import check_waveform
from parrot_ser.encoders.base import Encoder, EncoderIdentity, EncoderSpec
from parrot_ser.errors import (
    CheckpointError,
    ConfigError,
)


def check_wave(w: np.ndarray, i: int) -> torch.Tensor:
    """Waveform ``i`` of a batch through the one waveform check (parrot_ser.audio), as a tensor."""
    return torch.from_numpy(check_waveform(w, f"<waveform {i}>"))


def missing_checkpoint(family: str, name: str) -> CheckpointError:
    where = {
        "ssam": "the Google Drive folder linked from the README of github.com/SarthakYadav/audio-mamba-official "
                "(files named checkpoint-<epoch>.pth)",
        "ssamba": "the Google Drive folder linked from github.com/SiavashShams/ssamba or the Hugging Face repo "
                  "attentionisallyouneed369/ssamba (files like amba_base_400.pth)",
    }[family]
    return CheckpointError(f"{name}: weights are not on a model hub this tool can reach; download them from "
                           f"{where} and pass the file with --checkpoint (or use random_init for a seeded, "
                           f"untrained model)")


def check_options(options: dict, allowed: set[str], name: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"{name}: unknown option(s) {unknown}; known: {sorted(allowed)}")


def int_option(options: dict, key: str, default: int | None, name: str, minimum: int = 1,
               allow_none: bool = False) -> int | None:
    """An integer encoder option from --option text (YAML-parsed, so ``None`` arrives as the string
    "None") or Python. With ``allow_none``, None/"none"/"null"/"auto" (any case) give None; anything
    else must be an int >= ``minimum``; a bad value is a ConfigError naming the option."""
    value = options.get(key, default)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "auto")):
        if allow_none:
            return None
        raise ConfigError(f"{name}: option {key} must be an integer, got {value!r}")
    try:
        if isinstance(value, bool) or float(value) != int(float(value)):
            raise ValueError
        out = int(float(value))
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: option {key} must be an integer, got {value!r}") from None
    if out < minimum:
        raise ConfigError(f"{name}: option {key} must be >= {minimum}, got {out}")
    return out


def random_init_only(options: dict, key: str, name: str, random_init: bool, from_checkpoint: int) -> None:
    """Options that shape an untrained model only: with a checkpoint the checkpoint decides, so a
    different value would be silently ignored yet recorded in the identity. Refuse it instead."""
    if random_init or key not in options:
        return
    if int_option(options, key, from_checkpoint, name) != from_checkpoint:
        raise ConfigError(f"{name}: option {key}={options[key]} applies only with random_init; the checkpoint "
                          f"has {key} {from_checkpoint} (drop the option)")


def checkpoint_path(checkpoint: str | None) -> Path | None:
    return None if checkpoint is None else Path(checkpoint).expanduser()


# Model widths D of the released sizes (SPEC section 3); both families use the same three.
SIZES = {"tiny": 192, "small": 384, "base": 768}


def size_dim(spec: EncoderSpec, family: str) -> int:
    """D of ``ssam-base`` / ``ssamba-tiny`` ...: the size is the part of the name after the dash."""
    size = spec.name.split("-", 1)[1]
    if size not in SIZES:
        raise CheckpointError(f"{spec.name}: unknown {family.upper()} size {size!r}; known: {sorted(SIZES)}")
    return SIZES[size]


def start_build(spec: EncoderSpec, family: str, checkpoint: str | None, random_init: bool, options: dict,
                allowed: set[str]) -> tuple[int, Path | None]:
    """The checks every Mamba ``build`` opens with -> (D, checkpoint path or None)."""
    check_options(options, allowed, spec.name)
    dim = size_dim(spec, family)
    path = checkpoint_path(checkpoint)
    if path is None and not random_init:
        raise missing_checkpoint(family, spec.name)
    return dim, path


def seeded(seed: int, make: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``make(*args, **kwargs)`` under ``torch.manual_seed(seed)``, the caller's RNG state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make(*args, **kwargs)


def mamba_identity(spec: EncoderSpec, path: Path | None, random_init: bool, seed: int, layers: list[int],
                   preprocessing: dict) -> EncoderIdentity:
    """The identity of a Mamba encoder: the checkpoint's (content) sha256, or the seed when untrained."""
    from parrot_ser.encoders.checkpoint import checkpoint_identity_sha

    return EncoderIdentity(
        name=spec.name, checkpoint=None if random_init else str(path),
        checkpoint_sha256=None if random_init else checkpoint_identity_sha(path), random_init=random_init,
        seed=seed if random_init else None, layers=layers, preprocessing=preprocessing)


class MambaEncoder(Encoder):
    """An Encoder around a Mamba network; ``settings``: the family's own knobs, kept as attributes."""

    def __init__(self, spec: EncoderSpec, model: torch.nn.Module, layers: list[int], identity: EncoderIdentity,
                 device: str, dtype: torch.dtype, **settings: Any):
        self.spec, self.model, self.layers, self.identity = spec, model.eval(), layers, identity
        self.device, self.dtype = device, dtype
        self.ignored_keys: list[str] = []  # checkpoint keys of pretraining heads that were skipped
        for key, value in settings.items():
            setattr(self, key, value)
