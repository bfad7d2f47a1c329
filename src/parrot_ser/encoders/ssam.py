"""SSAM ("Audio Mamba", ssam-tiny|small|base) as a parrot_ser Encoder.

Per utterance: log-mel (preprocessing.ssam_logmel) over the whole clip, zero-padded to a multiple of 200
frames (a full extra chunk when already a multiple, as the official HEAR runtime), each 200-frame chunk
encoded on its own, frames of 5*D concatenated and the padded tail trimmed with the official rule
(int(50 * pad / 200) frames). Chunks of all utterances in a call are batched together: every chunk has the
same length, so no padding ever enters a sequence and features do not depend on the batch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from parrot_ser.encoders import register_family, resolve_layers
from parrot_ser.encoders.base import EncodedUtterance, Encoder, EncoderSpec
from parrot_ser.encoders.checkpoint import (
    detect_family,
    load_checkpoint_state_dict,
    load_strict,
    resolve_checkpoint,
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
from parrot_ser.encoders.mamba.preprocessing import SSAM_MEL, ssam_logmel
from parrot_ser.encoders.mamba.ssam_net import CHUNK_FRAMES, GRID, IGNORED_PREFIXES, SSAMModel, regroup_frames
from parrot_ser.errors import CheckpointError

DEPTH = 12
# depth: only for random_init (tests, benchmarks); a checkpoint's depth is read from its keys.
OPTIONS = {"corrected_grouping", "batch_chunks", "depth"}


def specs() -> list[EncoderSpec]:
    return [EncoderSpec(name=f"ssam-{size}", family="ssam", sample_rate=16000, hidden_size=5 * d, num_layers=DEPTH,
                        frame_rate=25.0, pooled_dim=5 * d,
                        default_checkpoint=None, kind="mamba",
                        description=f"Audio Mamba (SSAM) {size}, D={d}: 12 unidirectional Mamba blocks on "
                                    f"log-mel patches; frames of 5*D at 25/s")
            for size, d in SIZES.items()]


class SSAMEncoder(MambaEncoder):
    corrected_grouping: bool
    batch_chunks: int

    @torch.inference_mode()
    def encode(self, waves: list[np.ndarray], *, frames: bool = False) -> list[EncodedUtterance]:
        chunks, spans = [], []
        gt = GRID[0]
        for i, w in enumerate(waves):
            lm = ssam_logmel(check_wave(w, i))  # (T, 80)
            T = lm.shape[0]
            pad = CHUNK_FRAMES - T % CHUNK_FRAMES  # 200 when T is already a multiple: official behaviour
            lm = F.pad(lm, (0, 0, 0, pad))
            r = lm.shape[0] // CHUNK_FRAMES
            n_frames = r * gt - int(gt * pad / CHUNK_FRAMES)
            spans.append((len(chunks), r, n_frames))
            chunks.extend(lm.view(r, CHUNK_FRAMES, -1))
        if not chunks:
            return []
        x = torch.stack(chunks).unsqueeze(1)  # (Nc, 1, 200, 80)
        per_layer: dict[int, list[torch.Tensor]] = {k: [] for k in self.layers}
        for s in range(0, x.shape[0], self.batch_chunks):
            xb = x[s:s + self.batch_chunks].to(self.device, self.dtype)
            out = self.model(xb, self.layers)
            for k in self.layers:
                per_layer[k].append(regroup_frames(out[k].float(), self.corrected_grouping).cpu())
        feats = torch.stack([torch.cat(per_layer[k]) for k in self.layers])  # (n_layers, Nc, 50, 5D)
        results = []
        for start, r, n in spans:
            fr = feats[:, start:start + r].reshape(len(self.layers), r * gt, -1)[:, :n]
            results.append(EncodedUtterance(pooled=fr.mean(dim=1).numpy(),
                                            frames=fr.numpy().copy() if frames else None))
        return results


def build_model(size_dim: int, sd: dict | None, path: str, depth: int = DEPTH) -> tuple[SSAMModel, list[str]]:
    if sd is None:
        return SSAMModel(dim=size_dim, depth=depth), []
    w = sd.get("patch_embed.proj.weight")
    if w is None:
        if detect_family(sd) == "ssamba":
            raise CheckpointError(f"{path}: this is an SSAMBA checkpoint; use it with an ssamba-* encoder, "
                                  "not ssam-*")
        raise CheckpointError(f"{path}: not an SSAM checkpoint (no patch_embed.proj.weight)")
    if w.shape[0] != size_dim:
        raise CheckpointError(f"{path}: checkpoint width D={w.shape[0]} does not match this encoder's D={size_dim}")
    n_blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    rms = "blocks.0.norm.bias" not in sd
    model = SSAMModel(dim=size_dim, depth=n_blocks, rms_norm=rms)
    ignored = load_strict(model, sd, ignored_prefixes=IGNORED_PREFIXES, path=path)
    return model, ignored


def build(spec: EncoderSpec, *, checkpoint: str | None, layers: str | int | list[int] = "last",
          random_init: bool = False, seed: int = 0, device: str = "cpu", dtype: torch.dtype = torch.float32,
          **options) -> Encoder:
    dim, path = start_build(spec, "ssam", checkpoint, random_init, options, OPTIONS)
    if path is not None and not random_init:
        path = resolve_checkpoint(path)
    depth = int_option(options, "depth", DEPTH, spec.name)
    batch_chunks = int_option(options, "batch_chunks", 16, spec.name)
    sd = None if random_init else load_checkpoint_state_dict(path)
    model, ignored = seeded(seed, build_model, dim, sd, str(path), depth=depth)
    random_init_only(options, "depth", spec.name, random_init, model.depth)
    model.to(device=device, dtype=dtype)
    idx = resolve_layers(layers, model.depth, spec.name)
    corrected = bool(options.get("corrected_grouping", False))
    identity = mamba_identity(spec, path, random_init, seed, idx, {
        **SSAM_MEL, "chunk_frames": CHUNK_FRAMES, "patch": [4, 16], "grouping": "corrected" if corrected else "official",
        "dtype": str(dtype).replace("torch.", "")})
    enc = SSAMEncoder(spec, model, idx, identity, device, dtype, corrected_grouping=corrected,
                      batch_chunks=batch_chunks)
    enc.ignored_keys = ignored  # pretraining-only checkpoint keys that were skipped (pred.*, mask_token)
    return enc


register_family(specs(), build)
