"""Audio input: read, validate, mix to mono and resample, with typed errors and soft warnings.

Every stage that touches a waveform goes through :func:`load_audio` (files) or :func:`decode_audio`
(in-memory bytes, the HTTP service), so a bad file fails the same way everywhere.

Errors (from :mod:`parrot_ser.errors`, each message names the file):

- ``AudioMissingError``: the path does not exist (or is not a file).
- ``NotAudioError``: the bytes do not start with a known audio container signature
  (``RIFF....WAVE``/``RIFX``/``RF64``/``fLaC``/``OggS``/``FORM`` (AIFF)/``ID3`` or an MPEG frame
  sync (MP3)/``caff``/``.snd``/``NIST_1A``), e.g. a text file renamed ``.wav``.
- ``AudioCorruptError``: the signature says audio but libsndfile cannot decode it, e.g. a WAV
  whose header was truncated.
- ``EmptyAudioError``: decodes to zero samples (header-only WAV, or a 0-byte file: nothing to
  classify, so we report "empty" rather than guessing at corruption).
- ``NonFiniteAudioError``: NaN or +-inf samples (possible in float WAVs).

Warnings (``AudioWarning``, not errors): clipping, digital silence, very short or very long
input. :func:`audio_warnings` returns the same texts as a list for callers that collect them.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from parrot_ser.errors import (
    AudioCorruptError,
    AudioMissingError,
    EmptyAudioError,
    NonFiniteAudioError,
    NotAudioError,
)

__all__ = [
    "AudioInfo",
    "AudioWarning",
    "audio_warnings",
    "decode_audio",
    "decode_with_warnings",
    "load_with_warnings",
    "load_audio",
    "read_info",
    "resample",
    "CLIP_LEVEL",
    "CLIP_SHARE",
    "SILENCE_PEAK",
    "MIN_SECONDS",
    "MAX_SECONDS",
]

# Thresholds for the soft warnings.
CLIP_LEVEL = 0.999  # |x| at or above this counts as full scale
CLIP_SHARE = 0.001  # warn when more than 0.1 % of samples sit at full scale (a peak-normalised file has a few)
SILENCE_PEAK = 1e-4  # about -80 dBFS: below one 16-bit LSB x 3, i.e. digital silence
MIN_SECONDS = 0.3
MAX_SECONDS = 60.0


class AudioWarning(UserWarning):
    """A usable but suspicious input (clipped, silent, very short or very long)."""


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int
    duration: float  # seconds
    format: str  # e.g. "WAV", "FLAC", "OGG"
    subtype: str  # e.g. "PCM_16", "FLOAT", "VORBIS"


# --- classification of failures ------------------------------------------------------------

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"RIFF", "WAV"), (b"RIFX", "WAV"), (b"RF64", "RF64"), (b"fLaC", "FLAC"), (b"OggS", "OGG"),
    (b"FORM", "AIFF"), (b"ID3", "MP3"), (b"caff", "CAF"), (b".snd", "AU"), (b"NIST_1A", "NIST"),
)


def _sniff(head: bytes) -> str | None:
    """Container name from the first bytes, or None when they match no audio format we read."""
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            if magic == b"RIFF" and len(head) >= 12 and head[8:12] != b"WAVE":
                return None  # RIFF but AVI/WEBP/...: a real file, just not audio
            return name
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        return "MP3"  # MPEG audio frame sync without an ID3 tag
    return None


def _classify_failure(head: bytes, where: str, exc: Exception) -> Exception:
    if len(head) == 0:
        return EmptyAudioError(where, "file is 0 bytes")
    kind = _sniff(head)
    if kind is None:
        return NotAudioError(where, "no WAV/FLAC/OGG/AIFF/MP3 signature in the first bytes")
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    msg = re.sub(r"^Error opening (?:'.*'|<.*?>): ", "", msg)  # the path is already in our message
    return AudioCorruptError(where, f"{kind} signature but undecodable: {msg}")


def _check_path(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise AudioMissingError(p)
    if not p.is_file():
        raise AudioMissingError(p, "not a regular file")
    return p


def _head(p: Path, n: int = 16) -> bytes:
    with open(p, "rb") as f:
        return f.read(n)


# --- public API --------------------------------------------------------------------------------


def read_info(path: str | Path, *, allow_empty: bool = False) -> AudioInfo:
    """Header only (``soundfile.info``): never decodes the samples. Raises the typed errors above;
    a header announcing zero frames raises EmptyAudioError unless ``allow_empty``."""
    p = _check_path(path)
    try:
        info = sf.info(str(p))
    except Exception as e:  # libsndfile raises LibsndfileError/RuntimeError/TypeError by format
        raise _classify_failure(_head(p), str(p), e) from None
    if info.frames <= 0 and not allow_empty:
        raise EmptyAudioError(p, "header announces 0 frames")
    sr = int(info.samplerate)
    return AudioInfo(str(p), sr, int(info.channels), int(info.frames),
                     float(info.frames) / sr if sr else 0.0, str(info.format), str(info.subtype))


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """soxr "HQ" resampling along the first axis; float32 out. Output length round(n * sr_out / sr_in)."""
    x = np.asarray(x, dtype=np.float32)
    if int(sr_in) == int(sr_out):
        return x
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    return np.asarray(soxr.resample(x, int(sr_in), int(sr_out), quality="HQ"), dtype=np.float32)


def audio_warnings(x: np.ndarray, sr: int, path: str | Path = "<memory>") -> list[str]:
    """Texts of the soft warnings for a decoded signal (any shape; samples in [-1, 1]).
    Run it on the signal as decoded (before mixing/resampling, which smooth away clipping)."""
    x = np.asarray(x)
    out: list[str] = []
    n = x.shape[0] if x.ndim else 0
    if x.size == 0 or sr <= 0:
        return out
    dur = n / sr
    peak = float(np.max(np.abs(x)))
    if peak < SILENCE_PEAK:
        out.append(f"{path}: digital silence (peak {peak:.2e})")
    else:
        share = float(np.mean(np.abs(x) >= CLIP_LEVEL))
        if share > CLIP_SHARE:
            out.append(f"{path}: clipping ({share:.2%} of samples at full scale)")
    if dur < MIN_SECONDS:
        out.append(f"{path}: very short ({dur:.3f} s < {MIN_SECONDS} s)")
    if dur > MAX_SECONDS:
        out.append(f"{path}: very long ({dur:.1f} s > {MAX_SECONDS:.0f} s)")
    return out


def _finish(data: np.ndarray, sr: int, target_sr: int, where: str) -> tuple[np.ndarray, list[str]]:
    """Shared checks + mono + resample for decoded (frames, channels) float32 data; warning texts
    are computed on the signal as decoded (resampling smooths clipping away)."""
    if data.shape[0] == 0:
        raise EmptyAudioError(where)
    if not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise NonFiniteAudioError(where, f"{bad} of {data.size} samples")
    texts = audio_warnings(data, sr, where)
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(resample(mono, sr, target_sr), dtype=np.float32), texts


def _emit(texts: list[str]) -> None:
    for text in texts:
        warnings.warn(text, AudioWarning, stacklevel=3)


def _decode(src: Any, head: bytes, where: str) -> tuple[np.ndarray, int]:
    try:
        data, sr = sf.read(src, dtype="float32", always_2d=True)
    except Exception as e:
        raise _classify_failure(head, where, e) from None
    return data, int(sr)


def load_with_warnings(path: str | Path, target_sr: int = 16000) -> tuple[np.ndarray, list[str]]:
    """:func:`load_audio` without the warnings module: (signal, warning texts). Thread-safe way to
    collect warnings per file (warnings.warn is process-global)."""
    p = _check_path(path)
    data, sr = _decode(str(p), _head(p), str(p))
    return _finish(data, sr, target_sr, str(p))


def decode_with_warnings(data: bytes, target_sr: int = 16000, name: str = "<upload>") -> tuple[np.ndarray, list[str]]:
    """:func:`decode_audio` returning (signal, warning texts) instead of issuing warnings."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode_audio needs bytes, got {type(data).__name__}")
    raw = bytes(data)
    decoded, sr = _decode(io.BytesIO(raw), raw[:16], name)
    return _finish(decoded, sr, target_sr, name)


def load_audio(path: str | Path, target_sr: int = 16000, *, warn: bool = True) -> np.ndarray:
    """Float32 mono at ``target_sr``: any rate/bit depth soundfile reads (WAV, FLAC, OGG, ...);
    channels averaged; soxr HQ resampling. Typed errors for bad input, AudioWarning for suspicious."""
    x, texts = load_with_warnings(path, target_sr)
    if warn:
        _emit(texts)
    return x


def decode_audio(data: bytes, target_sr: int = 16000, name: str = "<upload>", *, warn: bool = True) -> np.ndarray:
    """Same as :func:`load_audio` for in-memory bytes (e.g. an HTTP upload); ``name`` is used in messages."""
    x, texts = decode_with_warnings(data, target_sr, name)
    if warn:
        _emit(texts)
    return x
