"""Audio input: read, validate, mix to mono and resample, with typed errors and soft warnings.

Every stage that touches a waveform goes through :func:`load_audio` (files) or :func:`decode_audio`
(in-memory bytes, the HTTP service), so a bad file fails the same way everywhere.

Errors (from :mod:`parrot_ser.errors`, each message names the file):

- ``AudioMissingError``: the path does not exist (or is not a file).
- ``NotAudioError``: the bytes do not start with a known audio container signature
  (``RIFF....WAVE``/``RIFX``/``RF64``/``fLaC``/``OggS``/``FORM`` (AIFF)/``ID3`` or an MPEG frame
  sync (MP3)/``caff``/``.snd``/``NIST_1A``), e.g. a text file renamed ``.wav``.
- ``UnsupportedAudioError``: MP4/M4A, WebM/Matroska, WMA, AMR or ADTS AAC while PyAV (the ``m4a``
  extra, which decodes them) is not installed: the message lists the formats read and the remedies.
- ``AudioCorruptError``: the signature says audio but libsndfile cannot decode it, e.g. a WAV
  whose header was truncated.
- ``EmptyAudioError``: decodes to zero samples (header-only WAV, or a 0-byte file: nothing to
  classify, so we report "empty" rather than guessing at corruption).
- ``NonFiniteAudioError``: NaN or +-inf samples (possible in float WAVs).
- ``AudioUnreadableError``: the file exists but cannot be opened (no read permission, I/O error).
- ``AudioRateError``: a sample rate outside ``SAMPLE_RATE_RANGE`` (4 kHz .. 384 kHz). A header that
  claims 1 Hz turns a 64 KB file into hours of audio; 2^31-1 Hz resamples to nothing: both are
  damaged or hostile headers, not recordings.
- ``AudioTooLongError``: more than ``MAX_DECODE_SECONDS`` (2 h) of audio.

Memory: decoding is streamed block by block (mono mix and soxr resampling per block), so memory is
the 16 kHz mono output plus one block, whatever the channel count or rate of the file (a 110 s,
8-channel, 192 kHz FLAC of silence is a few KB on disk and 675 MB decoded at once). Streamed FLAC
whose STREAMINFO says "length unknown" (total_samples = 0) is read to its end like any other.

Warnings (``AudioWarning``, not errors): clipping, digital silence, very short or very long
input, and a WAV whose header announces more data than the file holds (truncated download or copy:
what is there is decoded, and the warning says how much the header claimed vs what was read). :func:`audio_warnings` returns the same texts as a list for callers that collect them.
"""

from __future__ import annotations

import contextlib
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
    AudioRateError,
    AudioTooLongError,
    AudioUnreadableError,
    ConfigError,
    EmptyAudioError,
    NonFiniteAudioError,
    NotAudioError,
    UnsupportedAudioError,
)

__all__ = [
    "AUDIO_SUFFIXES",
    "AudioInfo",
    "AudioWarning",
    "audio_warnings",
    "check_waveform",
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
    "MAX_DECODE_SECONDS",
    "SAMPLE_RATE_RANGE",
]

# The one list of audio file suffixes: folders given to `predict` and the generic corpora (csv,
# folders) take these; a file named explicitly is always tried (its content decides).
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                            ".au", ".snd", ".caf", ".w64", ".rf64", ".sph", ".nist", ".m4a", ".aac"})

# Thresholds for the soft warnings.
CLIP_LEVEL = 0.999  # |x| at or above this counts as full scale
CLIP_SHARE = 0.001  # warn when more than 0.1 % of samples sit at full scale (a peak-normalised file has a few)
SILENCE_PEAK = 1e-4  # about -80 dBFS: below one 16-bit LSB x 3, i.e. digital silence
MIN_SECONDS = 0.3
MAX_SECONDS = 60.0

