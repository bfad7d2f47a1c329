"""A synthetic, speaker-labelled acted-prosody SER corpus, deterministic from a seed and offline.

Each utterance = sentence x speaker (voice) x emotion (prosody profile). Emotions are rendered as
prosody only (rate, pitch level, pitch range, loudness) through espeak-ng SSML ``<prosody>``, plus
seeded voice-quality post effects in numpy (jitter, tremolo, breathiness, harshness). The profiles
follow the classic acted-emotion prosody findings (Murray & Arnott 1993; Scherer 2003): anger and
happiness fast, high and wide; sadness and boredom slow, low and narrow; fear fast, high and
trembling. If libespeak-ng cannot load, a numpy/scipy source-filter synthesiser renders the same
profiles into the same layout (``DemoCorpus.backend`` and ``corpus.json`` say which was used).

Layout (read by the ``csv`` corpus / ``Manifest.from_csv``)::

    OUT/wav/<speaker>/<speaker>_s<NN>_<emotion>_r<R>.wav   16 kHz mono PCM-16
    OUT/manifest.csv (+ manifest.csv.json)                 utt_id,path,label,speaker,... + meta
    OUT/corpus.json                                         generator, seed, backend, profiles
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy import signal

from parrot_ser.corpora.base import Manifest, Utterance
from parrot_ser.errors import ConfigError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class EmotionProfile:
    name: str
    rate: float  # x speaker's words per minute
    pitch: float  # x speaker's pitch level
    range: float  # x speaker's pitch range
    volume: float  # x loudness
    jitter: float = 0.0  # depth of a slow random F0 wobble (relative)
    tremolo_hz: float = 0.0
    tremolo_depth: float = 0.0
    breath: float = 0.0  # aspiration noise relative to the speech envelope
    drive: float = 0.0  # soft-clipping harshness (0 = clean)
    end: str = "."  # sentence punctuation: espeak uses it to pick the final intonation contour


EMOTIONS: dict[str, EmotionProfile] = {p.name: p for p in (
    EmotionProfile("neutral", 1.00, 1.00, 1.0, 1.00),
    EmotionProfile("happy", 1.12, 1.25, 1.7, 1.15, jitter=0.01, end="!"),
    EmotionProfile("sad", 0.72, 0.82, 0.45, 0.60, breath=0.25),
    EmotionProfile("angry", 1.22, 1.15, 1.5, 1.60, drive=0.6, end="!"),
    EmotionProfile("fear", 1.30, 1.38, 1.2, 0.90, jitter=0.03, tremolo_hz=6.5, tremolo_depth=0.35, breath=0.15),
    EmotionProfile("disgust", 0.80, 0.85, 1.3, 0.95, drive=0.25, breath=0.1),
    EmotionProfile("surprise", 1.05, 1.45, 1.9, 1.20, end="?"),
    EmotionProfile("boredom", 0.82, 0.90, 0.2, 0.75),
)}


@dataclass(frozen=True)
class SpeakerProfile:
    speaker: str
    voice: str  # espeak-ng voice+variant
    gender: str
    pitch: int  # espeak base pitch, 0..100 (50 = voice default)
    wpm: int  # words per minute
    pitch_range: int  # espeak pitch range, 0..100
    f0_hz: float  # base F0 of the numpy fallback voice
    formant_scale: float  # vocal-tract length factor of the fallback voice


SPEAKERS: tuple[SpeakerProfile, ...] = (
    SpeakerProfile("m1", "en+m1", "male", 42, 165, 50, 105.0, 1.00),
    SpeakerProfile("m2", "en+m2", "male", 50, 180, 45, 120.0, 0.97),
    SpeakerProfile("m3", "en+m3", "male", 36, 155, 55, 95.0, 1.03),
    SpeakerProfile("m4", "en+m4", "male", 55, 190, 50, 130.0, 0.95),
    SpeakerProfile("f1", "en+f1", "female", 48, 170, 55, 200.0, 1.15),
    SpeakerProfile("f2", "en+f2", "female", 55, 185, 50, 215.0, 1.18),
    SpeakerProfile("f3", "en+f3", "female", 44, 160, 60, 190.0, 1.12),
    SpeakerProfile("f4", "en+f4", "female", 60, 175, 45, 230.0, 1.20),
)

# Two more voices that the corpus never uses: the demo's prediction step speaks with them, so its
# predictions are on unseen speakers (as the speaker-independent folds promise).
UNSEEN_SPEAKERS: tuple[SpeakerProfile, ...] = (
    SpeakerProfile("m5", "en+m5", "male", 46, 170, 50, 112.0, 0.99),
    SpeakerProfile("f5", "en+f5", "female", 52, 178, 55, 205.0, 1.16),
)

# Emotionally neutral content (as in Emo-DB): the label must come from prosody, not from words.
SENTENCES: tuple[str, ...] = (
    "The table is standing in the corner of the room",
    "I will bring the papers to the office tomorrow",
    "The train leaves at seven in the morning",
    "She put the keys on the kitchen shelf",
    "We talked about it on the way home",
    "The letter arrived here this afternoon",
    "He painted the old fence last weekend",
    "They moved all the boxes into the cellar",
)


@dataclass
class DemoCorpus:
    root: Path
    manifest_csv: Path
    backend: str  # "espeak-ng" or "numpy-source-filter"
    seed: int
    emotions: list[str]
    speakers: list[str]
    n_sentences: int
    repetitions: int
    n_utterances: int

    def manifest(self) -> Manifest:
        return Manifest.from_csv(self.manifest_csv, root=self.root)


# --------------------------------------------------------------------------------------------
# Rendering


@dataclass(frozen=True)
class Rendering:
    """Everything that decides one utterance's samples (after the per-utterance random draw)."""

    text: str
    speaker: SpeakerProfile
    emotion: EmotionProfile
    rate: float  # final multipliers, including the small per-utterance variation
    pitch: float
    range: float
    volume: float


