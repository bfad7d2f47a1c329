"""Audio arriving on a pipe (``analyze --stream``, the WebSocket): a WAV stream or raw PCM, turned
into 16 kHz mono float32 blocks as the bytes come in.

libsndfile (soundfile) cannot read a WAV from a pipe (it seeks), and the standard library's ``wave``
reads no float samples; a WAV header is a few fixed fields, so it is parsed here."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from parrot_ser.errors import ConfigError

FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
_WAV_CODES = {(1, 16): "s16le", (3, 32): "f32le"}  # (format tag, bits) we read
_EXTENSIBLE = 0xFFFE


@dataclass(frozen=True)
class PcmFormat:
    rate: int
    format: str = "s16le"
    channels: int = 1

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"--format {self.format!r}: choose one of {', '.join(FORMATS)}")
        if not (4000 <= self.rate <= 384000) or not (1 <= self.channels <= 32):
            raise ConfigError(f"--rate {self.rate} must be 4000-384000 Hz and --channels {self.channels} 1-32")

    @property
    def frame_bytes(self) -> int:
        return FORMATS[self.format].itemsize * self.channels


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = b""
    while len(data) < n:
        part = f.read(n - len(data))
        if not part:
            raise ConfigError(f"stdin: the stream ended inside the WAV header ({what}); send a WAV stream or "
                              "raw PCM with --rate/--format/--channels")
        data += part
    return data


def read_wav_header(f: BinaryIO) -> PcmFormat:
    """Consume a WAV header up to the start of its samples; the stream is then raw PCM."""
    riff = _read_exact(f, 12, "RIFF")
    if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise ConfigError("stdin: not a WAV stream (no RIFF/WAVE header); for raw PCM pass --rate "
                          "(and --format, --channels)")
    fmt: PcmFormat | None = None
    while True:
        cid, size = struct.unpack("<4sI", _read_exact(f, 8, "chunk"))
        if cid == b"data":
            if fmt is None:
                raise ConfigError("stdin: WAV data chunk before its fmt chunk")
            return fmt
        body = _read_exact(f, size + (size & 1), cid.decode("latin-1"))
        if cid == b"fmt ":
            tag, ch, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if tag == _EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]
            name = _WAV_CODES.get((tag, bits))
            if name is None:
                raise ConfigError(f"stdin: WAV stream with format tag {tag} and {bits}-bit samples; streams "
                                  "must be 16-bit PCM or 32-bit float")
            fmt = PcmFormat(int(rate), name, int(ch))


class PcmDecoder:
    """Bytes in any pieces -> 16 kHz mono float32 blocks (partial frames wait for their rest)."""

    def __init__(self, fmt: PcmFormat, target_sr: int = 16000):
        import soxr

        self.fmt = fmt
        self._rest = b""
        self._resampler = soxr.ResampleStream(fmt.rate, target_sr, 1, dtype="float32", quality="HQ") \
            if fmt.rate != target_sr else None

    def decode(self, data: bytes) -> np.ndarray:
        data = self._rest + data
        usable = len(data) - len(data) % self.fmt.frame_bytes
        self._rest = data[usable:]
        x = np.frombuffer(data[:usable], dtype=FORMATS[self.fmt.format]).astype(np.float32)
        if self.fmt.format == "s16le":
            x /= 32768.0
        if not np.isfinite(x).all():
            raise ConfigError("stream: non-finite samples (NaN or inf) in the audio")
        x = x.reshape(-1, self.fmt.channels).mean(axis=1, dtype=np.float32) if self.fmt.channels > 1 else x
        return self._resampler.resample_chunk(x) if self._resampler is not None else x

    def flush(self) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        return self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def pcm_blocks(f: BinaryIO, fmt: PcmFormat | None, chunk_bytes: int = 6400) -> Iterator[np.ndarray]:
    """Blocks from a binary stream: raw PCM in ``fmt``, or a WAV stream when ``fmt`` is None.
    ``read1`` returns what has arrived (no waiting for a full chunk), so blocks follow the input."""
    fmt = fmt or read_wav_header(f)
    dec = PcmDecoder(fmt)
    read = getattr(f, "read1", f.read)
    while True:
        data = read(chunk_bytes)
        if not data:
            break
        block = dec.decode(data)
        if len(block):
            yield block
    tail = dec.flush()
    if len(tail):
        yield tail