# Hard limits (errors): rates from 4 kHz (below telephone band) to 384 kHz (the highest studio rate in
# use); at most 2 h of audio per file (460 MB as 16 kHz float32), which bounds the memory one file
# can take in extract, predict and the service.
SAMPLE_RATE_RANGE = (4000, 384000)
MAX_DECODE_SECONDS = 2 * 3600.0
_BLOCK = 1 << 16  # frames decoded per step
_UNKNOWN_FRAMES = 2**63 - 1  # libsndfile's SF_COUNT_MAX: length not in the header (streamed FLAC)


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
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06):
        return "MP3"  # MPEG audio frame sync without an ID3 tag (layer bits 00 would be AAC)
    return None


# What libsndfile decodes here, named in the messages about files it cannot read.
FORMATS_READ = "WAV, FLAC, OGG (Vorbis, Opus), MP3, AIFF, AU, CAF, W64, RF64, NIST SPHERE"


def _other_audio(head: bytes) -> str | None:
    """Audio containers libsndfile does not decode (it has no AAC): PyAV (FFmpeg's decoders in a
    wheel, no system library: the ``m4a`` extra) reads them when installed; without it the user
    hears "install the extra or convert it", not "not audio"."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "MP4/M4A container (AAC or ALAC)"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "Matroska/WebM container"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "ASF/WMA container"
    if head.startswith(b"#!AMR"):
        return "AMR"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0:
        return "AAC (ADTS)"  # MPEG sync with layer bits 00: AAC, not MP3
    return None


def _classify_failure(head: bytes, where: str, exc: Exception) -> Exception:
    if len(head) == 0:
        return EmptyAudioError(where, "file is 0 bytes")
    other = _other_audio(head)
    if other is not None:
        return UnsupportedAudioError(where, f"{other}; formats read: {FORMATS_READ}; `pip install "
                                            f"'parrot-ser[m4a]'` (PyAV) reads it, or convert it first, e.g. "
                                            f"`ffmpeg -i FILE -ac 1 -ar 16000 FILE.wav`")
    kind = _sniff(head)
    if kind is None:
        return NotAudioError(where, f"no signature of a format read here ({FORMATS_READ}) in the first bytes")
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    msg = re.sub(r"^Error opening (?:'.*'|<.*?>): ", "", msg)  # the path is already in our message
    return AudioCorruptError(where, f"{kind} signature but undecodable: {msg}")


def _check_path(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise AudioMissingError(p)
    if not p.is_file():
        raise AudioMissingError(p, "a folder, not an audio file" if p.is_dir() else "not a regular file")
    return p


_HEAD = 1 << 16  # enough for the RIFF chunks in front of a WAV's data chunk (fmt, LIST, bext, ...)


def _head(p: Path, n: int = _HEAD) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read(n)
    except OSError as e:  # no read permission, I/O error: a problem of this file only
        raise AudioUnreadableError(p, e.strerror or type(e).__name__) from None


def _wav_declared_frames(head: bytes) -> int | None:
    """Frames the data chunk of a RIFF/WAVE header announces, None when unknown. libsndfile quietly
    clips the count to what the file holds, so a truncated file is only visible here. 0 and
    0xFFFFFFFF are the streaming conventions for "length unknown" and are not a claim."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block_align = 12, 0
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if cid == b"fmt " and pos + 22 <= len(head):
            block_align = int.from_bytes(head[pos + 20:pos + 22], "little")
        if cid == b"data":
            if size in (0, 0xFFFFFFFF) or block_align <= 0:
                return None
            return size // block_align
        pos += 8 + size + (size & 1)
    return None


def _check_rate(sr: int, where: str) -> None:
    lo, hi = SAMPLE_RATE_RANGE
    if not lo <= sr <= hi:
        raise AudioRateError(where, f"{sr} Hz; accepted {lo}..{hi} Hz: a damaged header or not a recording")


# --- public API --------------------------------------------------------------------------------


