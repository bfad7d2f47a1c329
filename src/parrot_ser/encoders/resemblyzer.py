"""Resemblyzer (Resemble AI's GE2E speaker encoder, Apache-2.0) as a parrot_ser Encoder: a real
pretrained *recurrent* model (3-layer LSTM, 256 units, on 40-band mel power spectrograms at 100
frames/s), the closest offline relative of a state-space model. Weights: ``resemblyzer/pretrained.pt``
inside the ``resemblyzer`` wheel (``wheel_weights.py``: read without importing the package).

What the encoder does with a waveform (16 kHz mono float):
1. volume normalisation as resemblyzer's ``preprocess_wav``: raised (never lowered) to -30 dBFS RMS.
   Its other step, trimming long silences with webrtcvad, is NOT done here (``parrot-ser``'s own VAD
   does that job where wanted): an utterance is encoded as given;
2. mel power spectrogram (not log), 25 ms Hann window, 10 ms hop, 40 Slaney mel bands, centred with
   zero padding (librosa >= 0.10's ``melspectrogram`` defaults, which resemblyzer calls);
3. the LSTM over the whole utterance from a zero state. Hidden states (``--layers``):
   0, 1, 2 = the outputs of LSTM layers 1, 2, 3 (256 each) per frame; pooled = mean over frames;
   3 = the speaker embedding: frames = the L2-normalised ReLU(Linear(layer 3)) of each frame, pooled =
   ``VoiceEncoder.embed_utterance`` exactly (1.6 s partial windows at 1.3 per second, each run from a
   zero state, their embeddings averaged and L2-normalised), so pooled != mean of frames for this layer.
Frames are kept every ``frame_stride`` states (default 2: 50 frames/s, Whisper's rate); pooled uses all.
Every utterance is encoded on its own (an LSTM would carry padding into its state), so features never
depend on the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from torch import nn

from parrot_ser.encoders import register_family, resolve_layers
from parrot_ser.encoders.base import EncodedUtterance, Encoder, EncoderIdentity, EncoderSpec
from parrot_ser.encoders.wheel_weights import weights_path
from parrot_ser.errors import AudioError, CheckpointError, ConfigError

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
HIDDEN = 256
N_LSTM = 3
TARGET_DBFS = -30.0
INT16_MAX = 2 ** 15 - 1
PARTIAL_FRAMES = 160  # 1.6 s partial utterances of embed_utterance
PARTIAL_RATE = 1.3  # partials per second
MIN_COVERAGE = 0.75
WEIGHTS = "pretrained.pt"

SPEC = EncoderSpec(
    name="resemblyzer", family="resemblyzer", sample_rate=SAMPLE_RATE, hidden_size=HIDDEN, num_layers=N_LSTM + 1,
    frame_rate=SAMPLE_RATE / HOP / 2, pooled_dim=HIDDEN, default_checkpoint=None, kind="recurrent",
    description="Resemblyzer GE2E speaker encoder (3-layer LSTM on 40 mel bands; weights in the resemblyzer "
                "wheel); layers 0-2 = LSTM outputs, 3 = speaker embedding; frames at 50/s",
)


@dataclass
class ResemblyzerOptions:
    """``--option resemblyzer:KEY=VALUE``."""

    frame_stride: Annotated[int, "keep every n-th 10 ms LSTM state as a frame (2: 50 frames/s)"] = 2


class GE2ENet(nn.Module):
    """The GE2E network, one nn.LSTM per layer so that every layer's states can be read."""

    def __init__(self):
        super().__init__()
        self.lstms = nn.ModuleList(nn.LSTM(N_MELS if i == 0 else HIDDEN, HIDDEN, batch_first=True)
                                   for i in range(N_LSTM))
        self.linear = nn.Linear(HIDDEN, HIDDEN)

    def forward(self, mels: torch.Tensor) -> list[torch.Tensor]:
        """(B, T, 40) -> the outputs of each LSTM layer, (B, T, 256) each."""
        outs, x = [], mels
        for lstm in self.lstms:
            x, _ = lstm(x)
            outs.append(x)
        return outs

    def embed(self, last: torch.Tensor) -> torch.Tensor:
        """GE2E embedding of last-layer states (..., 256): L2-normalised ReLU(Linear)."""
        e = torch.relu(self.linear(last))
        return e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def load_resemblyzer(self, sd: dict[str, torch.Tensor], path: str) -> None:
        """resemblyzer's keys ('lstm.weight_ih_l{k}', 'linear.*'; its GE2E loss's similarity_* are
        training-only) -> this module, every weight accounted for."""
        mapped = {}
        for k, v in sd.items():
            if k.startswith("similarity_"):
                continue
            if k.startswith("lstm."):
                name, layer = k[len("lstm."):].rsplit("_l", 1)
                mapped[f"lstms.{layer}.{name}_l0"] = v
            else:
                mapped[k] = v
        try:
            self.load_state_dict(mapped, strict=True)
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise CheckpointError(f"{path}: not a resemblyzer GE2E state dict ({first})") from None


def normalize_volume(wave: np.ndarray) -> np.ndarray:
    """Raise the RMS level to -30 dBFS (never lower it), as resemblyzer's preprocess_wav."""
    rms = float(np.sqrt(np.mean((wave.astype(np.float64) * INT16_MAX) ** 2)))
    if rms == 0.0:
        return wave
    change = TARGET_DBFS - 20 * np.log10(rms / INT16_MAX)
    return wave if change < 0 else (wave * 10 ** (change / 20)).astype(np.float32)