def _ssml(r: Rendering) -> str:
    # Percentages in <prosody> scale the base values set with espeak_SetParameter.
    return (f'<speak><prosody rate="{r.rate * 100:.0f}%" pitch="{r.pitch * 100:.0f}%" '
            f'range="{r.range * 100:.0f}%" volume="{r.volume * 100:.0f}%">'
            f"{r.text}{r.emotion.end}</prosody></speak>")


def render_espeak(r: Rendering) -> np.ndarray:
    from parrot_ser.demo.espeak import Espeak

    eng = Espeak.get()
    s = r.speaker
    x = eng.synth_fresh(_ssml(r), voice=s.voice, rate=s.wpm, pitch=s.pitch, pitch_range=s.pitch_range)
    return soxr.resample(x, eng.sample_rate, SAMPLE_RATE).astype(np.float32)


# Vowel formants (Hz, adult male; Peterson & Barney 1952) for the fallback voice.
_VOWELS = {"a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (270, 2290, 3010),
           "o": (570, 840, 2410), "u": (300, 870, 2240), "y": (270, 2290, 3010)}


def _resonator(x: np.ndarray, freq: float, bw: float, sr: int) -> np.ndarray:
    r = np.exp(-np.pi * bw / sr)
    a = [1.0, -2 * r * np.cos(2 * np.pi * freq / sr), r * r]
    return signal.lfilter([1.0 - r], a, x)


def render_source_filter(r: Rendering, rng: np.random.Generator) -> np.ndarray:
    """Fallback voice: glottal pulse train through per-syllable vowel formants, noise onsets for
    consonants, a declining F0 contour with accents. Crude, but it carries the same prosody."""
    sr = SAMPLE_RATE
    s = r.speaker
    syl_dur = 60.0 / (s.wpm * r.rate * 1.5)  # ~1.5 syllables per word
    f0_base = s.f0_hz * r.pitch
    semitones = 4.0 * r.range * (s.pitch_range / 50.0)
    segs: list[tuple[int, str]] = []  # (n_samples, vowel or "" for noise/silence)
    for word in re.findall(r"[a-z']+", r.text.lower()):
        vowels = re.findall(r"[aeiouy]+", word) or ["e"]
        for v in vowels:
            segs.append((int(0.3 * syl_dur * sr), "#"))  # consonant onset
            segs.append((int(0.7 * syl_dur * sr), v[0]))
        segs.append((int(0.25 * syl_dur * sr), ""))  # word gap
    n = sum(k for k, _ in segs)
    t = np.arange(n) / n
    # Declination, one accent per word-initial syllable and the final contour of the punctuation.
    contour = semitones * (0.5 - t)
    accents = np.zeros(n)
    pos = 0
    for k, v in segs:
        if v not in ("", "#"):
            accents[pos:pos + k] = semitones * 0.5 * np.hanning(k)
        pos += k
    if r.emotion.end == "?":
        contour += semitones * 2.0 * np.clip((t - 0.8) / 0.2, 0, 1)
    f0 = f0_base * 2 ** ((contour + 0.5 * accents) / 12.0)
    phase = np.cumsum(f0 / sr)
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal cycle
    source = signal.lfilter([1.0], [1.0, -0.97], pulses)  # glottal spectral tilt
    source = np.diff(source, prepend=0.0)  # lip radiation
    out = np.zeros(n)
    pos = 0
    for k, v in segs:
        if v == "#":
            noise = rng.standard_normal(k) * np.hanning(k) * 0.05
            out[pos:pos + k] = _resonator(noise, 3500 * s.formant_scale, 1500, sr)
        elif v:
            seg = source[pos:pos + k] * np.hanning(k) ** 0.3
            y = sum(_resonator(seg, f * s.formant_scale, 80 + 0.06 * f, sr) for f in _VOWELS[v])
            out[pos:pos + k] = y
        pos += k
    out = out / (np.sqrt(np.mean(out ** 2)) + 1e-9) * 0.08 * r.volume
    pad = np.zeros(int(0.1 * sr))
    return np.concatenate([pad, out, pad]).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, n: int, hz: float, sr: int) -> np.ndarray:
    """Unit-variance random signal band-limited to ``hz`` (for jitter)."""
    k = max(2, int(n * hz / sr) + 2)
    knots = rng.standard_normal(k)
    return np.interp(np.linspace(0, k - 1, n), np.arange(k), knots)