def read_info(path: str | Path, *, allow_empty: bool = False, max_seconds: float | None = None) -> AudioInfo:
    """Header only (``soundfile.info``): does not decode the samples, except for a stream whose
    header has no length (streamed FLAC), which is counted by decoding it. Raises the typed errors
    above; a header announcing zero frames raises EmptyAudioError unless ``allow_empty``."""
    p = _check_path(path)
    head = _head(p)  # also the permission check: sf.info's own error would not say why
    if _other_audio(head) is not None and _pyav() is not None:
        return _av_info(p, head, allow_empty)
    try:
        info = sf.info(str(p))
    except Exception as e:  # libsndfile raises LibsndfileError/RuntimeError/TypeError by format
        raise _classify_failure(head, str(p), e) from None
    sr = int(info.samplerate)
    _check_rate(sr, str(p))
    frames = int(info.frames)
    if frames == _UNKNOWN_FRAMES:  # streamed FLAC: the header has no length, count by decoding
        with sf.SoundFile(str(p)) as f:
            frames = sum(len(b) for b in _blocks(f, str(p), sr))
    if frames <= 0 and not allow_empty:
        raise EmptyAudioError(p, "header announces 0 frames")
    cap = MAX_DECODE_SECONDS if max_seconds is None else max_seconds  # inf: the caller checks length itself
    if frames / sr > cap:
        raise AudioTooLongError(p, f"{frames / sr:.0f} s > {cap:.0f} s; split the recording")
    return AudioInfo(str(p), sr, int(info.channels), frames, float(frames) / sr,
                     str(info.format), str(info.subtype))


def _av_info(p: Path, head: bytes, allow_empty: bool) -> AudioInfo:
    """read_info for the containers PyAV reads: header duration, decoding only when it has none."""
    with _AVSource(str(p), str(p)) as f:
        frames = f.duration_frames() or sum(len(b) for b in _av_blocks(f, str(p)))
        codec = str(f.stream.codec_context.name).upper()
        fmt = str(f.container.format.name).split(",")[0].upper()
        sr, channels = f.samplerate, f.channels
    if frames <= 0 and not allow_empty:
        raise EmptyAudioError(p, "header announces 0 frames")
    if frames / sr > MAX_DECODE_SECONDS:
        raise AudioTooLongError(p, f"{frames / sr:.0f} s > {MAX_DECODE_SECONDS:.0f} s; split the recording")
    return AudioInfo(str(p), sr, channels, frames, float(frames) / sr, fmt, codec)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """soxr "HQ" resampling along the first axis; float32 out. Output length round(n * sr_out / sr_in)."""
    x = np.asarray(x, dtype=np.float32)
    if int(sr_in) == int(sr_out):
        return x
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    return np.asarray(soxr.resample(x, int(sr_in), int(sr_out), quality="HQ"), dtype=np.float32)


def _warning_texts(path: str | Path, n: int, sr: int, peak: float, n_clip: int, n_values: int) -> list[str]:
    out: list[str] = []
    if n == 0 or sr <= 0:
        return out
    dur = n / sr
    if peak < SILENCE_PEAK:
        out.append(f"{path}: digital silence (peak {peak:.2e})")
    else:
        share = n_clip / max(n_values, 1)
        if share > CLIP_SHARE:
            out.append(f"{path}: clipping ({share:.2%} of samples at full scale)")
    if dur < MIN_SECONDS:
        out.append(f"{path}: very short ({dur:.3f} s < {MIN_SECONDS} s)")
    if dur > MAX_SECONDS:
        out.append(f"{path}: very long ({dur:.1f} s > {MAX_SECONDS:.0f} s)")
    return out