def _mel_matrix() -> torch.Tensor:
    # transformers ships librosa's Slaney mel filter bank (tested against librosa there); resemblyzer
    # itself calls librosa, which we do not need at run time.
    from transformers.audio_utils import mel_filter_bank

    m = mel_filter_bank(num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=N_MELS, min_frequency=0.0,
                        max_frequency=SAMPLE_RATE / 2, sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney")
    return torch.from_numpy(np.asarray(m, dtype=np.float32))  # (freq, mels)


def partial_slices(n_samples: int) -> list[slice]:
    """The mel-frame windows of embed_utterance: 160 frames every round(16000 / 1.3 / 160) frames,
    the last one dropped when it covers < 75 % real audio (unless it is the only one)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round((SAMPLE_RATE / PARTIAL_RATE) / HOP))
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    last = starts[-1] * HOP
    coverage = (n_samples - last) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts = starts[:-1]
    return [slice(s, s + PARTIAL_FRAMES) for s in starts]


class ResemblyzerEncoder(Encoder):
    def __init__(self, spec: EncoderSpec, net: GE2ENet, layers: list[int], identity: EncoderIdentity, *,
                 device: str, dtype: torch.dtype, frame_stride: int):
        self.spec, self.model, self.layers, self.identity = spec, net.eval(), layers, identity
        self.device, self.dtype, self.frame_stride = device, dtype, frame_stride
        self.mel = _mel_matrix()
        self.window = torch.hann_window(N_FFT)

    def mel_spectrogram(self, wave: np.ndarray) -> torch.Tensor:
        """(T, 40) mel power frames of a wave, T = 1 + len // 160."""
        x = torch.as_tensor(np.asarray(wave, dtype=np.float32))
        spec = torch.stft(x, N_FFT, HOP, N_FFT, self.window, center=True, pad_mode="constant", return_complex=True)
        return spec.abs().pow(2).T @ self.mel

    def utterance_embedding(self, wave: np.ndarray) -> torch.Tensor:
        """VoiceEncoder.embed_utterance on a volume-normalised wave (partials from a zero state)."""
        slices = partial_slices(len(wave))
        need = slices[-1].stop * HOP
        padded = np.pad(wave, (0, max(0, need - len(wave))))
        mel = self.mel_spectrogram(padded)
        mels = torch.stack([mel[s] for s in slices]).to(self.device, self.dtype)
        partial = self.model.embed(self.model(mels)[-1][:, -1])
        raw = partial.float().mean(0)
        return raw / raw.norm().clamp_min(1e-12)

    @torch.inference_mode()
    def encode(self, waves: list[np.ndarray], *, frames: bool = False) -> list[EncodedUtterance]:
        out = []
        for i, w in enumerate(waves):
            w = np.asarray(w, dtype=np.float32)
            if w.ndim != 1 or w.size == 0 or not np.isfinite(w).all():
                raise AudioError(f"waveform {i}: expected a non-empty finite mono array, got shape {w.shape}")
            w = normalize_volume(w)
            states = self.model(self.mel_spectrogram(w)[None].to(self.device, self.dtype))
            per_layer = [*(s[0].float() for s in states), self.model.embed(states[-1][0]).float()]
            pooled, fr = [], []
            for k in self.layers:
                pooled.append(self.utterance_embedding(w) if k == N_LSTM else per_layer[k].mean(0))
                fr.append(per_layer[k][:: self.frame_stride])
            out.append(EncodedUtterance(pooled=torch.stack(pooled).cpu().numpy(),
                                        frames=torch.stack(fr).cpu().numpy() if frames else None))
        return out


def build(spec: EncoderSpec = SPEC, *, checkpoint: str | None = None, layers="last", random_init: bool = False,
          seed: int = 0, device: str = "cpu", dtype: torch.dtype = torch.float32, **options) -> ResemblyzerEncoder:
    from parrot_ser.encoders.checkpoint import checkpoint_identity_sha, load_checkpoint_state_dict
    from parrot_ser.encoders.mamba.encoder_utils import seeded
    from parrot_ser.encoders.wheel_weights import weights_source

    stride = int(options.get("frame_stride", ResemblyzerOptions.frame_stride))
    if stride < 1:
        raise ConfigError(f"{spec.name}: frame_stride must be >= 1 (got {stride})")
    idx = resolve_layers(layers, spec.num_layers, spec.name)
    net = seeded(seed, GE2ENet)
    path: Path | None = None
    if not random_init:
        path = weights_path(checkpoint, "resemblyzer", WEIGHTS, spec.name)
        sd = load_checkpoint_state_dict(path) if path.suffix == ".safetensors" else _model_state(path)
        net.load_resemblyzer(sd, str(path))
    net.to(device=device, dtype=dtype)
    identity = EncoderIdentity(
        name=spec.name, checkpoint=None if path is None else weights_source("resemblyzer", WEIGHTS, path),
        checkpoint_sha256=None if path is None else checkpoint_identity_sha(path), random_init=random_init,
        seed=seed if random_init else None, layers=idx,
        preprocessing={"sample_rate": SAMPLE_RATE, "volume": f"raised to {TARGET_DBFS:g} dBFS (never lowered)",
                       "vad_trim": False, "mel": "power, 40 slaney bands, n_fft 400, hop 160, center zero-pad",
                       "frame_stride": stride, "layer3_pooled": "embed_utterance (1.6 s partials, rate 1.3)",
                       "dtype": str(dtype).replace("torch.", "")})
    return ResemblyzerEncoder(spec, net, idx, identity, device=device, dtype=dtype, frame_stride=stride)


def _model_state(path: Path) -> dict[str, torch.Tensor]:
    """resemblyzer's checkpoint: {'step', 'model_state', 'optimizer_state'}; read tensors only."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - name the file, one line
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__})") from None
    sd = obj.get("model_state", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: no resemblyzer state dict ('model_state') in it")
    return sd


register_family([SPEC], build, ResemblyzerOptions)
