"""Issue 12, audio: hostile and damaged headers, streamed FLAC, unreadable files, folder walking.
Every file is a tiny synthetic one written in tmp_path."""

from __future__ import annotations

import builtins
import json
import os
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from parrot_ser import audio
from parrot_ser.audio import AUDIO_SUFFIXES, decode_with_warnings, load_audio, load_with_warnings, read_info
from parrot_ser.cli.main import app
from parrot_ser.corpora import scan_corpus
from parrot_ser.corpora.scanning import AUDIO_EXTS
from parrot_ser.errors import AudioRateError, AudioTooLongError, AudioUnreadableError

runner = CliRunner()


def _tone(path: Path, n: int = 8000, sr: int = 16000, fmt: str | None = None) -> Path:
    x = (0.3 * np.sin(np.arange(n) * 2 * np.pi * 220 / sr)).astype(np.float32)
    sf.write(path, x, sr, subtype="PCM_16", format=fmt)
    return path


def _patch_wav_rate(path: Path, rate: int) -> Path:
    b = bytearray(path.read_bytes())
    b[24:28] = struct.pack("<I", rate)
    b[28:32] = struct.pack("<I", (rate * 2) % 2**32)  # byte rate, 16-bit mono
    path.write_bytes(bytes(b))
    return path


def _patch_flac_streaminfo(path: Path, *, total: int | None = None, rate: int | None = None) -> Path:
    """STREAMINFO starts at byte 8: 10 bytes of block/frame sizes, then 20 bits sample rate, 3 bits
    channels-1, 5 bits bits-per-sample-1, 36 bits total samples, 16 bytes MD5 (0 = unknown)."""
    b = bytearray(path.read_bytes())
    v = int.from_bytes(b[18:26], "big")
    if total is not None:
        v = (v & ~((1 << 36) - 1)) | total
        b[26:42] = bytes(16)
    if rate is not None:
        v = (v & ((1 << 44) - 1)) | (rate << 44)
    b[18:26] = v.to_bytes(8, "big")
    path.write_bytes(bytes(b))
    return path


def test_wav_header_announcing_more_data_warns_with_claimed_vs_read(tmp_path):
    p = _tone(tmp_path / "trunc.wav")
    b = bytearray(p.read_bytes())
    ds = b.find(b"data")
    b[ds + 4:ds + 8] = struct.pack("<I", 16000 * 2 * 7200)  # "2 h" of 16-bit mono
    p.write_bytes(bytes(b))
    x, texts = load_with_warnings(p)
    assert len(x) == 8000  # what is there is decoded
    claim = [t for t in texts if "header announces" in t]
    assert len(claim) == 1 and str(p) in claim[0] and "7200.00 s" in claim[0] and "0.50 s" in claim[0]
    _, up = decode_with_warnings(p.read_bytes(), name="up.wav")
    assert any("up.wav: header announces" in t for t in up)
    # an intact file gives no such warning
    assert not load_with_warnings(_tone(tmp_path / "ok.wav"))[1]


def test_streamed_flac_with_unknown_length_is_read(tmp_path):
    ref = _tone(tmp_path / "ref.flac", n=12345)
    p = _patch_flac_streaminfo(_tone(tmp_path / "stream.flac", n=12345), total=0)
    assert sf.info(str(p)).frames == 2**63 - 1  # libsndfile: "unknown"
    assert read_info(p).frames == 12345
    np.testing.assert_array_equal(load_audio(p), load_audio(ref))


@pytest.mark.parametrize("rate", [1, 2**31 - 1])
def test_implausible_wav_rates_are_refused_naming_the_file(tmp_path, rate):
    p = _patch_wav_rate(_tone(tmp_path / f"r{rate}.wav"), rate)
    for fn in (read_info, load_audio):
        with pytest.raises(AudioRateError) as ei:
            fn(p)
        assert str(p) in str(ei.value) and f"{rate} Hz" in str(ei.value) and "4000..384000" in str(ei.value)
    with pytest.raises(AudioRateError, match="^up.wav: "):
        decode_with_warnings(p.read_bytes(), name="up.wav")


def test_flac_at_655350_hz_is_refused(tmp_path):
    p = _patch_flac_streaminfo(_tone(tmp_path / "hi.flac"), rate=655350)
    with pytest.raises(AudioRateError, match="655350 Hz"):
        load_audio(p)