def audio_warnings(x: np.ndarray, sr: int, path: str | Path = "<memory>") -> list[str]:
    """Texts of the soft warnings for a decoded signal (any shape; samples in [-1, 1]).
    Run it on the signal as decoded (before mixing/resampling, which smooth away clipping)."""
    x = np.asarray(x)
    if x.size == 0 or sr <= 0:
        return []
    a = np.abs(x)
    return _warning_texts(path, x.shape[0] if x.ndim else 0, sr, float(np.max(a)),
                          int(np.count_nonzero(a >= CLIP_LEVEL)), int(x.size))


def _blocks(f: sf.SoundFile, where: str, sr: int, max_seconds: float | None = None):
    """(frames, channels) float32 blocks until the end of the data. Read through libsndfile's
    sf_readf_float directly: SoundFile.read seeks after each read, which fails on a FLAC stream of
    unknown length; this loop simply reads until libsndfile returns 0 frames. Stops with
    AudioTooLongError past ``max_seconds`` (default MAX_DECODE_SECONDS), so a header can never make
    us decode without bound."""
    from soundfile import _ffi, _snd  # the documented C API soundfile wraps; see the docstring

    cap = MAX_DECODE_SECONDS if max_seconds is None else float(max_seconds)
    limit = cap * sr  # a float: cap may be inf (stream_audio holds nothing, so needs no cap)
    total = 0
    while True:
        buf = np.empty((_BLOCK, f.channels), dtype=np.float32)
        k = int(_snd.sf_readf_float(f._file, _ffi.from_buffer("float[]", buf), _BLOCK))
        if k <= 0:
            return
        total += k
        if total > limit:
            raise AudioTooLongError(where, f"more than {cap:g} s; split the recording")
        yield buf[:k]


def _decode(src: Any, head: bytes, where: str, target_sr: int,
            max_seconds: float | None = None) -> tuple[np.ndarray, list[str]]:
    """Stream-decode ``src`` (path or file object) to mono float32 at ``target_sr``, checking every
    block for non-finite samples and collecting the warning statistics on the signal as decoded.
    libsndfile reads every format it knows; MP4/M4A, WebM, WMA, AMR and ADTS AAC go through PyAV
    when it is installed (the ``m4a`` extra), else a one-line UnsupportedAudioError."""
    with _opened(src, head, where, max_seconds) as (f, blocks):
        return _decode_blocks(f, blocks, head, where, target_sr)


@contextlib.contextmanager
def _opened(src: Any, head: bytes, where: str, max_seconds: float | None):
    """(source with ``samplerate`` / ``channels``, its (frames, channels) float32 blocks): PyAV for
    the containers libsndfile does not read when PyAV is installed, libsndfile for the rest."""
    if _other_audio(head) is not None and _pyav() is not None:
        with _AVSource(src, where) as f:
            yield f, _av_blocks(f, where, max_seconds)
        return
    try:
        f = sf.SoundFile(src)
    except Exception as e:  # libsndfile raises LibsndfileError/RuntimeError/TypeError by format
        raise _classify_failure(head, where, e) from None
    with f:
        _check_rate(int(f.samplerate), where)
        yield f, _blocks(f, where, int(f.samplerate), max_seconds)


def _pyav() -> Any:
    """PyAV (FFmpeg's decoders in a wheel, the ``m4a`` extra) or None when not installed."""
    try:
        import av
    except ImportError:
        return None
    return av


class _AVSource:
    """An audio container opened with PyAV (its first audio stream), shaped like the SoundFile the
    libsndfile path uses: ``samplerate``, ``channels``; decoding errors become the typed errors."""

    def __init__(self, src: Any, where: str):
        av = _pyav()
        self.where = where
        try:
            self.container = av.open(src, "r")
            self.stream = self.container.streams.audio[0]
        except (av.FFmpegError, IndexError, ValueError, OSError) as e:
            if getattr(self, "container", None) is not None:
                self.container.close()
            what = "no audio stream" if isinstance(e, IndexError) else str(e).splitlines()[0]
            raise AudioCorruptError(where, f"PyAV cannot read it: {what}") from None
        self.samplerate = int(self.stream.codec_context.sample_rate or self.stream.sample_rate or 0)
        self.channels = int(self.stream.codec_context.channels or 1)
        _check_rate(self.samplerate, where)

    def duration_frames(self) -> int:
        """Frames from the container's header (no decoding); 0 when it does not say."""
        st = self.stream
        if st.duration is not None and st.time_base is not None:
            return int(round(float(st.duration * st.time_base) * self.samplerate))
        if self.container.duration is not None:  # microseconds
            return int(round(self.container.duration / 1e6 * self.samplerate))
        return 0

    def __enter__(self) -> _AVSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.container.close()


