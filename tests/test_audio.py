"""parrot_ser.audio: typed errors for each bad input, exact mono 16 kHz output for each format."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from parrot_ser import audio
from parrot_ser.audio import (
    AudioWarning,
    audio_warnings,
    decode_audio,
    decode_with_warnings,
    load_audio,
    load_with_warnings,
    read_info,
    resample,
)
from parrot_ser.errors import (
    AudioCorruptError,
    AudioMissingError,
    EmptyAudioError,
    NonFiniteAudioError,
    NotAudioError,
)


def _peak_freq(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


def _amplitude(x: np.ndarray) -> float:
    core = x[len(x) // 10: -len(x) // 10]  # skip resampler edge ramps
    return float(np.sqrt(2) * np.sqrt(np.mean(core.astype(np.float64) ** 2)))


# --- formats -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "sr,channels,subtype,suffix",
    [
        (16000, 1, "PCM_16", ".wav"),
        (48000, 1, "PCM_16", ".wav"),
        (22050, 1, "PCM_16", ".wav"),
        (16000, 2, "PCM_16", ".wav"),
        (16000, 1, "PCM_U8", ".wav"),
        (44100, 1, "PCM_24", ".wav"),
        (16000, 1, "FLOAT", ".wav"),
        (24414, 1, "PCM_16", ".flac"),
        (48000, 2, "VORBIS", ".ogg"),
    ],
)
def test_formats_give_mono_16k_with_tone_preserved(tmp_path, tone_writer, sr, channels, subtype, suffix):
    p = tone_writer(tmp_path / f"t{suffix}", seconds=0.5, sr=sr, channels=channels, subtype=subtype,
                    freq=440.0, amp=0.3)
    x = load_audio(p)
    assert x.dtype == np.float32 and x.ndim == 1
    assert len(x) == round(int(0.5 * sr) * 16000 / sr)
    assert abs(_peak_freq(x, 16000) - 440.0) < 4.0
    tol = 0.03 if subtype in ("PCM_U8", "VORBIS") else 0.005
    assert abs(_amplitude(x) - 0.3) < tol


def test_stereo_channels_are_averaged(tmp_path):
    t = np.arange(8000) / 16000
    tone = np.sin(2 * np.pi * 300 * t)
    sf.write(tmp_path / "s.wav", np.stack([0.4 * tone, 0.2 * tone], axis=1).astype(np.float32), 16000,
             subtype="FLOAT")
    x = load_audio(tmp_path / "s.wav")
    np.testing.assert_allclose(x, (0.3 * tone).astype(np.float32), atol=1e-6)


def test_read_info_reads_header_only(tmp_path, tone_writer, monkeypatch):
    p = tone_writer(tmp_path / "a.wav", seconds=0.5, sr=22050, channels=2, subtype="PCM_24")

    def boom(*a, **k):  # read_info must never decode samples
        raise AssertionError("sf.read called")

    monkeypatch.setattr(audio.sf, "read", boom)
    info = read_info(p)
    assert (info.sample_rate, info.channels, info.frames, info.format, info.subtype) == (
        22050, 2, 11025, "WAV", "PCM_24")
    assert info.duration == pytest.approx(0.5)
    assert info.path == str(p)


def test_resample_length_and_identity():
    x = np.random.default_rng(0).standard_normal(44100).astype(np.float32)
    assert len(resample(x, 22050, 16000)) == 32000
    assert resample(x, 16000, 16000) is not None and np.array_equal(resample(x, 16000, 16000), x)


def test_decode_audio_matches_load_audio(tmp_path, tone_writer):
    p = tone_writer(tmp_path / "a.flac", sr=48000, subtype="PCM_16")
    np.testing.assert_array_equal(decode_audio(p.read_bytes(), name="up.flac"), load_audio(p))


# --- errors --------------------------------------------------------------------------------------

def _bad_files(tmp_path: Path, tone_writer) -> dict[str, tuple[Path, type]]:
    good = tone_writer(tmp_path / "good.wav", seconds=0.5).read_bytes()
    (tmp_path / "text.wav").write_text("just some text, renamed to .wav\n")
    (tmp_path / "trunc.wav").write_bytes(good[:20])  # header cut inside the fmt chunk
    (tmp_path / "avi.wav").write_bytes(b"RIFF\x10\x00\x00\x00AVI LIST" + b"\x00" * 32)
    (tmp_path / "zero.wav").write_bytes(b"")
    sf.write(tmp_path / "noframes.wav", np.zeros(0, np.float32), 16000)
    nan = np.full(800, 0.1, np.float32)
    nan[10] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    inf = np.full(800, 0.1, np.float32)
    inf[3] = np.inf
    sf.write(tmp_path / "inf.wav", inf, 16000, subtype="DOUBLE")
    return {
        "missing": (tmp_path / "nope.wav", AudioMissingError),
        "text": (tmp_path / "text.wav", NotAudioError),
        "avi": (tmp_path / "avi.wav", NotAudioError),
        "trunc": (tmp_path / "trunc.wav", AudioCorruptError),
        "zero": (tmp_path / "zero.wav", EmptyAudioError),
        "noframes": (tmp_path / "noframes.wav", EmptyAudioError),
        "nan": (tmp_path / "nan.wav", NonFiniteAudioError),
        "inf": (tmp_path / "inf.wav", NonFiniteAudioError),
    }


def test_each_bad_input_gives_its_error_naming_the_file(tmp_path, tone_writer):
    for name, (path, exc) in _bad_files(tmp_path, tone_writer).items():
        with pytest.raises(exc) as ei:
            load_audio(path)
        assert str(path) in str(ei.value), name
        assert "\n" not in str(ei.value)
        if name not in ("missing", "nan", "inf"):  # bytes-level problems: same for uploads
            with pytest.raises(exc) as ei:
                decode_audio(path.read_bytes(), name="upload.wav")
            assert str(ei.value).startswith("upload.wav: ")


def test_read_info_errors(tmp_path, tone_writer):
    bad = _bad_files(tmp_path, tone_writer)
    for name in ("missing", "text", "trunc", "zero", "noframes"):
        path, exc = bad[name]
        with pytest.raises(exc):
            read_info(path)
    assert read_info(bad["noframes"][0], allow_empty=True).frames == 0
    with pytest.raises(AudioMissingError):
        load_audio(tmp_path)  # a directory is not a file


def test_corrupt_message_does_not_repeat_path(tmp_path, tone_writer):
    p = _bad_files(tmp_path, tone_writer)["trunc"][0]
    with pytest.raises(AudioCorruptError) as ei:
        load_audio(p)
    assert str(ei.value).count(str(p)) == 1 and "WAV signature" in str(ei.value)


# --- warnings ------------------------------------------------------------------------------------

def test_audio_warnings_kinds():
    sr = 1000
    ok = 0.3 * np.sin(np.linspace(0, 200, sr))
    assert audio_warnings(ok, sr, "ok.wav") == []
    clipped = np.clip(6 * ok, -1, 1)  # 1.8x full scale
    assert any("clipping" in w and "c.wav" in w for w in audio_warnings(clipped, sr, "c.wav"))
    assert any("silence" in w for w in audio_warnings(np.zeros(sr), sr, "s.wav"))
    assert any("very short" in w for w in audio_warnings(ok[:200], sr, "x.wav"))
    assert any("very long" in w for w in audio_warnings(np.tile(ok, 61), sr, "x.wav"))
    # a peak-normalised file touches full scale only a few times: no clipping warning
    one_peak = ok.copy()
    one_peak[5] = 1.0
    assert audio_warnings(one_peak, sr, "p.wav") == []


def test_load_audio_issues_audio_warning(tmp_path, tone_writer):
    p = tone_writer(tmp_path / "short.wav", seconds=0.1)
    with pytest.warns(AudioWarning, match="short.wav: very short"):
        load_audio(p)
    silent = tone_writer(tmp_path / "silent.wav", seconds=0.5, amp=0.0)
    with pytest.warns(AudioWarning, match="digital silence"):
        load_audio(silent)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(silent, warn=False)  # no warning raised as an error


def test_with_warnings_variants_return_texts_from_the_raw_signal(tmp_path):
    t = np.arange(16000) / 16000
    loud = np.clip(2.0 * np.sin(2 * np.pi * 200 * t), -1, 1).astype(np.float32)
    p = tmp_path / "loud.wav"
    sf.write(p, np.stack([loud, loud], axis=1), 16000, subtype="FLOAT")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the *_with_warnings variants never call warnings.warn
        x, texts = load_with_warnings(p, 8000)
        y, texts2 = decode_with_warnings(p.read_bytes(), 8000, name="up.wav")
    assert len(x) == 8000 and np.array_equal(x, y)
    assert len(texts) == 1 and texts[0].startswith(f"{p}: clipping")
    assert texts2[0].startswith("up.wav: clipping")
