"""Handcrafted baseline encoder: 80 log-mel bands + their deltas per 10 ms frame; pooled = mean and
std over frames. Needs no weights, so it is the reference for checking the pipeline end to end.

Frame features (T, 160) = [log-mel (80), delta (80)]; pooled (320,) = [mean (160), std (160)].
Each utterance is processed on its own (it is cheap), so features never depend on the batch."""

from __future__ import annotations

import numpy as np
import torch

from parrot_ser.encoders import register_family
from parrot_ser.encoders.base import EncodedUtterance, Encoder, EncoderIdentity, EncoderSpec

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 80
F_MIN, F_MAX = 0.0, 8000.0
LOG_FLOOR = 1e-6  # keeps log() finite on digital silence
DELTA_N = 2  # regression window of the deltas (HTK / Kaldi default)

SPEC = EncoderSpec(
    name="logmel", family="logmel", sample_rate=SAMPLE_RATE, hidden_size=2 * N_MELS, num_layers=1,
    frame_rate=SAMPLE_RATE / HOP, pooled_dim=4 * N_MELS, default_checkpoint=None, kind="handcrafted",
    description="80 log-mel + deltas (25 ms / 10 ms); pooled = mean and std over frames; no weights",
)


def _mel_matrix() -> torch.Tensor:
    # transformers ships a tested mel filter bank (HTK scale); no need for torchaudio/librosa.
    from transformers.audio_utils import mel_filter_bank

    m = mel_filter_bank(num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=N_MELS, min_frequency=F_MIN,
                        max_frequency=F_MAX, sampling_rate=SAMPLE_RATE, norm=None, mel_scale="htk")
    return torch.from_numpy(np.asarray(m, dtype=np.float32))  # (freq, mels)


def deltas(x: torch.Tensor, n: int = DELTA_N) -> torch.Tensor:
    """HTK regression deltas over time for x (T, F), edges replicated. Hand-written: it is four lines
    and torchaudio (which has compute_deltas) is not a dependency."""
    t = x.shape[0]
    padded = torch.cat([x[:1].expand(n, -1), x, x[-1:].expand(n, -1)], dim=0)
    num = sum(k * (padded[n + k: n + k + t] - padded[n - k: n - k + t]) for k in range(1, n + 1))
    return num / (2 * sum(k * k for k in range(1, n + 1)))


class LogMelEncoder(Encoder):
    def __init__(self, spec: EncoderSpec = SPEC, *, device: str = "cpu", dtype: torch.dtype = torch.float32):
        self.spec = spec
        self.device = device
        self.dtype = dtype
        self.mel = _mel_matrix().to(device)
        self.window = torch.hann_window(N_FFT, device=device)
        self.identity = EncoderIdentity(
            name=spec.name, checkpoint=None, checkpoint_sha256=None, random_init=False, seed=None, layers=[0],
            preprocessing={"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP, "n_mels": N_MELS,
                           "f_min": F_MIN, "f_max": F_MAX, "mel_scale": "htk", "log_floor": LOG_FLOOR,
                           "deltas": DELTA_N, "pooling": "mean+std over frames", "center": "reflect"},
        )
        self.stats = {"padded_samples": 0, "real_samples": 0}

    def to(self, device: str) -> LogMelEncoder:
        self.device = device
        self.mel = self.mel.to(device)
        self.window = self.window.to(device)
        return self

    def frame_features(self, wave: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(wave, dtype=np.float32), device=self.device)
        if x.numel() < N_FFT:  # reflect padding needs at least n_fft/2 + 1 samples
            x = torch.nn.functional.pad(x, (0, N_FFT - x.numel()))
        spec = torch.stft(x, N_FFT, HOP, N_FFT, self.window, center=True, pad_mode="reflect",
                          return_complex=True)
        power = spec.abs().pow(2).T  # (T, freq)
        logmel = torch.log(power @ self.mel + LOG_FLOOR)
        return torch.cat([logmel, deltas(logmel)], dim=1)  # (T, 160)

    @torch.inference_mode()
    def encode(self, waves: list[np.ndarray], *, frames: bool = False) -> list[EncodedUtterance]:
        # One small STFT per clip: intra-op threading costs far more than it saves here (measured
        # 0.3 ms with 1 thread vs 12 ms with 2 on a loaded 2-core machine), so run single-threaded.
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._encode(waves, frames)
        finally:
            torch.set_num_threads(prev)

    def _encode(self, waves: list[np.ndarray], frames: bool) -> list[EncodedUtterance]:
        out = []
        for w in waves:
            f = self.frame_features(w)
            pooled = torch.cat([f.mean(0), f.std(0, unbiased=False)])
            self.stats["real_samples"] += len(w)
            self.stats["padded_samples"] += len(w)
            out.append(EncodedUtterance(
                pooled=pooled[None].float().cpu().numpy(),
                frames=f[None].float().cpu().numpy() if frames else None,
            ))
        return out


def build(spec: EncoderSpec = SPEC, *, checkpoint: str | None = None, layers="last", random_init: bool = False,
          seed: int = 0, device: str = "cpu", dtype: torch.dtype = torch.float32, **options) -> LogMelEncoder:
    from parrot_ser.errors import ConfigError

    if checkpoint:
        raise ConfigError(f"logmel has no weights; got checkpoint {checkpoint!r}")
    if options:
        raise ConfigError(f"logmel takes no options; got {', '.join(sorted(options))}")
    from parrot_ser.encoders import resolve_layers

    resolve_layers(layers, 1, spec.name)  # one layer (0): only last / all / 0 / -1 are valid
    # random_init is meaningless without weights; accepted so that `--random-init` can apply to a whole run.
    return LogMelEncoder(spec, device=device, dtype=dtype)


register_family([SPEC], build)