def _av_blocks(f: _AVSource, where: str, max_seconds: float | None = None):
    """(frames, channels) float32 blocks of the decoded stream, converted from whatever sample
    format the codec gives (planar or packed, int or float) by PyAV's resampler, rate unchanged (soxr
    resamples as for every other format). Capped like :func:`_blocks`."""
    av = _pyav()
    cap = MAX_DECODE_SECONDS if max_seconds is None else float(max_seconds)
    limit, total = cap * f.samplerate, 0  # a float: cap may be inf (stream_audio)
    convert = av.AudioResampler(format="fltp")
    try:
        for frame in f.container.decode(f.stream):
            for out in convert.resample(frame):
                block = np.ascontiguousarray(out.to_ndarray().T, dtype=np.float32)  # (channels, n) -> (n, ch)
                total += len(block)
                if total > limit:
                    raise AudioTooLongError(where, f"more than {cap:g} s; split the recording")
                yield block
    except av.FFmpegError as e:
        raise AudioCorruptError(where, f"PyAV failed while decoding: {str(e).splitlines()[0]}") from None


def _decode_blocks(f: Any, blocks: Any, head: bytes, where: str, target_sr: int) -> tuple[np.ndarray, list[str]]:
    """The one decoding loop: mono mix and soxr resampling per (frames, channels) block of ``f``
    (anything with ``samplerate`` and ``channels``), non-finite and warning statistics as decoded."""
    sr = int(f.samplerate)
    stream = soxr.ResampleStream(sr, int(target_sr), 1, dtype="float32", quality="HQ") \
        if sr != int(target_sr) else None
    parts: list[np.ndarray] = []
    n = n_clip = n_bad = 0
    peak = 0.0
    try:
        for block in blocks:
            finite = np.isfinite(block)
            if not finite.all():
                n_bad += int(block.size - np.count_nonzero(finite))
                n += len(block)
                continue  # keep counting for the message, nothing more to compute
            a = np.abs(block)
            peak = max(peak, float(a.max()))
            n_clip += int(np.count_nonzero(a >= CLIP_LEVEL))
            n += len(block)
            mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
            parts.append(stream.resample_chunk(mono) if stream is not None else mono.copy())
    except sf.LibsndfileError as e:
        raise _classify_failure(head, where, e) from None
    if n == 0:
        raise EmptyAudioError(where)
    if n_bad:
        raise NonFiniteAudioError(where, f"{n_bad} of {n * f.channels} samples")
    if stream is not None:
        parts.append(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    texts = _warning_texts(where, n, sr, peak, n_clip, n * f.channels)
    declared = _wav_declared_frames(head)
    if declared is not None and declared > n + sr // 100:  # more than 10 ms missing
        texts.append(f"{where}: header announces {declared / sr:.2f} s ({declared} frames) but the file "
                     f"holds {n / sr:.2f} s ({n} frames); truncated? decoded what is there")
    out = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return np.ascontiguousarray(out, dtype=np.float32), texts


def stream_audio(path: str | Path, target_sr: int = 16000, *, block_seconds: float = 10.0):
    """Mono float32 blocks of about ``block_seconds`` at ``target_sr``, decoded and resampled as they
    are read: memory stays bounded whatever the file's length (no MAX_DECODE_SECONDS cap: nothing
    accumulates). Raises the typed errors of :func:`load_audio` (empty, corrupt, non-finite)."""
    p = _check_path(path)
    head = _head(p)
    with _opened(str(p), head, str(p), float("inf")) as (f, blocks):
        sr = int(f.samplerate)
        stream = soxr.ResampleStream(sr, int(target_sr), 1, dtype="float32", quality="HQ") \
            if sr != int(target_sr) else None
        want = max(1, int(block_seconds * target_sr))
        pending: list[np.ndarray] = []
        have = n = 0
        try:
            for block in blocks:
                if not np.isfinite(block).all():
                    raise NonFiniteAudioError(str(p), f"non-finite samples near {n / sr:.1f} s")
                n += len(block)
                mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0].copy()
                pending.append(stream.resample_chunk(mono) if stream is not None else mono)
                have += len(pending[-1])
                if have >= want:
                    yield np.concatenate(pending)
                    pending, have = [], 0
        except sf.LibsndfileError as e:
            raise _classify_failure(head, str(p), e) from None
        if n == 0:
            raise EmptyAudioError(str(p))
        if stream is not None:
            pending.append(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        if pending:
            yield np.concatenate(pending)


def _emit(texts: list[str]) -> None:
    for text in texts:
        warnings.warn(text, AudioWarning, stacklevel=3)


def load_with_warnings(path: str | Path, target_sr: int = 16000, *,
                       max_seconds: float | None = None) -> tuple[np.ndarray, list[str]]:
    """:func:`load_audio` without the warnings module: (signal, warning texts). Thread-safe way to
    collect warnings per file (warnings.warn is process-global)."""
    p = _check_path(path)
    return _decode(str(p), _head(p), str(p), target_sr, max_seconds)


def decode_with_warnings(data: bytes, target_sr: int = 16000, name: str = "<upload>", *,
                         max_seconds: float | None = None) -> tuple[np.ndarray, list[str]]:
    """:func:`decode_audio` returning (signal, warning texts) instead of issuing warnings.
    ``max_seconds`` lowers the duration cap (a service bounds the memory one request can take)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode_audio needs bytes, got {type(data).__name__}")
    raw = bytes(data)
    if not raw:
        raise EmptyAudioError(name, "file is 0 bytes")
    return _decode(io.BytesIO(raw), raw[:_HEAD], name, target_sr, max_seconds)


def load_audio(path: str | Path, target_sr: int = 16000, *, warn: bool = True) -> np.ndarray:
    """Float32 mono at ``target_sr``: any rate/bit depth soundfile reads (WAV, FLAC, OGG, ...);
    channels averaged; soxr HQ resampling. Typed errors for bad input, AudioWarning for suspicious."""
    x, texts = load_with_warnings(path, target_sr)
    if warn:
        _emit(texts)
    return x


def decode_audio(data: bytes, target_sr: int = 16000, name: str = "<upload>", *, warn: bool = True,
                 max_seconds: float | None = None) -> np.ndarray:
    """Same as :func:`load_audio` for in-memory bytes (e.g. an HTTP upload); ``name`` is used in messages."""
    x, texts = decode_with_warnings(data, target_sr, name, max_seconds=max_seconds)
    if warn:
        _emit(texts)
    return x


def check_waveform(x: Any, name: str = "<memory>") -> np.ndarray:
    """The one waveform check (predictor inputs, encoder inputs): a 1-D finite float32 waveform, or a
    typed AudioError / ConfigError naming ``name``."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ConfigError(f"{name}: expected a 1-D mono waveform, got shape {a.shape} "
                          "(pass a list for several waveforms; mix channels down first)")
    if a.size == 0:
        raise EmptyAudioError(name)
    if not np.issubdtype(a.dtype, np.number):
        raise ConfigError(f"{name}: waveform dtype {a.dtype} is not numeric")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise NonFiniteAudioError(name)
    return a