def post_effects(x: np.ndarray, emo: EmotionProfile, rng: np.random.Generator) -> np.ndarray:
    """Seeded voice-quality effects that espeak lacks (numpy; each effect is a line or two)."""
    sr = SAMPLE_RATE
    x = x.astype(np.float64)
    n = len(x)
    if emo.jitter > 0:  # slow random time warp = F0 wobble of +-jitter
        speed = 1.0 + emo.jitter * _smooth_noise(rng, n, 12.0, sr)
        pos = np.cumsum(speed)
        pos = (pos - pos[0]) * (n - 1) / (pos[-1] - pos[0])
        x = np.interp(pos, np.arange(n), x)
    if emo.tremolo_depth > 0:
        t = np.arange(n) / sr
        x = x * (1.0 + emo.tremolo_depth * np.sin(2 * np.pi * emo.tremolo_hz * t + rng.uniform(0, 2 * np.pi)))
    if emo.breath > 0:  # aspiration noise following the speech envelope
        env = signal.lfilter([0.01], [1.0, -0.99], np.abs(x))
        sos = signal.butter(2, 1500, "highpass", fs=sr, output="sos")
        noise = signal.sosfilt(sos, rng.standard_normal(n))
        x = x + emo.breath * 3.0 * env * noise
    if emo.drive > 0:  # soft clipping adds harmonics (harsh voice) at equal energy
        rms = np.sqrt(np.mean(x ** 2)) + 1e-12
        k = 1.0 + 30.0 * emo.drive
        y = np.tanh(k * x)
        x = y * rms / (np.sqrt(np.mean(y ** 2)) + 1e-12)
    return np.clip(x, -0.99, 0.99).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Corpus


def _pick_backend(backend: str) -> str:
    if backend not in ("auto", "espeak", "numpy"):
        raise ConfigError(f"unknown synthesis backend {backend!r}; use auto, espeak or numpy")
    if backend == "numpy":
        return "numpy-source-filter"
    from parrot_ser.demo.espeak import Espeak, EspeakUnavailable

    try:
        Espeak.get()
        return "espeak-ng"
    except EspeakUnavailable as e:
        if backend == "espeak":
            raise
        log.warning("espeak-ng unavailable (%s); using the numpy source-filter fallback", e)
        return "numpy-source-filter"


def _select(names: Sequence[str] | None, known: Sequence[str], what: str) -> list[str]:
    if names is None:
        return list(known)
    bad = [n for n in names if n not in known]
    if bad:
        raise ConfigError(f"unknown demo {what} {', '.join(bad)}; known: {', '.join(known)}")
    if not names:
        raise ConfigError(f"no demo {what} selected")
    return list(names)


