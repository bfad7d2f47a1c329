"""SSAMBA (ssamba-tiny|small|base) as a parrot_ser Encoder.

Per utterance: waveform mean removed, Kaldi fbank (128 mels), zero frames padded / cut to
``target_length`` (default 1024 = the pretraining length; None = the clip's own length rounded up to
whole patch columns), normalised,
then the model. Utterances are batched only with others of the same input length, so no padding of
another utterance ever enters a sequence: features do not depend on the batch.

What a "frame" is here: the patch tokens of one time column (patch start t' * tstride, 16 fbank frames
wide), averaged over the F' frequency patches -> one D-dim vector; frame rate 100 / tstride per second
(6.25/s at the default stride 16). Only columns that start inside the real (unpadded) fbank are
returned. Pooled: "mean" = mean over all non-cls tokens (the official fine-tuning pooling, which
includes padded columns when target_length pads), "mean_valid" = mean over the returned frames,
"cls" = the cls token.
"""

from __future__ import annotations

import numpy as np
import torch

from parrot_ser.encoders import register_family, resolve_layers
from parrot_ser.encoders.base import EncodedUtterance, Encoder, EncoderSpec
from parrot_ser.encoders.checkpoint import (
    detect_family,
    load_checkpoint_state_dict,
    load_strict,
)
from parrot_ser.encoders.mamba.encoder_utils import (
    SIZES,
    MambaEncoder,
    check_wave,
    int_option,
    mamba_identity,
    random_init_only,
    seeded,
    start_build,
)
from parrot_ser.encoders.mamba.preprocessing import SSAMBA_FBANK, ceil_div, ssamba_input
from parrot_ser.encoders.mamba.ssamba_net import IGNORED_PREFIXES, N_MELS, PATCH, PRETRAIN_TDIM, SSAMBAModel
from parrot_ser.errors import CheckpointError, ConfigError

DEPTH = 24
# depth: only for random_init (tests, benchmarks); a checkpoint's depth is read from its keys.
OPTIONS = {"target_length", "fstride", "tstride", "pooling", "bidirectional_pairs", "batch_size", "depth"}
POOLINGS = ("mean", "mean_valid", "cls")


def specs() -> list[EncoderSpec]:
    return [EncoderSpec(name=f"ssamba-{size}", family="ssamba", sample_rate=16000, hidden_size=d,
                        num_layers=DEPTH // 2, frame_rate=100.0 / PATCH, pooled_dim=d, default_checkpoint=None,
                        kind="mamba",
                        description=f"SSAMBA {size}, D={d}: 24 bidirectional Mamba layers used in 12 pairs on "
                                    f"16x16 fbank patches; frames = time columns (6.25/s)")
            for size, d in SIZES.items()]


class SSAMBAEncoder(MambaEncoder):
    target_length: int | None
    pooling: str
    batch_size: int

    @torch.inference_mode()
    def encode(self, waves: list[np.ndarray], *, frames: bool = False) -> list[EncodedUtterance]:
        items = []
        for i, w in enumerate(waves):
            wave = check_wave(w, i)
            if wave.numel() < 400:  # shorter than one 25 ms Kaldi frame: zero-pad to one frame
                wave = torch.nn.functional.pad(wave, (0, 400 - wave.numel()))
            target = self.target_length
            if target is None:  # own length, padded up so the last partial column of patches is kept
                n = 1 + (wave.numel() - 400) // 160
                target = PATCH + ceil_div(max(0, n - PATCH), self.model.tstride) * self.model.tstride
            fb, n_real = ssamba_input(wave, target)
            items.append((fb, n_real))
        # Same-length groups: sequences are never padded with another utterance's length.
        groups: dict[int, list[int]] = {}
        for i, (fb, _) in enumerate(items):
            groups.setdefault(fb.shape[0], []).append(i)
        results: list[EncodedUtterance | None] = [None] * len(items)
        tstride = self.model.tstride
        for idxs in groups.values():
            for s in range(0, len(idxs), self.batch_size):
                sub = idxs[s:s + self.batch_size]
                x = torch.stack([items[i][0] for i in sub]).to(self.device, self.dtype)
                out, (f_dim, t_dim) = self.model(x, self.layers)
                stacked = torch.stack([out[k].float().cpu() for k in self.layers], dim=1)  # (b, nl, 1+F'T', D)
                for j, i in enumerate(sub):
                    tok = stacked[j]
                    cols = tok[:, 1:, :].reshape(len(self.layers), f_dim, t_dim, -1).mean(dim=1)  # (nl, T', D)
                    n_valid = min(t_dim, max(1, ceil_div(items[i][1], tstride)))
                    fr = cols[:, :n_valid]
                    if self.pooling == "cls":
                        pooled = tok[:, 0]
                    elif self.pooling == "mean_valid":
                        pooled = fr.mean(dim=1)
                    else:
                        pooled = tok[:, 1:].mean(dim=1)
                    results[i] = EncodedUtterance(pooled=pooled.numpy().copy(),
                                                  frames=fr.numpy().copy() if frames else None)
        return results  # type: ignore[return-value]


