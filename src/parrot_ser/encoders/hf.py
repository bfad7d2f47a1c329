"""Hugging Face attention PTMs (wav2vec2 / HuBERT / WavLM / UniSpeech-SAT / MMS / XLS-R / Whisper).

Loading: ``checkpoint`` (or the spec's default HF id) is a local ``save_pretrained`` directory or an
HF id resolved from the local HF cache only (``local_files_only``) unless downloads are allowed with
``HF_HUB_OFFLINE=0`` or ``PARROT_ALLOW_DOWNLOAD=1``; a model that cannot be found
raises CheckpointError saying how to provide it. Everything goes through transformers' Auto classes.

Padding invariance (an utterance's features never depend on its batch):
- feature extractor with ``return_attention_mask=True`` and a layer-norm CNN (``feat_extract_norm
  == "layer"``: the large / multilingual models): one padded batch with an attention mask; frame
  lengths from the model's conv output lengths;
- otherwise (group-norm CNNs: wav2vec2/HuBERT base, WavLM base+, UniSpeech-SAT base+, whose first
  conv normalises over time and so would see the padding): no padding at all; utterances of
  exactly equal length share a forward, the others run one by one (length bucketing upstream
  makes equal lengths common; Emo-DB-style fixed-length corpora batch fully);
- Whisper, option ``window`` (``--option whisper-base:window=clip|30s``):
  ``clip`` (default): the encoder sees only the clip's own log-mel frames and the first T rows of
  its positional table (T = encoder frames of the clip); clips longer than 30 s are cut into 30 s
  windows, each encoded at its own length, outputs concatenated. No batch mate can leak in: only
  clips with the same number of mel frames share a forward (no padding at all).
  ``30s``: the official behaviour: every clip (or 30 s piece) is zero-padded to a 30 s window,
  outputs trimmed back to ceil(samples / 320) frames. A 2 s clip costs 15x its length.
  Measured on the Emo-DB copy (docs/features.md, bench/bench_whisper.py): ``clip`` is ~18x faster on
  2 s clips; downstream, ``30s`` was +1.5 points (fcn, p = 0.11), within noise: ``clip`` is the default.

Hidden states come from ``output_hidden_states``: index 0 = the CNN/embedding output, last = the
final layer. Pooled = mean over valid frames.

``random_init``: with a local checkpoint directory, its config with seeded untrained weights;
otherwise (no hub offline, so no config for real ids) a TINY config of the same model class
(hidden 64, 2 layers, 2 heads, FFN 128, CNN width 32 with the real kernel/stride so the frame rate
is unchanged), recorded in ``identity.preprocessing["random_init_config"]``.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parrot_ser.encoders import register_family
from parrot_ser.encoders.base import EncodedUtterance, Encoder, EncoderIdentity, EncoderSpec
from parrot_ser.errors import AudioError, CheckpointError, ConfigError


@dataclass(frozen=True)
class HFModel:
    """One Hugging Face encoder: everything about it in one table row."""

    checkpoint: str  # default HF id
    hidden: int  # hidden size
    layers: int  # transformer layers
    description: str
    model_type: str  # transformers model_type, for the tiny random-init config
    # (do_normalize, return_attention_mask) of the published checkpoints' feature extractor: used only
    # when no preprocessor_config.json is available (random init without a local dir, or a directory
    # without one)
    fe: tuple[bool, bool]
    norm: str | None  # CNN feature-extractor norm ("group" | "layer"; None: no CNN)


# A new Hugging Face encoder = one row here.
HF_MODELS: dict[str, HFModel] = {
    "hubert-base": HFModel("facebook/hubert-base-ls960", 768, 12, "HuBERT base (LibriSpeech 960 h)", "hubert",
                           (True, False), "group"),
    "wav2vec2-base": HFModel("facebook/wav2vec2-base", 768, 12, "wav2vec 2.0 base (LibriSpeech 960 h)", "wav2vec2",
                             (True, False), "group"),
    "wavlm-base-plus": HFModel("microsoft/wavlm-base-plus", 768, 12, "WavLM base+ (94k h)", "wavlm", (False, True),
                               "group"),
    "wavlm-large": HFModel("microsoft/wavlm-large", 1024, 24, "WavLM large (94k h)", "wavlm", (True, True), "layer"),
    "unispeech-sat-base-plus": HFModel("microsoft/unispeech-sat-base-plus", 768, 12, "UniSpeech-SAT base+",
                                       "unispeech-sat", (False, True), "group"),
    "mms-300m": HFModel("facebook/mms-300m", 1024, 24, "MMS 300M (multilingual wav2vec 2.0)", "wav2vec2",
                        (True, True), "layer"),
    "mms-1b": HFModel("facebook/mms-1b", 1280, 48, "MMS 1B (multilingual wav2vec 2.0)", "wav2vec2", (True, True),
                      "layer"),
    "xls-r-300m": HFModel("facebook/wav2vec2-xls-r-300m", 1024, 24, "XLS-R 300M (multilingual wav2vec 2.0)",
                          "wav2vec2", (True, True), "layer"),
    "whisper-base": HFModel("openai/whisper-base", 512, 6, "Whisper base, encoder only", "whisper", (False, False),
                            None),
}

TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128,
        "conv_dim": [32] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}
TINY_WHISPER = {"d_model": 64, "encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 128,
                "decoder_layers": 1, "decoder_attention_heads": 2, "decoder_ffn_dim": 128, "num_mel_bins": 80}

SAMPLE_RATE = 16000
WHISPER_WINDOW = 30 * SAMPLE_RATE
WHISPER_HOP = 320  # samples per encoder output frame (10 ms mel hop x conv stride 2)
WHISPER_SUBBATCH = 8  # windows per forward: each is a full 30 s window whatever the clip length
WHISPER_MEL_HOP = 160  # samples per log-mel frame
WHISPER_WINDOWS = ("clip", "30s")


class TooShortError(AudioError):
    problem = "too short for the model"


def specs() -> list[EncoderSpec]:
    return [EncoderSpec(name=n, family="hf", sample_rate=SAMPLE_RATE, hidden_size=m.hidden, num_layers=m.layers + 1,
                        frame_rate=50.0, pooled_dim=m.hidden, default_checkpoint=m.checkpoint, kind="attention",
                        description=m.description)
            for n, m in HF_MODELS.items()]


def _offline() -> bool:
    """Offline unless downloads are asked for (HF_HUB_OFFLINE=0, or PARROT_ALLOW_DOWNLOAD=1): by default
    an HF id not in the local cache used to try the hub (5 retries, 35 s) before failing, against the
    README's promise that nothing is downloaded unless allowed."""
    allow = os.environ.get("PARROT_ALLOW_DOWNLOAD", "").strip().lower() in ("1", "true", "yes", "on")
    hub = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return not (allow or hub in ("0", "false", "no", "off"))


