"""Emotion over time (issue 18): voice activity on real Emo-DB speech with silences between the clips,
windows of the model's clip length, merged segments, streams in small chunks, `analyze` on the CLI.

The recordings are built from real Emo-DB clips (2 s each) separated by silences (low noise), 15 to
40 s long; the model is test_bundle's real tiny run (logmel + fcn, 3 labels)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from parrot_ser.audio import load_audio
from parrot_ser.cli.main import app
from parrot_ser.errors import ConfigError
from parrot_ser.inference import load_model
from parrot_ser.inference.timeline import TimelineAnalyzer, analyze_file
from parrot_ser.inference.vad import FRAME_SECONDS
from test_bundle import build_run

runner = CliRunner()
CLIPS = ["03a01Wa", "08a01Na", "03a04Ta", "03a01Fa", "09a05Wb", "11a02Nc"]


@pytest.fixture(scope="module")
def model(tmp_path_factory, emodb_root):
    return load_model(build_run(str(tmp_path_factory.getbasetemp() / "h7_run"), str(emodb_root))[1], quiet=True)


@pytest.fixture(scope="module")
def recording(tmp_path_factory, emodb_root):
    """(path, [(start, end) of each clip]): silences of 1.0-2.5 s (noise at -80 dBFS) between clips."""
    rng = np.random.default_rng(0)
    parts, truth, t = [], [], 0
    for i, name in enumerate(CLIPS):
        gap = np.float32(1e-4) * rng.standard_normal(int((1.0 + 0.3 * i) * 16000)).astype(np.float32)
        clip = load_audio(emodb_root / "wav" / f"{name}.wav", 16000, warn=False)
        parts += [gap, clip]
        truth.append(((t + len(gap)) / 16000, (t + len(gap) + len(clip)) / 16000))
        t += len(gap) + len(clip)
    parts.append(np.zeros(16000, np.float32))
    path = tmp_path_factory.mktemp("tl") / "speech_and_silence.wav"
    sf.write(path, np.concatenate(parts), 16000, subtype="PCM_16")
    return path, truth


@pytest.mark.parametrize("vad", ["silero", "energy"])
def test_speech_regions_where_the_clips_are_and_none_in_the_silences(model, recording, vad):
    path, truth = recording
    tl = analyze_file(model, path, vad=vad)
    assert len(tl.regions) == len(truth), tl.regions
    for (s, e), (ts, te) in zip(tl.regions, truth):
        # Emo-DB clips begin and end with a little silence of their own; the VAD lags a few 32 ms frames
        assert ts - 0.2 <= s < ts + 0.6 and te - 0.6 < e <= te + 0.2, ((s, e), (ts, te))
    # every window and segment lies inside a speech region: silence is never scored
    for w in tl.windows + tl.segments:
        assert any(s - 1e-6 <= w.start and w.end <= e + 1e-6 for s, e in tl.regions)
    assert abs(tl.duration - sf.info(str(path)).duration) < 1e-3


def test_windows_follow_the_bundles_clip_length_and_segments_merge(model, recording):
    assert model.clip_seconds["median"] == pytest.approx(2.0, abs=0.01)  # recorded at export
    path, _ = recording
    tl = analyze_file(model, path, vad="silero", window=1.0, hop=0.5)
    assert tl.settings["window"] == 1.0
    # full 1 s windows every 0.5 s; each region's last window is its rest (0.5-1.5 s, never a sliver)
    # or the whole region when that is under 1.5 s
    for (s, e) in tl.regions:
        ws = [w for w in tl.windows if s - 1e-6 <= w.start < e]
        assert ws[-1].end == pytest.approx(e, abs=1e-6)
        assert all(w.end - w.start == pytest.approx(1.0, abs=1e-6) for w in ws[:-1])
        assert np.allclose(np.diff([w.start for w in ws]), 0.5)
        last = ws[-1].end - ws[-1].start
        assert 0.5 - 1e-6 <= last <= 1.5 + 1e-6 or (len(ws) == 1 and last == pytest.approx(e - s, abs=1e-6))
    # segments tile the windows of each region: consecutive, one label each, label changes between
    for a, b in zip(tl.segments, tl.segments[1:]):
        assert a.end <= b.start + 1e-9
        if abs(a.end - b.start) < 1e-9:
            assert a.label != b.label
    assert sum(s.n_windows for s in tl.segments) == len(tl.windows)
    default = analyze_file(model, path, vad="silero")
    assert default.settings["window"] == 2.0 and default.settings["hop"] == 2.0


def test_a_stream_in_small_chunks_gives_the_files_segments(model, recording):
    path, _ = recording
    whole = analyze_file(model, path, vad="silero")
    audio = load_audio(path, 16000, warn=False)
    an = TimelineAnalyzer(model, vad="silero", eager=True)
    rng = np.random.default_rng(1)
    got, i = [], 0
    while i < len(audio):
        n = int(rng.integers(100, 4000))  # 6-250 ms pieces, not aligned to VAD frames
        got += an.feed(audio[i:i + n])
        i += n
    before_end = len(got)
    got += an.finish()
    # segments come out while audio still arrives: only the last region's can wait for the end
    assert before_end >= len(whole.segments) - 1 and before_end > 0
    assert len(got) == len(whole.segments)
    for a, b in zip(got, whole.segments):
        assert a.label == b.label
        assert abs(a.start - b.start) <= FRAME_SECONDS and abs(a.end - b.end) <= FRAME_SECONDS


def test_python_api_waveform_and_path_agree(model, recording):
    path, _ = recording
    x, sr = sf.read(str(path), dtype="float32")
    a, b = model.analyze(path), model.analyze(x, sample_rate=sr)
    assert [(s.label, round(s.start, 2)) for s in a.segments] == [(s.label, round(s.start, 2)) for s in b.segments]
    with pytest.raises(ConfigError, match="sample_rate"):
        model.analyze(x)


def test_silero_block_export_gives_the_per_frame_exports_probabilities(recording):
    """The speed-up (one ONNX call per block of frames) changes no probability, however the audio
    is chunked: a file's 10 s blocks and a stream's 3-frame chunks give the per-frame values."""
    from parrot_ser.inference.vad import FRAME, SileroVAD

    per_frame, block = SileroVAD(sequence=False), SileroVAD()
    assert block.sequence, "silero-vad >= 6 ships silero_vad_16k_sequence.onnx"
    audio = load_audio(recording[0], 16000, warn=False)
    frames = audio[:len(audio) // FRAME * FRAME].reshape(-1, FRAME)
    ref = per_frame.frame_probs(frames)
    assert ref.max() > 0.9 and ref.min() < 0.1  # speech and silence both present
    for step in (len(frames), 3, 1):
        block.reset()
        got = np.concatenate([block.frame_probs(frames[i:i + step]) for i in range(0, len(frames), step)])
        np.testing.assert_allclose(got, ref, atol=1e-6)


def test_missing_vad_extra_is_one_line_naming_both(monkeypatch):
    import importlib.util

    from parrot_ser.inference import vad

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "silero_vad" else real(name, *a))
    with pytest.raises(ConfigError) as e:
        vad.make_vad("silero")
    msg = str(e.value)
    assert "\n" not in msg and "parrot-ser[vad]" in msg and "--vad energy" in msg


def test_cli_analyze_prints_writes_and_streams(model, recording, tmp_path):
    path, truth = recording
    bundle = model.bundle_root
    res = runner.invoke(app, ["analyze", str(bundle), str(path)])
    assert res.exit_code == 0, res.output
    assert f"{len(truth)} speech regions" in res.output and "window(s)" in res.output
    res = runner.invoke(app, ["analyze", str(bundle), str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "o" / f"{path.stem}.timeline.json").read_text())
    assert doc["kind"] == "timeline" and len(doc["recordings"][0]["regions"]) == len(truth)
    csv_text = (tmp_path / "o" / f"{path.stem}.timeline.csv").read_text()
    assert csv_text.count(",segment,") == len(doc["recordings"][0]["segments"])
    png = (tmp_path / "o" / f"{path.stem}.timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    # --stream: the same file as a WAV stream on stdin, then as raw 16-bit PCM at 8 kHz
    res = runner.invoke(app, ["analyze", str(bundle), "--stream"], input=path.read_bytes())
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    file_segs = doc["recordings"][0]["segments"]
    assert [(x["label"], x["start"]) for x in lines] == [(x["label"], x["start"]) for x in file_segs]
    x, _ = sf.read(str(path), dtype="float32")
    import soxr

    pcm = (np.clip(soxr.resample(x, 16000, 8000), -1, 1) * 32767).astype("<i2").tobytes()
    res = runner.invoke(app, ["analyze", str(bundle), "--stream", "--rate", "8000", "--format", "s16le"],
                        input=pcm)
    assert res.exit_code == 0, res.output
    lines8 = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert len(lines8) >= len(truth) - 1  # telephone-band audio: the same clips found


def test_cli_analyze_bad_input_is_one_line(model, tmp_path):
    bundle = model.bundle_root
    res = runner.invoke(app, ["analyze", str(bundle), "--stream"], input=b"hello, not audio at all")
    assert res.exit_code == 2 and "not a WAV stream" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["analyze", str(bundle)])
    assert res.exit_code == 2 and "--stream" in res.output
    (tmp_path / "t.wav").write_bytes(b"RIFF....WAVEjunk")
    res = runner.invoke(app, ["analyze", str(bundle), str(tmp_path / "t.wav")])
    assert res.exit_code == 1 and "t.wav" in res.output


def test_predict_cuts_long_files_at_the_models_clip_length(model, recording):
    path, _ = recording
    p = model.predict(path)[0]
    assert len(p.windows) > 5
    assert {round(w.end - w.start, 3) for w in p.windows} == {2.0}
    starts = [w.start for w in p.windows[:-1]]
    assert np.allclose(np.diff(starts), 2.0)  # hop = window
    assert model.predict(load_audio(path, 16000, warn=False), sample_rate=16000)[0].label == p.label


def test_predict_plain_output_says_the_file_was_cut_and_how_labels_differ(model, recording):
    path, _ = recording
    res = runner.invoke(app, ["predict", str(model.bundle_root), str(path)])
    assert res.exit_code == 0, res.output
    p = model.predict(path)[0]
    counts = {}
    for w in p.windows:
        counts[w.label] = counts.get(w.label, 0) + 1
    assert f"cut into {len(p.windows)} windows of 2.0 s" in res.output
    assert all(f"{k} {v}" in res.output for k, v in counts.items())


def test_smoothing_averages_neighbouring_windows_inside_a_region(model, recording):
    path, _ = recording
    raw = analyze_file(model, path, vad="silero", window=1.0, hop=0.5)
    smooth = analyze_file(model, path, vad="silero", window=1.0, hop=0.5, smooth=3)
    assert [(w.start, w.end) for w in raw.windows] == [(w.start, w.end) for w in smooth.windows]
    by_region: dict[int, list[int]] = {}
    for i, w in enumerate(raw.windows):
        by_region.setdefault(w.region, []).append(i)
    checked = 0
    for idx in by_region.values():
        for j, i in enumerate(idx):
            near = idx[max(0, j - 1):j + 2]  # never across a silence
            for lab in model.labels:
                want = np.mean([raw.windows[k].probabilities[lab] for k in near])
                assert smooth.windows[i].probabilities[lab] == pytest.approx(want, abs=1e-9)
            checked += 1
    assert checked == len(raw.windows) and len(smooth.segments) <= len(raw.segments)