def build_model(dim: int, sd: dict | None, path: str, **kw) -> tuple[SSAMBAModel, list[str]]:
    if sd is None:
        return SSAMBAModel(dim=dim, **kw), []
    if detect_family(sd) == "ssam":  # its patch embedding would be reported as "not 16x16"
        raise CheckpointError(f"{path}: this is an SSAM (Audio-Mamba) checkpoint; use it with an ssam-* encoder "
                              "(ssam-tiny, ssam-small, ssam-base), not ssamba-*")
    sd = {k[2:] if k.startswith("v.") else k: v for k, v in sd.items()}
    w = sd.get("patch_embed.proj.weight")
    if w is None:
        raise CheckpointError(f"{path}: not an SSAMBA checkpoint (no module.v.patch_embed.proj.weight)")
    if w.shape[0] != dim:
        raise CheckpointError(f"{path}: checkpoint width D={w.shape[0]} does not match this encoder's D={dim}")
    if tuple(w.shape[2:]) != (PATCH, PATCH):
        raise CheckpointError(f"{path}: patch shape {tuple(w.shape[2:])} is not 16x16")
    kw["depth"] = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("layers."))
    # The pretraining grid follows the stored pretraining input size when present (p_input_tdim).
    pf = int(sd["p_input_fdim"].item()) if "p_input_fdim" in sd else N_MELS
    pt = int(sd["p_input_tdim"].item()) if "p_input_tdim" in sd else PRETRAIN_TDIM
    kw["pretrain_grid"] = (pf // PATCH, pt // PATCH)
    kw["rms_norm"] = "layers.0.norm.bias" not in sd  # released files: decided by the keys (SPEC)
    model = SSAMBAModel(dim=dim, **kw)
    ignored = load_strict(model, sd, ignored_prefixes=tuple(p.removeprefix("v.") for p in IGNORED_PREFIXES),
                          path=path)
    return model, ignored


def build(spec: EncoderSpec, *, checkpoint: str | None, layers: str | int | list[int] = "last",
          random_init: bool = False, seed: int = 0, device: str = "cpu", dtype: torch.dtype = torch.float32,
          **options) -> Encoder:
    dim, path = start_build(spec, "ssamba", checkpoint, random_init, options, OPTIONS)
    # None/auto: the clip's own length ("None" as typed on the command line included).
    target = int_option(options, "target_length", PRETRAIN_TDIM, spec.name, minimum=PATCH, allow_none=True)
    pooling = options.get("pooling", "mean")
    if pooling not in POOLINGS:
        raise ConfigError(f"{spec.name}: pooling must be one of {POOLINGS}, got {pooling!r}")
    kw = {"fstride": int_option(options, "fstride", PATCH, spec.name),
          "tstride": int_option(options, "tstride", PATCH, spec.name),
          "bidirectional_pairs": bool(options.get("bidirectional_pairs", True))}
    depth = int_option(options, "depth", DEPTH, spec.name)
    if kw["bidirectional_pairs"] and (depth < 2 or depth % 2):  # layers are used in (forward, backward) pairs
        raise ConfigError(f"{spec.name}: depth must be an even number >= 2 with bidirectional_pairs "
                          f"(layers are used in pairs), got {depth}")
    batch_size = int_option(options, "batch_size", 8, spec.name)
    if random_init:
        kw["depth"] = depth
    sd = None if random_init else load_checkpoint_state_dict(path)
    model, ignored = seeded(seed, build_model, dim, sd, str(path), **kw)
    random_init_only(options, "depth", spec.name, random_init, len(model.layers))
    model.to(device=device, dtype=dtype)
    idx = resolve_layers(layers, model.num_outputs, spec.name)
    identity = mamba_identity(spec, path, random_init, seed, idx, {
        **SSAMBA_FBANK, "target_length": target, "patch": PATCH, "fstride": kw["fstride"], "tstride": kw["tstride"],
        "pooling": pooling, "bidirectional_pairs": kw["bidirectional_pairs"], "dtype": str(dtype).replace("torch.", "")})
    enc = SSAMBAEncoder(spec, model, idx, identity, device, dtype, target_length=target, pooling=pooling,
                        batch_size=batch_size)
    enc.ignored_keys = ignored  # pretraining heads that were skipped (cpredlayer.*, gpredlayer.*, mask_embed, ...)
    return enc


register_family(specs(), build)