def _weights_sha256(model: torch.nn.Module, directory: Path | None) -> tuple[str, str]:
    """sha256 of the weight files of a local directory, else of the state dict (dtype, shape, bytes)."""
    h = hashlib.sha256()
    if directory is not None:
        files = sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
        if files:
            for p in files:
                h.update(p.name.encode())
                with open(p, "rb") as f:
                    for block in iter(lambda f=f: f.read(1 << 22), b""):
                        h.update(block)
            return h.hexdigest(), "weight files"
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest(), "state dict"


def _cached_snapshot(repo_id: str) -> Path | None:
    """Folder of ``repo_id`` in the local HF cache (config.json present), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # not a valid repo id, cache unreadable: treat as not cached
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def _load_error(name: str, source: str, e: Exception) -> CheckpointError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return CheckpointError(
        f"{name}: could not find {source!r} locally ({first[:200]}); no model hub is used offline: give a "
        f"save_pretrained directory with --checkpoint {name}=/path/to/dir, or put the model in the HF cache "
        f"(HF_HOME); downloads happen only when asked: HF_HUB_OFFLINE=0 (or PARROT_ALLOW_DOWNLOAD=1) with network")


def _tiny_config(name: str):
    from transformers import AutoConfig

    fam = HF_MODELS[name]
    if fam.model_type == "whisper":
        return AutoConfig.for_model("whisper", **TINY_WHISPER), dict(TINY_WHISPER)
    kw = dict(TINY)
    if fam.norm == "layer":  # the large / multilingual models: layer-norm CNN, pre-LN transformer
        kw.update(feat_extract_norm="layer", do_stable_layer_norm=True)
    else:
        kw.update(feat_extract_norm="group", do_stable_layer_norm=False)
    return AutoConfig.for_model(fam.model_type, **kw), kw


def _feature_extractor(name: str, directory: Path | None, is_whisper: bool):
    from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    if directory is not None and (directory / "preprocessor_config.json").is_file():
        return AutoFeatureExtractor.from_pretrained(str(directory), local_files_only=True), "checkpoint"
    if is_whisper:
        return WhisperFeatureExtractor(feature_size=80), "family default"
    norm, mask = HF_MODELS[name].fe if name in HF_MODELS else (True, True)
    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                    do_normalize=norm, return_attention_mask=mask), "family default"


def _use_mask(fe: Any, config: Any, is_whisper: bool) -> bool:
    """Padded batches only where padding provably cannot leak: the feature extractor asks for an
    attention mask AND the CNN uses per-frame layer norm. A group-norm CNN (wav2vec2/HuBERT base,
    and WavLM base+ / UniSpeech-SAT base+ although their extractors return a mask) normalises over
    time, padding included: measured features changed by up to 0.5 with padding, so those run
    without padding."""
    return (not is_whisper and bool(getattr(fe, "return_attention_mask", False))
            and getattr(config, "feat_extract_norm", "group") == "layer")


class HFEncoder(Encoder):
    def __init__(self, spec: EncoderSpec, model: torch.nn.Module, fe: Any, identity: EncoderIdentity, *,
                 is_whisper: bool, device: str, dtype: torch.dtype, window: str = "clip"):
        self.spec = spec
        self.window = window
        self.model = model.eval()
        self.fe = fe
        self.identity = identity
        self.is_whisper = is_whisper
        self.device = device
        self.dtype = dtype
        self.use_mask = _use_mask(fe, model.config, is_whisper)
        self.stats = {"forward_s": 0.0, "real_samples": 0, "padded_samples": 0}

    # --- helpers ---------------------------------------------------------------------------------
    def _forward(self, **inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        t = time.perf_counter()
        inputs = {k: v.to(self.device, dtype=self.dtype if v.is_floating_point() else v.dtype)
                  for k, v in inputs.items()}
        out = self.model(**inputs, output_hidden_states=True, return_dict=True)
        hs = tuple(h.float() for h in out.hidden_states)
        self.stats["forward_s"] += time.perf_counter() - t
        return hs

    def _result(self, hs: tuple[torch.Tensor, ...], b: int, n_frames: int, frames: bool) -> EncodedUtterance:
        sel = torch.stack([hs[j][b, :n_frames] for j in self.identity.layers])  # (L, T, D)
        return EncodedUtterance(pooled=sel.mean(1).cpu().numpy(), frames=sel.cpu().numpy() if frames else None)

    def _out_len(self, n: int) -> int:
        return int(self.model._get_feat_extract_output_lengths(torch.tensor([n]))[0])

    # --- encode ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, waves: list[np.ndarray], *, frames: bool = False) -> list[EncodedUtterance]:
        waves = [np.asarray(w, dtype=np.float32) for w in waves]
        for w in waves:
            if len(w) == 0 or (not self.is_whisper and self._out_len(len(w)) < 1):
                raise TooShortError(None, f"{len(w)} samples; {self.spec.name} needs at least 400 (25 ms)")
            self.stats["real_samples"] += len(w)
        if self.is_whisper:
            if self.window == "clip":
                return self._encode_whisper_clip(waves, frames)
            return self._encode_whisper(waves, frames)
        if self.use_mask:
            return self._encode_masked(waves, frames)
        return self._encode_equal_lengths(waves, frames)

    def _encode_masked(self, waves: list[np.ndarray], frames: bool) -> list[EncodedUtterance]:
        inp = self.fe(waves, sampling_rate=SAMPLE_RATE, padding=True, return_attention_mask=True,
                      return_tensors="pt")
        self.stats["padded_samples"] += int(inp["input_values"].numel())
        hs = self._forward(input_values=inp["input_values"], attention_mask=inp["attention_mask"])
        lens = self.model._get_feat_extract_output_lengths(inp["attention_mask"].sum(-1))
        return [self._result(hs, b, int(lens[b]), frames) for b in range(len(waves))]

    def _encode_equal_lengths(self, waves: list[np.ndarray], frames: bool) -> list[EncodedUtterance]:
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(waves):
            groups.setdefault(len(w), []).append(i)
        results: list[EncodedUtterance | None] = [None] * len(waves)
        for n, idx in groups.items():
            inp = self.fe([waves[i] for i in idx], sampling_rate=SAMPLE_RATE, padding=False,
                          return_attention_mask=False, return_tensors="pt")
            self.stats["padded_samples"] += n * len(idx)
            hs = self._forward(input_values=inp["input_values"])
            t = hs[0].shape[1]
            for b, i in enumerate(idx):
                results[i] = self._result(hs, b, t, frames)
        return results  # type: ignore[return-value]

    def _encode_whisper(self, waves: list[np.ndarray], frames: bool) -> list[EncodedUtterance]:
        pieces: list[tuple[int, np.ndarray]] = []  # (utterance index, <= 30 s window)
        for i, w in enumerate(waves):
            for s in range(0, len(w), WHISPER_WINDOW):
                pieces.append((i, w[s:s + WHISPER_WINDOW]))
        per_utt: list[list[torch.Tensor]] = [[] for _ in waves]  # (L, T_piece, D) per window
        for k in range(0, len(pieces), WHISPER_SUBBATCH):
            sub = pieces[k:k + WHISPER_SUBBATCH]
            inp = self.fe([p for _, p in sub], sampling_rate=SAMPLE_RATE, padding="max_length",
                          return_attention_mask=False, return_tensors="pt")
            self.stats["padded_samples"] += WHISPER_WINDOW * len(sub)
            hs = self._forward(input_features=inp["input_features"])
            for b, (i, p) in enumerate(sub):
                t = min(math.ceil(len(p) / WHISPER_HOP), hs[0].shape[1])
                per_utt[i].append(torch.stack([hs[j][b, :t] for j in self.identity.layers]))
        out = []
        for parts in per_utt:
            sel = torch.cat(parts, dim=1)
            out.append(EncodedUtterance(pooled=sel.mean(1).cpu().numpy(), frames=sel.cpu().numpy() if frames else None))
        return out


    def _whisper_hidden(self, mel: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """WhisperEncoder.forward without its 30 s length check: the same modules in the same order,
        the positional table cut to the input's length. On a 3000-frame input it equals the HF
        forward exactly (tests/test_whisper_real.py); hidden states as HF gives them (embedding
        output, each layer, the last one after the final layer norm)."""
        t0 = time.perf_counter()
        m = self.model
        x = mel.to(self.device, dtype=self.dtype)
        h = torch.nn.functional.gelu(m.conv2(torch.nn.functional.gelu(m.conv1(x)))).permute(0, 2, 1)
        h = h + m.embed_positions.weight[:h.shape[1]]
        hs = [h]
        for layer in m.layers:
            h = layer(h, None)
            hs.append(h)
        hs[-1] = m.layer_norm(h)
        out = tuple(t.float() for t in hs)
        self.stats["forward_s"] += time.perf_counter() - t0
        return out

    def _encode_whisper_clip(self, waves: list[np.ndarray], frames: bool) -> list[EncodedUtterance]:
        pieces: list[tuple[int, np.ndarray, int]] = []  # (utterance index, <= 30 s piece, its real samples)
        for i, w in enumerate(waves):
            for s in range(0, len(w), WHISPER_WINDOW):
                p = w[s:s + WHISPER_WINDOW]
                n = len(p)
                if n < WHISPER_HOP:  # a piece under 20 ms has no encoder frame: pad it to one frame
                    p = np.pad(p, (0, WHISPER_HOP - n))
                pieces.append((i, p, n))
        # only pieces of exactly equal length share a forward: Whisper has no attention mask, so any
        # padding would leak into the other frames
        groups: dict[int, list[int]] = {}
        for k, (_, p, _) in enumerate(pieces):
            groups.setdefault(len(p), []).append(k)
        parts: dict[int, torch.Tensor] = {}
        for n_samples, ks in groups.items():
            for s in range(0, len(ks), WHISPER_SUBBATCH * 4):  # 4x the 30 s sub-batch: clips are short
                sub = ks[s:s + WHISPER_SUBBATCH * 4]
                inp = self.fe([pieces[k][1] for k in sub], sampling_rate=SAMPLE_RATE, padding="longest",
                              return_attention_mask=False, return_tensors="pt")
                mel = inp["input_features"][..., :n_samples // WHISPER_MEL_HOP]  # n // 160 log-mel frames
                self.stats["padded_samples"] += n_samples * len(sub)
                hs = self._whisper_hidden(mel)
                for b, k in enumerate(sub):
                    t = min(math.ceil(pieces[k][2] / WHISPER_HOP), hs[0].shape[1])
                    parts[k] = torch.stack([hs[j][b, :t] for j in self.identity.layers])
        per_utt: list[list[torch.Tensor]] = [[] for _ in waves]
        for k, (i, _, _) in enumerate(pieces):
            per_utt[i].append(parts[k])
        out = []
        for ps in per_utt:
            sel = torch.cat(ps, dim=1)
            out.append(EncodedUtterance(pooled=sel.mean(1).cpu().numpy(), frames=sel.cpu().numpy() if frames else None))
        return out


def _batching(is_whisper: bool, window: str, use_mask: bool) -> str:
    if is_whisper:
        return ("whisper: the clip's own frames, positional table cut to its length; equal lengths batch"
                if window == "clip" else "whisper: fixed 30 s window per clip, outputs trimmed to ceil(samples/320)")
    return "padded batch with attention mask" if use_mask else "no padding: only equal-length clips share a forward"


def _check_window(window: Any, is_whisper: bool, name: str) -> str:
    """The ``window`` option: Whisper only, ``clip`` (default) or ``30s``."""
    if window is not None and not is_whisper:
        raise ConfigError(f"{name}: option window is for Whisper models only")
    window = str(window) if window is not None else "clip"
    if window not in WHISPER_WINDOWS:
        raise ConfigError(f"{name}: window must be one of {', '.join(WHISPER_WINDOWS)} (got {window!r})")
    return window


def build(spec: EncoderSpec, *, checkpoint: str | None = None, layers: Any = "last", random_init: bool = False,
          seed: int = 0, device: str = "cpu", dtype: torch.dtype = torch.float32, **options: Any) -> HFEncoder:
    options = dict(options)
    window = options.pop("window", None)
    if options:
        raise ConfigError(f"{spec.name}: unknown option(s) {', '.join(sorted(options))}")
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    from parrot_ser.encoders import resolve_layers

    hf_logging.set_verbosity_error()  # "some weights not used" noise for checkpoints with heads
    hf_logging.disable_progress_bar()  # our own progress bar is the only one on stderr
    # torch's SDPA warns about WavLM's mixed mask types on every forward; the result is correct
    warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask and attn_mask")
    source = checkpoint or spec.default_checkpoint
    directory: Path | None = None
    if source is not None and Path(source).exists():
        p = Path(source)
        if p.is_file():
            raise CheckpointError(f"{p}: {spec.name} expects a save_pretrained directory (config.json + weights) "
                                  "or an HF id, not a single file")
        if not (p / "config.json").is_file():
            raise CheckpointError(f"{p}: no config.json; {spec.name} expects a save_pretrained directory")
        directory = p.resolve()
    elif checkpoint is not None and (checkpoint.startswith((".", "/", "~")) or checkpoint.count("/") > 1):
        raise CheckpointError(f"{checkpoint}: checkpoint directory not found")  # a path, not an HF id

    notes: dict[str, Any] = {}
    torch.manual_seed(seed)
    if random_init:
        if directory is not None:
            config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
            notes["random_init_config"] = f"config of {directory}"
        else:
            config, kw = _tiny_config(spec.name)
            notes["random_init_config"] = {"tiny": True, **kw,
                                           "why": "no hub offline: real config unavailable"}
        model = AutoModel.from_config(config)
        source_id = str(directory) if directory is not None else None
    else:
        if source is None:
            raise CheckpointError(f"{spec.name}: no checkpoint given and no default")
        if directory is None:
            directory = _cached_snapshot(source)  # an HF id already in the local cache: no network
        try:
            model = AutoModel.from_pretrained(str(directory or source),
                                              local_files_only=directory is not None or _offline())
        except (OSError, ValueError) as e:
            raise _load_error(spec.name, source, e) from None
        config = model.config
        source_id = str(source if checkpoint is None or not Path(checkpoint).exists() else directory)
    is_whisper = config.model_type == "whisper"
    window = _check_window(window, is_whisper, spec.name)
    if is_whisper:
        model = model.get_encoder()
        n_hidden = config.encoder_layers + 1
    else:
        n_hidden = config.num_hidden_layers + 1
    model.to(device=device, dtype=dtype)
    fe, fe_source = _feature_extractor(spec.name, directory, is_whisper)
    sha, sha_of = _weights_sha256(model, directory if not random_init else None)
    layer_list = resolve_layers(layers, n_hidden, spec.name)
    use_mask = _use_mask(fe, config, is_whisper)
    pre = {
        "model_type": config.model_type, "hidden_size": int(getattr(config, "hidden_size", 0) or config.d_model),
        "num_hidden_states": n_hidden, "sample_rate": SAMPLE_RATE, "feature_extractor": type(fe).__name__,
        "feature_extractor_source": fe_source, "do_normalize": getattr(fe, "do_normalize", None),
        "return_attention_mask": getattr(fe, "return_attention_mask", None),
        "batching": _batching(is_whisper, window, use_mask),
        "pooling": "mean over valid frames", "compute_dtype": str(dtype).replace("torch.", ""),
        "sha256_of": sha_of, **notes, **({"window": window} if is_whisper else {}),
    }
    if random_init:
        pre["WARNING"] = "UNTRAINED random-init weights"
    ident = EncoderIdentity(name=spec.name, checkpoint=source_id, checkpoint_sha256=sha, random_init=bool(random_init),
                            seed=seed if random_init else None, layers=layer_list, preprocessing=pre,
                            options={"window": window} if is_whisper else {})
    return HFEncoder(spec, model, fe, ident, is_whisper=is_whisper, device=device, dtype=dtype, window=window)


register_family(specs(), build)
