"""Pieces shared by the SSAM and SSAMBA Encoder wrappers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from parrot_ser.errors import (
    CheckpointError,
    ConfigError,
    EmptyAudioError,
    NonFiniteAudioError,
    NotAudioError,
)


def resolve_layers(layers: str | int | list[int], n: int) -> list[int]:
    """'last' | 'all' | int (negative counts from the end) | list of ints -> sorted unique indices."""
    if isinstance(layers, str):
        if layers == "last":
            return [n - 1]
        if layers == "all":
            return list(range(n))
        try:
            layers = [int(x) for x in layers.split(",")]
        except ValueError:
            raise ConfigError(f"layers must be 'last', 'all', an int or a list of ints, got {layers!r}") from None
    if isinstance(layers, int):
        layers = [layers]
    out = []
    for i in layers:
        j = int(i) + n if int(i) < 0 else int(i)
        if not 0 <= j < n:
            raise ConfigError(f"layer {i} out of range: this encoder has {n} layers (0..{n - 1})")
        out.append(j)
    if not out:
        raise ConfigError("layers is empty")
    return sorted(set(out))


def check_wave(w: np.ndarray, i: int, min_samples: int = 1) -> torch.Tensor:
    a = np.asarray(w)
    where = f"<waveform {i}>"
    if a.ndim != 1:
        raise NotAudioError(where, f"expected a mono 1-D waveform, got shape {a.shape}")
    if a.size < min_samples:
        raise EmptyAudioError(where, f"{a.size} samples")
    if not np.all(np.isfinite(a)):
        raise NonFiniteAudioError(where)
    return torch.from_numpy(a.astype(np.float32, copy=False))


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
