"""Front ends of the two Mamba PTMs, in torch (no torchaudio dependency).

SSAM (audio-mamba-official, ``src/data/data/features.py``) uses ``torchaudio.transforms.MelSpectrogram``
with its defaults: periodic Hann window, centre=True with reflect padding, power 2, **HTK mel scale**
(2595 log10(1 + f/700)) and **no filter normalisation** (norm=None); then log(x + eps) with eps =
float32 machine epsilon, then per-clip mean / unbiased std normalisation (+1e-8).

SSAMBA (ssamba ``src/dataloader.py``) uses ``torchaudio.compliance.kaldi.fbank`` (Kaldi semantics:
snip_edges framing, DC removal per frame, pre-emphasis 0.97, symmetric "hanning" window, FFT padded to
512, power spectrum, Kaldi mel banks 1127 ln(1 + f/700) from 20 Hz to Nyquist, log floored at eps).
Both are re-implemented here and checked against the formulas in tests.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

SSAM_MEL = {"sample_rate": 16000, "n_fft": 400, "win_length": 400, "hop_length": 160, "f_min": 50.0,
            "f_max": 8000.0, "n_mels": 80, "power": 2.0, "center": True, "pad_mode": "reflect",
            "mel_scale": "htk", "mel_norm": None, "log_eps": float(torch.finfo(torch.float32).eps),
            "normalize": "per-clip mean/std (unbiased) + 1e-8"}

SSAMBA_FBANK = {"sample_rate": 16000, "num_mel_bins": 128, "frame_length_ms": 25.0, "frame_shift_ms": 10.0,
                "window": "hanning", "htk_compat": True, "use_energy": False, "dither": 0.0,
                "preemphasis": 0.97, "remove_dc_offset": True, "low_freq": 20.0, "waveform_mean_removed": True,
                "norm_mean": -4.2677393, "norm_std": 4.5689974}


def _hz_to_mel_htk(f: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def _mel_to_hz_htk(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank_htk(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> torch.Tensor:
    """(n_freqs, n_mels) triangular filters on the HTK mel scale, unnormalised (torchaudio's
    ``melscale_fbanks(..., norm=None, mel_scale="htk")``)."""
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    m_pts = torch.linspace(float(_hz_to_mel_htk(torch.tensor(f_min, dtype=torch.float64))),
                           float(_hz_to_mel_htk(torch.tensor(f_max, dtype=torch.float64))), n_mels + 2,
                           dtype=torch.float64)
    f_pts = _mel_to_hz_htk(m_pts)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)  # (n_freqs, n_mels + 2)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0).float()


def ssam_logmel(wave: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
    """(N,) float waveform at 16 kHz -> (T, 80) normalised log-mel, T = 1 + N // 160."""
    c = SSAM_MEL
    wave = wave.float()
    if wave.numel() <= c["n_fft"] // 2:  # reflect padding needs more samples than the pad
        wave = F.pad(wave, (0, c["n_fft"] // 2 + 1 - wave.numel()))
    window = torch.hann_window(c["win_length"], periodic=True, dtype=torch.float32, device=wave.device)
    spec = torch.stft(wave, c["n_fft"], hop_length=c["hop_length"], win_length=c["win_length"], window=window,
                      center=True, pad_mode="reflect", return_complex=True).abs().pow(2.0)  # (F, T)
    fb = mel_filterbank_htk(c["n_fft"] // 2 + 1, c["f_min"], c["f_max"], c["n_mels"], c["sample_rate"])
    mel = fb.to(wave.device).T @ spec  # (n_mels, T)
    x = (mel + c["log_eps"]).log()
    if normalize:
        x = (x - x.mean()) / (x.std() + 1e-8)
    return x.T.contiguous()


def _mel_kaldi(f: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log(1.0 + f / 700.0)


@lru_cache(maxsize=8)
def kaldi_mel_banks(num_bins: int, padded_window_size: int, sample_freq: float, low_freq: float,
                    high_freq: float) -> torch.Tensor:
    """(num_bins, padded_window_size // 2 + 1) Kaldi mel filters (no VTLN), as in
    ``torchaudio.compliance.kaldi.get_mel_banks`` plus the zero Nyquist column fbank appends."""
    num_fft_bins = padded_window_size // 2
    nyquist = 0.5 * sample_freq
    if high_freq <= 0.0:
        high_freq += nyquist
    fft_bin_width = sample_freq / padded_window_size
    mel_low = _mel_kaldi(torch.tensor(low_freq, dtype=torch.float64))
    mel_high = _mel_kaldi(torch.tensor(high_freq, dtype=torch.float64))
    delta = (mel_high - mel_low) / (num_bins + 1)
    b = torch.arange(num_bins, dtype=torch.float64).unsqueeze(1)
    left = mel_low + b * delta
    center = mel_low + (b + 1.0) * delta
    right = mel_low + (b + 2.0) * delta
    mel = _mel_kaldi(fft_bin_width * torch.arange(num_fft_bins, dtype=torch.float64)).unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return F.pad(banks, (0, 1)).float()


def kaldi_fbank(wave: torch.Tensor, *, sample_rate: int = 16000, num_mel_bins: int = 128,
                frame_length_ms: float = 25.0, frame_shift_ms: float = 10.0, preemphasis: float = 0.97,
                low_freq: float = 20.0) -> torch.Tensor:
    """Kaldi log mel filterbank of a (N,) waveform -> (T, num_mel_bins), snip_edges framing
    (T = 1 + (N - win) // shift; 0 frames when N < win). Hanning window, power spectrum, no energy,
    no dither: the options SSAMBA passes to ``torchaudio.compliance.kaldi.fbank``."""
    wave = wave.float()
    win = int(sample_rate * frame_length_ms * 0.001)
    shift = int(sample_rate * frame_shift_ms * 0.001)
    padded = 1 << (win - 1).bit_length()  # round_to_power_of_two
    if wave.numel() < win:
        return wave.new_zeros(0, num_mel_bins)
    frames = wave.unfold(0, win, shift)  # (T, win)
    frames = frames - frames.mean(dim=1, keepdim=True)  # remove_dc_offset
    prev = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)  # Kaldi: x[-1] := x[0]
    frames = frames - preemphasis * prev
    # Kaldi "hanning" = symmetric Hann: 0.5 - 0.5 cos(2 pi n / (win - 1)).
    window = torch.hann_window(win, periodic=False, dtype=torch.float32, device=wave.device)
    frames = F.pad(frames * window, (0, padded - win))
    power = torch.fft.rfft(frames).abs().pow(2.0)  # (T, padded/2 + 1)
    banks = kaldi_mel_banks(num_mel_bins, padded, sample_rate, low_freq, 0.0).to(wave.device)
    mel = power @ banks.T
    eps = torch.finfo(torch.float32).eps
    return torch.clamp(mel, min=eps).log()


def ssamba_input(wave: torch.Tensor, target_length: int | None) -> tuple[torch.Tensor, int]:
    """Waveform -> normalised fbank (target_length, 128) as SSAMBA's dataloader builds it, and the
    number of real (unpadded) frames. ``target_length=None``: keep the clip's own length, padded up
    to at least one 16-frame patch."""
    c = SSAMBA_FBANK
    wave = wave.float()
    wave = wave - wave.mean()
    fb = kaldi_fbank(wave, sample_rate=c["sample_rate"], num_mel_bins=c["num_mel_bins"])
    n_real = fb.shape[0]
    target = target_length if target_length is not None else max(16, n_real)
    if fb.shape[0] < target:
        fb = F.pad(fb, (0, 0, 0, target - fb.shape[0]))  # zero frames before normalising, as upstream
    else:
        fb = fb[:target]
    fb = (fb - c["norm_mean"]) / (c["norm_std"] * 2)
    return fb, min(n_real, target)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


__all__ = ["SSAM_MEL", "SSAMBA_FBANK", "mel_filterbank_htk", "ssam_logmel", "kaldi_mel_banks", "kaldi_fbank",
           "ssamba_input", "ceil_div"]
