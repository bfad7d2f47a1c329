"""The HEAR 2021 API (https://hearbenchmark.com, "common API") for every registered encoder.

    import parrot_ser.hear as hear
    model = hear.load_model("ssam-base=/models/ssam-base.safetensors")
    scene = hear.get_scene_embeddings(audio, model)            # (n_sounds, scene_embedding_size)
    emb, ts = hear.get_timestamp_embeddings(audio, model)      # (n_sounds, T, size), (n_sounds, T) ms

    hear-validator parrot_ser.hear -m "whisper-base=/path/to/whisper-base"

``audio``: a float tensor (n_sounds, n_samples) of mono audio in [-1, 1] at ``model.sample_rate``
(16 kHz for every encoder here). ``model`` is a ``torch.nn.Module``; ``model.to(device)`` moves the
encoder.

How an encoder is chosen (``model_file_path``, the one string the HEAR tools pass):

- ``NAME``: a registered encoder (``parrot-ser encoders list``) with its default checkpoint (an HF id
  looked up in the local HF cache; the Mamba families have none, see below);
- ``NAME=CHECKPOINT``: with a checkpoint (an official SSAM / SSAMBA file or folder, a converted
  .safetensors, a ``save_pretrained`` folder or an HF id);
- then any ``,key=value`` settings: ``random_init=true``, ``seed=0``, ``layers=last|all|3|3;6``
  (several layers are concatenated on the feature axis) and the encoder's own options (e.g.
  ``depth=2``, ``corrected_grouping=true``); values are read as YAML scalars;
- or the path of a ``.json`` file ``{"encoder": NAME, "checkpoint": ..., "random_init": ...,
  "seed": ..., "layers": ..., "options": {...}}``;
- an empty string (HEAR's "no weights file") reads the same text from ``PARROT_HEAR_MODEL``.

Examples: ``"ssam-tiny,random_init=true,depth=2"`` (an untrained Mamba, for testing),
``"hubert-base=/models/hubert-base-ls960,layers=6"``, ``"logmel"``.

Embeddings: the timestamp embeddings are the encoder's frame features (the ones the feature store
keeps), the scene embedding its pooled vector (the mean over frames; logmel: mean and std).

Timestamps (milliseconds, the centre of each frame where the family defines one):

- ssam-*: as the official SSAM HEAR runtime (audio-mamba-official ``hear_api/feature_helper.py``):
  ``i * duration / n_frames``; n_frames comes from the 200-frame chunking and padded-tail trim, so the
  step is 38.5-40 ms depending on the length (39.2 ms for 2 s), not a fixed 40 ms;
- ssamba-*: column t' covers fbank frames t' * tstride ... + 15 (10 ms shift, 25 ms window): centre
  ``(t' * tstride + 7.5) * 10 + 12.5``;
- wav2vec 2.0-style HF models: frame i covers samples ``hop * i ... + receptive_field`` of the conv
  feature encoder (320 and 400 for every released model): centre ``(hop * i + rf / 2) / 16``;
- whisper-*: 20 ms per frame, centred at ``20 i`` (centred 10 ms mel frames, stride-2 conv);
- logmel: 10 ms, centred STFT frames at ``10 i``;
- resemblyzer: centred 10 ms mel frames, every ``frame_stride``-th LSTM state: ``10 * frame_stride * i``;
- crepe-*: centred 64 ms windows every ``hop_ms``: ``hop_ms * i``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parrot_ser.errors import ConfigError
from parrot_ser.registry import typed_value

ENV_MODEL = "PARROT_HEAR_MODEL"
_SETTINGS = {"random_init", "seed", "layers", "device"}

__all__ = ["HearModel", "get_scene_embeddings", "get_timestamp_embeddings", "load_model", "parse_model_spec"]


def parse_model_spec(text: str) -> dict[str, Any]:
    """``NAME[=CHECKPOINT][,key=value...]`` or a .json file -> build_encoder arguments (module doc)."""

    text = (text or "").strip()
    if not text:
        raise ConfigError(f"HEAR load_model: no encoder given; pass 'NAME[=CHECKPOINT][,key=value...]' or set "
                          f"{ENV_MODEL} (e.g. 'ssam-tiny,random_init=true' or 'whisper-base=/models/whisper-base')")
    if text.endswith(".json") and Path(text).is_file():
        try:
            d = json.loads(Path(text).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{text}: not valid JSON ({e})") from None
        if not isinstance(d, dict) or "encoder" not in d:
            raise ConfigError(f"{text}: expected an object with an 'encoder' key")
        unknown = set(d) - {"encoder", "checkpoint", "options"} - _SETTINGS
        if unknown:
            raise ConfigError(f"{text}: unknown key(s) {', '.join(sorted(unknown))}")
        out = {"name": str(d["encoder"]), "checkpoint": d.get("checkpoint"), "options": dict(d.get("options") or {})}
        out.update({k: d[k] for k in _SETTINGS if k in d})
        return out
    head, *pairs = text.split(",")
    name, _, ckpt = head.partition("=")
    out = {"name": name.strip(), "checkpoint": ckpt.strip() or None, "options": {}}
    for p in pairs:
        key, sep, val = p.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"HEAR model spec {text!r}: expected key=value after a comma, got {p!r}")
        key = key.strip()
        # layers: "last", "all", "6" or "3;6;9" (commas separate the settings themselves), kept as
        # text for the one layer parser (layer_choice, through build_encoder); other values typed by
        # the one rule (registry.typed_value: YAML scalars here, declared types in build_encoder)
        val = val.strip()
        value = val if key == "layers" else typed_value(val, None, "HEAR model spec")
        (out if key in _SETTINGS else out["options"])[key] = value
    return out


def _timestamps_ms(encoder: Any, n_samples: int, n_frames: int) -> np.ndarray:
    """Frame times in ms for one clip (module doc)."""
    fam = encoder.spec.family
    sr = float(encoder.sample_rate)
    i = np.arange(n_frames, dtype=np.float64)
    if fam == "ssam":
        return i * (1000.0 * n_samples / sr) / max(1, n_frames)
    if fam == "ssamba":
        t = float(encoder.model.tstride)
        return (i * t + 7.5) * 10.0 + 12.5
    if fam == "logmel":
        return i * 1000.0 / encoder.spec.frame_rate
    if getattr(encoder, "is_whisper", False):
        return i * 20.0
    if fam == "resemblyzer":  # centred 25 ms STFT frames every 10 ms, every frame_stride-th state kept
        return i * 10.0 * encoder.frame_stride
    if fam == "crepe":  # centred 64 ms windows every hop
        return i * 1000.0 * encoder.hop / sr
    cfg = encoder.model.config  # wav2vec 2.0 family: the conv feature encoder's receptive field
    rf, hop = 1, 1
    for k, s in zip(cfg.conv_kernel, cfg.conv_stride):
        rf += (k - 1) * hop
        hop *= s
    return (i * hop + rf / 2.0) * 1000.0 / sr


class HearModel(torch.nn.Module):
    """A parrot_ser encoder behind the HEAR attributes. ``encoder.model`` (when the encoder has a
    torch model) is a submodule, so the usual ``.to()`` / ``.eval()`` / ``.parameters()`` work."""

    def __init__(self, encoder: Any, description: str = ""):
        super().__init__()
        self.encoder = encoder
        net = getattr(encoder, "model", None)
        if isinstance(net, torch.nn.Module):
            self.net = net
        self.description = description or encoder.spec.name
        self.sample_rate = int(encoder.sample_rate)
        # Probe once: the sizes depend on the checkpoint's config (e.g. a tiny random-init HF model)
        # and on the chosen layers, not only on the registry's numbers.
        rng = np.random.default_rng(0)
        probe = (0.1 * rng.standard_normal(self.sample_rate)).astype(np.float32)
        eu = encoder.encode([probe], frames=True)[0]
        self.scene_embedding_size = int(np.asarray(eu.pooled).reshape(-1).shape[0])
        self.timestamp_embedding_size = int(eu.frames.shape[0] * eu.frames.shape[2])

    def to(self, *args: Any, **kwargs: Any) -> HearModel:
        super().to(*args, **kwargs)
        # .to(device), .to(device, dtype), .to(device=...): the encoder keeps its own device for inputs
        device = kwargs.get("device", args[0] if args else None)
        if isinstance(device, (str, torch.device)):
            self.encoder.to(str(device))
        return self

    def extra_repr(self) -> str:
        return self.description

    def _waves(self, audio: Any) -> list[np.ndarray]:
        a = torch.as_tensor(audio)
        if a.ndim != 2:
            raise ConfigError(f"HEAR audio must be (n_sounds, n_samples); got shape {tuple(a.shape)}")
        return [np.ascontiguousarray(x, dtype=np.float32) for x in a.detach().float().cpu().numpy()]

    @torch.no_grad()
    def scene(self, audio: Any) -> torch.Tensor:
        waves = self._waves(audio)
        if not waves:
            return torch.zeros(0, self.scene_embedding_size)
        out = [np.asarray(eu.pooled, dtype=np.float32).reshape(-1) for eu in self.encoder.encode(waves)]
        return torch.from_numpy(np.stack(out))

    @torch.no_grad()
    def timestamps(self, audio: Any) -> tuple[torch.Tensor, torch.Tensor]:
        waves = self._waves(audio)
        if not waves:
            return torch.zeros(0, 0, self.timestamp_embedding_size), torch.zeros(0, 0)
        res = self.encoder.encode(waves, frames=True)
        # (L, T, F) -> (T, L * F): several layers side by side on the feature axis
        frames = [np.asarray(eu.frames, dtype=np.float32).transpose(1, 0, 2).reshape(eu.frames.shape[1], -1)
                  for eu in res]
        n = min(f.shape[0] for f in frames)  # equal-length sounds give equal counts; guard anyway
        emb = torch.from_numpy(np.stack([f[:n] for f in frames]))
        ts = torch.from_numpy(np.stack([_timestamps_ms(self.encoder, len(w), n) for w in waves]).astype(np.float32))
        return emb, ts


def load_model(model_file_path: str = "", **overrides: Any) -> HearModel:
    """HEAR ``load_model``: ``model_file_path`` names the encoder and its checkpoint (module doc);
    ``overrides`` (Python callers): the same keys as the spec (checkpoint, random_init, seed,
    layers, device, or encoder options)."""
    from parrot_ser.encoders import build_encoder

    text = model_file_path or os.environ.get(ENV_MODEL, "")
    spec = parse_model_spec(text)
    for k, v in overrides.items():
        if k == "checkpoint":
            spec["checkpoint"] = v
        elif k in _SETTINGS:
            spec[k] = v
        else:
            spec["options"][k] = v
    enc = build_encoder(spec["name"], checkpoint=spec.get("checkpoint"), layers=spec.get("layers", "last"),
                        random_init=bool(spec.get("random_init", False)), seed=int(spec.get("seed", 0)),
                        device=str(spec.get("device", "cpu")), **spec["options"])
    what = f"{spec['name']} ({'UNTRAINED random init' if spec.get('random_init') else spec.get('checkpoint') or 'default checkpoint'})"
    return HearModel(enc, what)


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """(n_sounds, n_samples) -> float32 (n_sounds, model.scene_embedding_size), on audio's device."""
    return model.scene(audio).to(torch.as_tensor(audio).device)


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_sounds, n_samples) -> float32 embeddings (n_sounds, n_timestamps,
    model.timestamp_embedding_size) and timestamps (n_sounds, n_timestamps) in milliseconds."""
    emb, ts = model.timestamps(audio)
    dev = torch.as_tensor(audio).device
    return emb.to(dev), ts.to(dev)