def synthesize_corpus(out_dir: str | Path, *, seed: int = 0, emotions: Sequence[str] | None = None,
                      speakers: Sequence[str] | None = None, n_sentences: int | None = None,
                      repetitions: int = 1, backend: str = "auto",
                      on_progress: Callable[[int, int], None] | None = None) -> DemoCorpus:
    """Write the corpus under ``out_dir`` and return where it is. Same arguments -> same bytes.

    Every utterance draws its small random variation from its own generator, seeded by
    (seed, speaker, sentence, emotion, repetition), so a subset renders exactly as in the full set."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    emo_names = _select(emotions, list(EMOTIONS), "emotion(s)")
    spk_by_id = {s.speaker: s for s in (*SPEAKERS, *UNSEEN_SPEAKERS)}
    spk_names = _select(speakers, list(spk_by_id), "speaker(s)") if speakers is not None \
        else [s.speaker for s in SPEAKERS]
    n_sent = len(SENTENCES) if n_sentences is None else int(n_sentences)
    if not 1 <= n_sent <= len(SENTENCES):
        raise ConfigError(f"n_sentences must be in 1..{len(SENTENCES)}, got {n_sentences}")
    if repetitions < 1:
        raise ConfigError(f"repetitions must be >= 1, got {repetitions}")
    used = _pick_backend(backend)
    log.info("demo corpus: synthesising with %s", used)

    jobs = [(spk, si, emo, rep) for spk in spk_names for si in range(n_sent) for emo in emo_names
            for rep in range(repetitions)]
    spk_index = {s.speaker: i for i, s in enumerate((*SPEAKERS, *UNSEEN_SPEAKERS))}
    emo_index = {e: i for i, e in enumerate(EMOTIONS)}
    utts: list[Utterance] = []
    for done, (spk, si, emo, rep) in enumerate(jobs, start=1):
        rng = np.random.default_rng([seed, spk_index[spk], si, emo_index[emo], rep])
        p = EMOTIONS[emo]
        jitter = rng.normal(1.0, 0.04, size=4)  # per-utterance variation, as actors never repeat exactly
        r = Rendering(SENTENCES[si], spk_by_id[spk], p, p.rate * jitter[0], p.pitch * jitter[1],
                      p.range * jitter[2], p.volume * jitter[3])
        x = render_espeak(r) if used == "espeak-ng" else render_source_filter(r, rng)
        x = post_effects(x, p, rng)
        rel = f"wav/{spk}/{spk}_s{si + 1:02d}_{emo}_r{rep + 1}.wav"
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), x, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        utts.append(Utterance(rel[4:-4], rel, emo, spk, emo, {
            "gender": spk_by_id[spk].gender, "sentence": f"s{si + 1:02d}", "text": SENTENCES[si],
            "repetition": str(rep + 1)}))
        if on_progress is not None:
            on_progress(done, len(jobs))

    manifest_csv = Manifest("csv", out, utts).to_csv(out / "manifest.csv")
    info = {"generator": "parrot_ser.demo.synth", "version": GENERATOR_VERSION, "backend": used,
            "seed": seed, "sample_rate": SAMPLE_RATE, "n_utterances": len(utts), "emotions": emo_names,
            "speakers": [asdict(spk_by_id[s]) for s in spk_names], "sentences": list(SENTENCES[:n_sent]),
            "repetitions": repetitions, "profiles": {e: asdict(EMOTIONS[e]) for e in emo_names}}
    (out / "corpus.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return DemoCorpus(out, manifest_csv, used, seed, emo_names, spk_names, n_sent, repetitions, len(utts))


# --------------------------------------------------------------------------------------------
# Measuring what was rendered (used by the tests and the demo report)


def median_f0(x: np.ndarray, sr: int = SAMPLE_RATE, fmin: float = 60.0, fmax: float = 500.0) -> float:
    """Median F0 (Hz) over voiced 40 ms frames by normalised autocorrelation; NaN if none voiced.
    Hand-written (20 lines) to avoid a librosa dependency for one statistic."""
    x = np.asarray(x, dtype=np.float64)
    win, hop = int(0.04 * sr), int(0.01 * sr)
    if len(x) < win:
        return float("nan")
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = np.sqrt((frames ** 2).mean(axis=1))
    frames = frames[energy > 0.3 * np.sqrt(np.mean(x ** 2))]
    if len(frames) == 0:
        return float("nan")
    spec = np.fft.rfft(frames, 2 * win, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :win]
    lo, hi = int(sr / fmax), int(sr / fmin)
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    peak = ac[np.arange(len(ac)), lag] / (ac[:, 0] + 1e-12)
    voiced = peak > 0.5
    return float(np.median(sr / lag[voiced])) if voiced.any() else float("nan")


def prosody_stats(x: np.ndarray, sr: int = SAMPLE_RATE) -> dict[str, float]:
    """Duration (s), RMS level (dBFS) and median F0 (Hz) of one waveform."""
    rms = float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))
    return {"duration_s": len(x) / sr, "rms_db": 20 * np.log10(rms + 1e-12), "f0_hz": median_f0(x, sr)}