def test_decoding_memory_is_bounded_by_the_output_not_the_channels(tmp_path):
    # 20 s of 8-channel 192 kHz silence: 123 MB decoded at once, a few KB as FLAC, 1.3 MB as output
    p = tmp_path / "wide.flac"
    with sf.SoundFile(p, "w", 192000, 8, subtype="PCM_16") as f:
        block = np.zeros((192000, 8), dtype=np.int16)
        for _ in range(20):
            f.write(block)
    assert p.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        x, texts = load_with_warnings(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(x) == 20 * 16000 and any("digital silence" in t for t in texts)
    assert peak < 30e6, peak  # output (1.3 MB) + blocks, not 123 MB


def test_decoding_stops_past_the_duration_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(audio, "MAX_DECODE_SECONDS", 0.2)
    p = _patch_flac_streaminfo(_tone(tmp_path / "s.flac", n=16000), total=0)  # length unknown up front
    with pytest.raises(AudioTooLongError, match=r"s\.flac: too long"):
        load_audio(p)
    with pytest.raises(AudioTooLongError):
        read_info(_tone(tmp_path / "long.wav", n=16000))
    monkeypatch.undo()
    # a caller (the HTTP service) can lower the cap per call
    with pytest.raises(AudioTooLongError, match="more than 0.5 s"):
        decode_with_warnings(_tone(tmp_path / "one_s.wav", n=16000).read_bytes(), max_seconds=0.5)


def _lock(path: Path, monkeypatch) -> None:
    """No read permission. Root ignores file modes, so there the open() is made to fail the same way."""
    path.chmod(0)
    if os.geteuid() == 0:
        real_open = builtins.open

        def deny(file, *a, **k):
            if str(file) == str(path):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *a, **k)

        monkeypatch.setattr(builtins, "open", deny)


