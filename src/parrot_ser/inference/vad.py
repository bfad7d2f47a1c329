"""Voice activity: which parts of a recording are speech, frame by frame, as audio arrives.

- ``silero`` (default): Silero VAD (MIT), the ONNX model that ships inside the ``silero-vad`` wheel,
  run with onnxruntime (extra ``parrot-ser[vad]``). Nothing is downloaded; the package itself is
  not imported (its ``__init__`` sets torch's global thread count), only its data file is read.
- ``energy``: a simple fallback with no dependency: frame loudness in dBFS through a soft threshold.

Both give one speech probability per 32 ms frame (512 samples at 16 kHz). :class:`Segmenter` turns
those into speech regions with hysteresis (the rule of Silero's ``get_speech_timestamps``: enter
at ``threshold``, leave below ``threshold - 0.15`` after ``min_silence`` s, drop regions shorter
than ``min_speech`` s, pad each side by ``pad`` s). It is written here, not taken from
silero-vad, because that function needs the whole recording in memory and we segment streams:
the same object segments a file block by block and a live stream chunk by chunk, so both give the
same regions."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from parrot_ser.errors import ConfigError

VAD_RATE = 16000
FRAME = 512  # samples per VAD frame at 16 kHz (Silero's fixed frame)
FRAME_SECONDS = FRAME / VAD_RATE
VAD_NAMES = ("silero", "energy")


def _silero_data() -> Path:
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("--vad silero needs the 'vad' extra: pip install 'parrot-ser[vad]' "
                          "(silero-vad + onnxruntime); or choose --vad energy (no extra needed)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _silero_model_path() -> Path:
    path = _silero_data() / "silero_vad.onnx"
    if not path.is_file():
        raise ConfigError(f"{path}: the silero-vad package has no ONNX model; reinstall it "
                          "(pip install 'parrot-ser[vad]') or choose --vad energy")
    return path


class SileroVAD:
    """Stateful: frames must be fed in order (a recurrent model); ``reset()`` for a new recording.

    Two exports of the same 16 kHz network ship in the wheel: ``silero_vad_16k_sequence.onnx``
    (silero-vad >= 6) takes a whole block of frames per call, its LSTM carried across them inside
    the graph; ``silero_vad.onnx`` takes one frame per call. They give identical probabilities
    (tests/test_timeline.py); the sequence one is about 2x faster per frame on a 10 s block (the
    per-frame export spends half its time in per-call overhead), so it is used when present."""

    name = "silero"
    CONTEXT = 64  # samples of the previous frame the model sees (as silero-vad's own wrapper)

    def __init__(self, sequence: bool = True) -> None:
        path = _silero_model_path()
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("--vad silero needs onnxruntime: pip install 'parrot-ser[vad]'; or choose "
                              "--vad energy (no extra needed)") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # small inputs: threads only cost
        seq = path.with_name("silero_vad_16k_sequence.onnx")
        self.sequence = sequence and seq.is_file()
        self._session = ort.InferenceSession(str(seq if self.sequence else path), opts,
                                             providers=["CPUExecutionProvider"])
        self._sr = np.array(VAD_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)  # the LSTM's (h, c)
        self._context = np.zeros(self.CONTEXT, dtype=np.float32)

    def frame_probs(self, frames: np.ndarray) -> np.ndarray:
        """(n, FRAME) float32 at 16 kHz -> (n,) speech probabilities."""
        frames = np.asarray(frames, dtype=np.float32).reshape(-1, FRAME)
        if not len(frames):
            return np.zeros(0, dtype=np.float32)
        if self.sequence:
            # each row: the previous frame's last CONTEXT samples, then the frame
            prev = np.concatenate([self._context[None], frames[:-1, -self.CONTEXT:]])
            p, h, c = self._session.run(None, {"input": np.concatenate([prev, frames], axis=1),
                                               "h": self._state[:1], "c": self._state[1:]})
            self._state = np.concatenate([h, c])
            self._context = frames[-1, -self.CONTEXT:].copy()
            return np.asarray(p, dtype=np.float32).reshape(-1)
        out = np.empty(len(frames), dtype=np.float32)
        for i, fr in enumerate(frames):
            x = np.concatenate([self._context, fr])[None, :]
            p, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
            self._context = fr[-self.CONTEXT:]
            out[i] = float(p.reshape(-1)[0])
        return out


class EnergyVAD:
    """Loudness through a logistic around ``threshold_db`` dBFS (no model: a fallback that is
    fooled by loud noise and misses quiet speech; choose it only when silero is not available)."""

    name = "energy"

    def __init__(self, threshold_db: float = -35.0, width_db: float = 3.0):
        self.threshold_db, self.width_db = threshold_db, width_db

    def reset(self) -> None:
        pass

    def frame_probs(self, frames: np.ndarray) -> np.ndarray:
        rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-12)
        db = 20 * np.log10(rms)
        return (1 / (1 + np.exp(-(db - self.threshold_db) / self.width_db))).astype(np.float32)


def make_vad(name: str) -> SileroVAD | EnergyVAD:
    if name == "silero":
        return SileroVAD()
    if name == "energy":
        return EnergyVAD()
    raise ConfigError(f"unknown --vad {name!r}; choose silero (default) or energy")


@dataclass
class Segmenter:
    """Streaming hysteresis over frame probabilities -> speech regions in samples at 16 kHz."""

    threshold: float = 0.5
    min_speech: float = 0.25
    min_silence: float = 0.3
    pad: float = 0.03

    def __post_init__(self) -> None:
        self._frame = 0  # frames seen
        self._start: int | None = None  # first speech frame of the open region
        self._silence_from: int | None = None  # first frame of the silence that may close it

    def feed(self, probs: np.ndarray) -> Iterator[tuple[int, int]]:
        """Regions (start, end) in samples that closed within these frames."""
        low = self.threshold - 0.15
        need_silence = int(round(self.min_silence / FRAME_SECONDS))
        for p in probs:
            i = self._frame
            self._frame += 1
            if self._start is None:
                if p >= self.threshold:
                    self._start, self._silence_from = i, None
                continue
            if p >= low:
                self._silence_from = None
            elif self._silence_from is None:
                self._silence_from = i
            elif i + 1 - self._silence_from >= need_silence:
                region = self._close(self._silence_from)
                if region:
                    yield region

    def flush(self) -> Iterator[tuple[int, int]]:
        """The region still open at the end of the input."""
        if self._start is not None:
            region = self._close(self._silence_from if self._silence_from is not None else self._frame)
            if region:
                yield region

    @property
    def open_start(self) -> int | None:
        """Sample where the open region starts (padded), None in silence."""
        return None if self._start is None else max(0, self._start * FRAME - int(self.pad * VAD_RATE))

    @property
    def confirmed_end(self) -> int | None:
        """Sample up to which the open region is sure to reach (its end is at least this), None in silence."""
        if self._start is None:
            return None
        if self._silence_from is None:
            return self._frame * FRAME
        return min(self._frame * FRAME, self._silence_from * FRAME + int(self.pad * VAD_RATE))

    def _close(self, end_frame: int) -> tuple[int, int] | None:
        start, self._start, self._silence_from = self._start, None, None
        assert start is not None
        if (end_frame - start) * FRAME_SECONDS < self.min_speech:
            return None
        pad = int(self.pad * VAD_RATE)
        return max(0, start * FRAME - pad), min(self._frame * FRAME, end_frame * FRAME + pad)
