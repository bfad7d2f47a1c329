"""Emotion over time: voice activity -> speech regions -> windows -> probabilities -> merged segments.

One streaming object, :class:`TimelineAnalyzer`, serves every entry point: ``analyze`` on files (fed
block by block from the decoder, so a 3-hour file never sits whole in memory), ``analyze --stream``
on stdin and the service's WebSocket. It keeps only the audio it still needs (the open speech
region's next window, a window's worth for the region's tail, and a VAD frame of padding).

- Regions: :mod:`vad` (Silero or energy) + its hysteresis :class:`~parrot_ser.inference.vad.Segmenter`.
  Silence is never scored.
- Windows: each region is cut into ``window``-second windows every ``hop`` seconds; the rest of the
  region (0.5 to 1.5 windows long) is the last window, so no window is a sliver and none repeats
  most of the previous one; a region shorter than 1.5 windows is one window.
  The default window is the median clip length the model was trained on (recorded in the bundle).
- Dimensions: a model trained on dimensions (arousal, ...; the tasks of training/tasks.py) gives each
  window their values in the training data's scale, next to the label probabilities; a
  regression-only model has no label (None), so each speech region is one segment.
- Smoothing (optional): a centred moving average of ``smooth`` windows' probabilities (and
  dimensions) inside a region.
- Segments: consecutive windows of one region with one label, merged (probabilities and dimensions
  averaged); where two windows overlap the boundary is the middle of the overlap. A segment is final
  (and emitted) when the next window of its region has another label or its region ends."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parrot_ser.audio import resample
from parrot_ser.errors import ConfigError
from parrot_ser.inference.vad import FRAME, VAD_RATE, Segmenter, make_vad

DEFAULT_WINDOW = 3.0  # seconds, for bundles that do not record their training clip lengths
BLOCK_SECONDS = 10.0  # decoded per step when analysing a file
MIN_TAIL = VAD_RATE // 4  # samples: a region's rest shorter than this (only when hop > window) is not scored


@dataclass
class Window:
    start: float
    end: float
    label: str | None  # None: a regression-only model
    probabilities: dict[str, float]
    region: int = 0
    dimensions: dict[str, float] = field(default_factory=dict)  # the training data's scale

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"start": round(self.start, 3), "end": round(self.end, 3), "label": self.label}
        if self.label is not None:
            d["probabilities"] = {k: round(v, 6) for k, v in self.probabilities.items()}
        if self.dimensions:
            d["dimensions"] = {k: round(v, 6) for k, v in self.dimensions.items()}
        return d


@dataclass
class Segment(Window):
    n_windows: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "windows": self.n_windows}


@dataclass
class Timeline:
    path: str | None
    duration: float
    regions: list[tuple[float, float]]
    windows: list[Window]
    segments: list[Segment]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def speech_seconds(self) -> float:
        return float(sum(e - s for s, e in self.regions))

    def dominant(self, start: float, end: float) -> str | None:
        """The label covering most of [start, end) (None when no segment overlaps it)."""
        cover: dict[str, float] = {}
        for s in self.segments:
            ov = min(end, s.end) - max(start, s.start)
            if ov > 0:
                cover[s.label] = cover.get(s.label, 0.0) + ov
        return max(cover, key=cover.__getitem__) if cover else None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "duration": round(self.duration, 3),
                "speech_seconds": round(self.speech_seconds, 3),
                "regions": [[round(s, 3), round(e, 3)] for s, e in self.regions],
                "segments": [s.to_dict() for s in self.segments],
                "windows": [w.to_dict() for w in self.windows], "settings": self.settings}


@dataclass
class _Region:
    id: int
    start: int  # samples at VAD_RATE
    next: int  # start of the next window to cut
    cut: int = 0  # windows cut so far
    last_end: int = 0


def default_window(predictor: Any) -> float:
    """The median training clip length recorded in the bundle, else DEFAULT_WINDOW."""
    clips = (getattr(predictor, "info", None) or {}).get("training", {}).get("clip_seconds") or {}
    med = clips.get("median")
    return round(float(med), 2) if med else DEFAULT_WINDOW


class TimelineAnalyzer:
    """Feed 16 kHz mono float32 audio with :meth:`feed`, then :meth:`finish`; both return the
    segments that became final. ``eager``: score every window as soon as it is cut (streams, for
    latency); otherwise windows are scored in batches of ``batch_size`` (files, for speed)."""

    def __init__(self, predictor: Any, *, vad: str = "silero", window: float | None = None,
                 hop: float | None = None, smooth: int = 1, batch_size: int = 16, eager: bool = False,
                 segmenter: Segmenter | None = None):
        self.predictor = predictor
        self.window = float(window) if window else default_window(predictor)
        self.hop = float(hop) if hop else self.window
        if not (0.25 <= self.window <= 60 and 0.1 <= self.hop <= self.window * 4) or smooth < 1:
            raise ConfigError(f"window {self.window} s must be within 0.25-60 s, hop {self.hop} s within "
                              f"0.1 s and 4 windows, smooth >= 1 window")
        self.vad = make_vad(vad)
        self.segmenter = segmenter or Segmenter()
        self.smooth, self.batch_size, self.eager = int(smooth), int(batch_size), eager
        self._labels = list(predictor.labels)
        self._dims = list(getattr(predictor, "dims", None) or [])  # dimensional models (training/tasks.py)
        self._win, self._hop = int(round(self.window * VAD_RATE)), int(round(self.hop * VAD_RATE))
        self._buf = np.zeros(0, dtype=np.float32)
        self._base = 0  # absolute sample index of _buf[0]
        self._total = 0  # samples fed
        self._vad_pos = 0  # next sample the VAD reads
        self._region: _Region | None = None
        self._n_regions = 0
        self._pending: list[tuple[int, int, int, np.ndarray]] = []  # (region, start, end, audio)
        self._closed: list[int] = []  # closed regions whose windows may still be pending
        self._raw: dict[int, list[Window]] = {}  # scored, not yet smoothed/merged, per region
        self._done_idx: dict[int, int] = {}
        self._cur: Segment | None = None
        self._out: list[Segment] = []
        self.regions: list[tuple[float, float]] = []
        self.windows: list[Window] = []
        self.segments: list[Segment] = []

    # --- input ------------------------------------------------------------------------------------
    def feed(self, audio: np.ndarray) -> list[Segment]:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        self._buf = np.concatenate([self._buf, audio]) if len(self._buf) else audio.copy()
        self._total += len(audio)
        n = (self._total - self._vad_pos) // FRAME
        if n:
            off = self._vad_pos - self._base
            probs = self.vad.frame_probs(self._buf[off:off + n * FRAME].reshape(n, FRAME))
            closed = list(self.segmenter.feed(probs))
            self._vad_pos += n * FRAME
            for s, e in closed:
                self._close_region(s, e)
            self._cut_open()
        self._trim()
        return self._score(force=self.eager)

    def finish(self) -> list[Segment]:
        """End of input: pad the last partial VAD frame with silence, close the open region."""
        rest = (self._total - self._vad_pos) % FRAME
        if rest:
            off = self._vad_pos - self._base
            frame = np.zeros(FRAME, dtype=np.float32)
            frame[:rest] = self._buf[off:off + rest]
            self.segmenter.feed(self.vad.frame_probs(frame[None]))  # only updates its state
        for s, e in self.segmenter.flush():
            self._close_region(s, min(e, self._total))
        return self._score(force=True)

    # --- regions and windows ----------------------------------------------------------------------
    def _open(self, start: int) -> _Region:
        if self._region is None or self._region.start != start:
            self._region = _Region(self._n_regions, start, start)
            self._n_regions += 1
        return self._region

    def _cut_open(self) -> None:
        start, confirmed = self.segmenter.open_start, self.segmenter.confirmed_end
        if start is not None and confirmed is not None:
            self._cut(self._open(start), confirmed)

    def _close_region(self, s: int, e: int) -> None:
        reg = self._open(s)
        self._cut(reg, e)
        # The rest of the region is one last window of 0.5-1.5 window lengths (the cut above leaves at
        # least half a window), or the whole region when it is shorter than that: a 2.1 s region and a
        # 2 s model give one window, not a second one for the last 0.1 s.
        if reg.cut == 0 or e - reg.next >= min(self._win // 2, MIN_TAIL):
            self._add(reg, reg.next if reg.cut else s, e)
        self.regions.append((s / VAD_RATE, e / VAD_RATE))
        self._closed.append(reg.id)
        self._region = None

    def _cut(self, reg: _Region, upto: int) -> None:
        """Full windows while at least half a window more is known to follow (see _close_region)."""
        while reg.next + self._win + self._win // 2 <= upto:
            self._add(reg, reg.next, reg.next + self._win)
            reg.next += self._hop

    def _add(self, reg: _Region, s: int, e: int) -> None:
        audio = self._buf[s - self._base:e - self._base].copy()
        self._pending.append((reg.id, s, e, audio))
        reg.cut += 1
        reg.last_end = e

    def _trim(self) -> None:
        keep = self._vad_pos - int(self.segmenter.pad * VAD_RATE) - FRAME
        if self._region is not None:
            keep = min(keep, self._region.next)  # the next window starts there (all later ones after it)
        keep = max(self._base, min(keep, self._total))
        if keep > self._base:
            self._buf = self._buf[keep - self._base:].copy()
            self._base = keep

    # --- scoring, smoothing, merging --------------------------------------------------------------
    def _score(self, force: bool) -> list[Segment]:
        while self._pending and (force or len(self._pending) >= self.batch_size):
            batch, self._pending = self._pending[:self.batch_size], self._pending[self.batch_size:]
            sr = int(self.predictor.sample_rate)
            waves = [resample(a, VAD_RATE, sr) for _, _, _, a in batch]
            # one encoder call for the whole batch: windows of equal length share a forward
            rows = self.predictor.probabilities(waves, batch_size=self.batch_size)
            for (rid, s, e, _), row in zip(batch, rows):
                self._raw.setdefault(rid, []).append(self._window(s / VAD_RATE, e / VAD_RATE, row, rid))
        for rid in sorted(self._raw):
            self._advance(rid, closed=rid in self._closed and not any(p[0] == rid for p in self._pending))
        out, self._out = self._out, []
        return out

    def _window(self, start: float, end: float, row: np.ndarray, rid: int) -> Window:
        """A scored window from the predictor's row: label probabilities, then dimensions."""
        labels, dims = self._labels, self._dims
        k = len(labels)
        return Window(start, end, labels[int(np.argmax(row[:k]))] if k else None,
                      {lab: float(v) for lab, v in zip(labels, row[:k])}, rid,
                      {d: float(v) for d, v in zip(dims, row[k:k + len(dims)])})

    def _advance(self, rid: int, closed: bool) -> None:
        raw, h = self._raw[rid], self.smooth // 2
        i = self._done_idx.get(rid, 0)
        while i < len(raw) and (closed or i + h < len(raw)):
            w = raw[i]
            if self.smooth > 1:
                rows = raw[max(0, i - h):i + h + 1]
                mean = np.mean([[*r.probabilities.values(), *r.dimensions.values()] for r in rows], axis=0)
                w = self._window(w.start, w.end, mean, rid)
            self.windows.append(w)
            self._merge(w)
            i += 1
        self._done_idx[rid] = i
        if closed and i == len(raw):
            self._emit(None)
            del self._raw[rid], self._done_idx[rid]
            self._closed.remove(rid)

    def _merge(self, w: Window) -> None:
        cur = self._cur
        if cur is not None and cur.region == w.region and cur.label == w.label:
            n = cur.n_windows
            cur.probabilities = {k: (v * n + w.probabilities[k]) / (n + 1) for k, v in cur.probabilities.items()}
            cur.dimensions = {k: (v * n + w.dimensions[k]) / (n + 1) for k, v in cur.dimensions.items()}
            cur.end, cur.n_windows = w.end, n + 1
            return
        start = w.start
        if cur is not None and cur.region == w.region:
            start = self._emit(w.start)
        elif cur is not None:
            self._emit(None)
        self._cur = Segment(start, w.end, w.label, dict(w.probabilities), w.region, dict(w.dimensions))

    def _emit(self, next_start: float | None) -> float:
        """Finalise the current segment; where the next window overlaps it, split at the middle."""
        cur, self._cur = self._cur, None
        if cur is None:
            return next_start or 0.0
        if next_start is not None and next_start < cur.end:
            cur.end = (cur.end + next_start) / 2
        self.segments.append(cur)
        self._out.append(cur)
        return cur.end if next_start is not None else 0.0

    def timeline(self, path: str | None = None) -> Timeline:
        return Timeline(path, self._total / VAD_RATE, list(self.regions), list(self.windows),
                        list(self.segments), {"vad": self.vad.name, "window": self.window, "hop": self.hop,
                                              "smooth": self.smooth, "labels": self._labels,
                                              "dimensions": self._dims})


def analyze_blocks(predictor: Any, blocks: Iterable[np.ndarray], path: str | None = None,
                   **options: Any) -> Timeline:
    """A timeline from 16 kHz mono blocks (an iterator: nothing is held beyond what is needed)."""
    an = TimelineAnalyzer(predictor, **options)
    for b in blocks:
        an.feed(b)
    an.finish()
    return an.timeline(path)


def file_blocks(path: str | Path, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    from parrot_ser.audio import stream_audio

    return stream_audio(path, VAD_RATE, block_seconds=block_seconds)


def analyze_file(predictor: Any, path: str | Path, **options: Any) -> Timeline:
    """``analyze`` for one file: streamed decode -> :class:`TimelineAnalyzer`."""
    return analyze_blocks(predictor, file_blocks(path), str(path), **options)