def test_unreadable_file_is_a_problem_and_the_others_go_on(tmp_path, monkeypatch):
    root = tmp_path / "corpus"
    for lab in ("angry", "sad"):
        for k in range(2):
            _tone((root / lab).mkdir(parents=True, exist_ok=True) or root / lab / f"s{k}_{lab}.wav")
    locked = root / "sad" / "s1_sad.wav"
    _lock(locked, monkeypatch)
    with pytest.raises(AudioUnreadableError, match="cannot be read.*Permission denied"):
        load_audio(locked)
    # inspect --check-audio
    r = runner.invoke(app, ["corpus", "inspect", str(root), "--corpus", "folders", "--check-audio", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert "s1_sad.wav" in json.dumps(doc) and "cannot be read" in json.dumps(doc)
    # extract: the three others are encoded, the locked one is listed
    r = runner.invoke(app, ["extract", str(root), "--corpus", "folders", "-e", "logmel", "--out",
                            str(tmp_path / "feat"), "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)["encoders"]["logmel"]
    assert rep["n_ok"] == 3 and rep["n_skipped"] == 1 and "cannot be read" in rep["skipped"][0]["error"]


def test_predict_names_a_folder_called_like_a_wav(tmp_path):
    from parrot_ser.inference.inputs import collect_inputs

    d = tmp_path / "x.wav"
    d.mkdir()
    items, problems = collect_inputs([d])
    assert not items and len(problems) == 1
    assert str(d) in problems[0].error and "is a folder, not an audio file" in problems[0].error


def test_folders_corpus_reads_predicts_suffixes_and_reports_the_rest(tmp_path):
    assert set(AUDIO_EXTS) == AUDIO_SUFFIXES  # one list
    root = tmp_path / "c"
    (root / "angry").mkdir(parents=True)
    (root / "sad").mkdir()
    _tone(root / "angry" / "a1_x.wav")
    sf.write(root / "sad" / "a1_y.opus", np.zeros(4800, np.float32), 48000, format="OGG", subtype="OPUS")
    _m4a(root / "sad" / "a3_y.m4a", seconds=0.3)  # read through PyAV (the m4a extra)
    (root / "sad" / "a2_y.mid").write_bytes(b"MThd\x00\x00\x00\x06")  # MIDI: notes, not audio
    (root / "sad" / ".DS_Store").write_bytes(b"\x00")
    man = scan_corpus("folders", root)
    assert sorted(u.path for u in man.utterances) == ["angry/a1_x.wav", "sad/a1_y.opus", "sad/a3_y.m4a"]
    assert [p.path for p in man.problems] == ["sad/a2_y.mid"]
    assert "not an audio file type" in man.problems[0].problem


def test_symlink_loop_is_walked_once(tmp_path):
    root = tmp_path / "c"
    (root / "angry").mkdir(parents=True)
    _tone(root / "angry" / "a1_x.wav")
    (root / "angry" / "loop").symlink_to(root, target_is_directory=True)
    man = scan_corpus("folders", root)
    assert len(man.utterances) == 1 and len(man.problems) == 0
    from parrot_ser.inference.inputs import collect_inputs

    items, _ = collect_inputs([root])
    assert len(items) == 1


def test_predict_goes_on_past_unreadable_and_hostile_files(tmp_path, monkeypatch, emodb_root, tmp_path_factory):
    from test_bundle import build_run  # the session's cached real run + bundle

    bundle = build_run(str(tmp_path_factory.getbasetemp() / "h7_run"), str(emodb_root))[1]
    good = tmp_path / "good.wav"
    good.write_bytes((emodb_root / "wav" / "03a01Wa.wav").read_bytes())
    locked = tmp_path / "locked.wav"
    locked.write_bytes(good.read_bytes())
    one_hz = _patch_wav_rate(_tone(tmp_path / "one_hz.wav"), 1)
    folder = tmp_path / "x.wav"
    folder.mkdir()
    _lock(locked, monkeypatch)
    r = runner.invoke(app, ["predict", str(bundle), str(locked), str(one_hz), str(folder), str(good), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [p["path"] for p in doc["predictions"]] == [str(good)]
    errors = {e["path"]: e["error"] for e in doc["errors"]}
    assert "cannot be read" in errors[str(locked)]
    assert "implausible sample rate (1 Hz" in errors[str(one_hz)]
    assert errors[str(folder)].startswith(f"{folder}: is a folder, not an audio file")


def test_unreadable_subfolder_is_a_problem_not_silently_skipped(tmp_path, monkeypatch):
    root = tmp_path / "c"
    for lab in ("angry", "sad"):
        (root / lab).mkdir(parents=True)
        _tone(root / lab / f"a1_{lab}.wav")
    locked = root / "sad"
    locked.chmod(0)
    real_scandir = os.scandir

    def deny(path="."):  # root ignores folder modes: make the listing fail as it would for a user
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", deny)
    try:
        man = scan_corpus("folders", root)
        assert len(man.utterances) == 1
        assert [p.path for p in man.problems] == ["sad"] and "Permission denied" in man.problems[0].problem
        from parrot_ser.inference.inputs import collect_inputs

        items, problems = collect_inputs([root])
        assert len(items) == 1 and len(problems) == 1 and str(locked) in problems[0].error
    finally:
        locked.chmod(0o755)


def _m4a(path, seconds: float = 1.0, sr: int = 44100, freq: float = 440.0) -> None:
    """A real AAC-in-MP4 file, encoded with PyAV (stereo, 44.1 kHz)."""
    import av

    t = np.arange(int(seconds * sr)) / sr
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    data = np.stack([x, x])
    with av.open(str(path), "w", format="ipod") as c:
        st = c.add_stream("aac", rate=sr, layout="stereo")
        for k in range(0, data.shape[1], 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, k:k + 1024]), format="fltp", layout="stereo")
            fr.sample_rate = sr
            for pkt in st.encode(fr):
                c.mux(pkt)
        for pkt in st.encode(None):
            c.mux(pkt)


def test_m4a_is_read_through_pyav(tmp_path):
    """Issue 20, item 15: an .m4a was "not an audio file". With the m4a extra (PyAV: FFmpeg's
    decoders in a wheel, no system library) it is read like any file: header info, decode, upload
    bytes, streaming; mono 16 kHz, the tone where it was."""
    from parrot_ser.audio import AUDIO_SUFFIXES, decode_audio, load_audio, read_info, stream_audio

    path = tmp_path / "voice.m4a"
    _m4a(path)
    info = read_info(path)
    assert info.sample_rate == 44100 and info.channels == 2 and abs(info.duration - 1.0) < 0.05
    assert info.subtype == "AAC" and ".m4a" in AUDIO_SUFFIXES
    x = load_audio(path)
    assert x.dtype == np.float32 and abs(len(x) - 16000) < 1600  # AAC adds up to ~50 ms of priming
    spectrum = np.abs(np.fft.rfft(x[2000:14000]))
    assert abs(np.argmax(spectrum) * 16000 / 12000 - 440) < 5
    np.testing.assert_allclose(decode_audio(path.read_bytes(), name="upload.m4a"), x, atol=1e-6)
    np.testing.assert_allclose(np.concatenate(list(stream_audio(path, block_seconds=0.25))), x, atol=1e-5)


def test_unread_audio_without_pyav_says_so_and_lists_the_formats_read(tmp_path, monkeypatch):
    """Without PyAV, an .m4a (or WebM, ADTS AAC) is "audio in a format not read here" with the
    formats read, the extra and a conversion line, not "not an audio file"."""
    import parrot_ser.audio as audio
    from parrot_ser.audio import FORMATS_READ, decode_audio, load_audio
    from parrot_ser.errors import AudioError, UnsupportedAudioError

    monkeypatch.setattr(audio, "_pyav", lambda: None)
    path = tmp_path / "voice.m4a"
    _m4a(path)
    with pytest.raises(UnsupportedAudioError) as e:
        load_audio(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: audio in a format not read here (MP4/M4A container")
    assert FORMATS_READ in msg and "WAV, FLAC" in msg and "parrot-ser[m4a]" in msg and "ffmpeg -i" in msg
    assert isinstance(e.value, AudioError)  # skipped and listed like any bad file
    with pytest.raises(UnsupportedAudioError, match="Matroska/WebM"):
        decode_audio(b"\x1aE\xdf\xa3" + bytes(500), name="clip.webm")
    with pytest.raises(UnsupportedAudioError, match=r"AAC \(ADTS\)"):
        decode_audio(b"\xff\xf1\x50\x80" + bytes(500), name="clip.aac")
    with pytest.raises(AudioError, match=r"not an audio file \(no signature of a format read here \(WAV"):
        decode_audio(b"plain text, not audio" * 20, name="notes.wav")
