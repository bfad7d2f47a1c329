"""The real pretrained encoders whose weights ship in PyPI wheels (resemblyzer, crepe-tiny/full),
checked against the packages themselves on the same waveform: resemblyzer's
``VoiceEncoder.embed_utterance`` and LSTM, torchcrepe's ``embed`` and pitch posteriors (torchcrepe
imported with a stand-in ``torchaudio``: it imports torchaudio only to resample, and no torchaudio
wheel loads with torch 2.13)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types

import numpy as np
import pytest
import torch

from parrot_ser import hear
from parrot_ser.encoders import build_encoder, get_spec
from parrot_ser.encoders.checkpoint import sha256_file
from parrot_ser.errors import CheckpointError, ConfigError
from parrot_ser.training.grid import grid_cells

pytest.importorskip("resemblyzer.voice_encoder", reason="dev extra: resemblyzer, librosa, webrtcvad-wheels")


def _wave(seconds: float, seed: int = 0, f0: float = 180.0) -> np.ndarray:
    """A voiced-like test signal: a harmonic tone with a vibrato and a little noise (CREPE needs a
    pitch, resemblyzer a spectrum)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / 16000
    w = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.05 + 0.002 * rng.standard_normal(t.size)
    return w.astype(np.float32)


@pytest.fixture(scope="module")
def resemblyzer_enc():
    return build_encoder("resemblyzer", layers="all", frame_stride=1)


@pytest.fixture(scope="module")
def crepe_tiny():
    return build_encoder("crepe-tiny", layers="all")


@pytest.fixture
def torchcrepe(monkeypatch):
    """torchcrepe imported with a stand-in torchaudio module (removed again after the test)."""
    stand_in = types.ModuleType("torchaudio")
    stand_in.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
    monkeypatch.setitem(sys.modules, "torchaudio", stand_in)
    for name in [m for m in sys.modules if m == "torchcrepe" or m.startswith("torchcrepe.")]:
        monkeypatch.delitem(sys.modules, name)
    import torchcrepe as tc

    return tc


def test_resemblyzer_matches_voice_encoder(resemblyzer_enc):
    from resemblyzer import VoiceEncoder, normalize_volume
    from resemblyzer.audio import wav_to_mel_spectrogram

    ve = VoiceEncoder("cpu", verbose=False)
    for seconds in (0.7, 2.3, 4.1):  # one partial (shorter than 1.6 s), several, several + padding
        w = _wave(seconds, seed=int(seconds * 10))
        # the encoder normalises the volume itself (preprocess_wav's first step), not the VAD trim
        ref_wave = normalize_volume(w, -30, increase_only=True)
        eu = resemblyzer_enc.encode([w], frames=True)[0]
        assert eu.pooled.shape == (4, 256)
        np.testing.assert_allclose(eu.pooled[3], ve.embed_utterance(ref_wave), atol=2e-6)
        mel = wav_to_mel_spectrogram(ref_wave)
        np.testing.assert_allclose(resemblyzer_enc.mel_spectrogram(ref_wave).numpy(), mel, rtol=1e-4,
                                   atol=1e-6 * mel.max())
        with torch.no_grad():
            last, _ = ve.lstm(torch.from_numpy(mel)[None])
        assert eu.frames.shape == (4, mel.shape[0], 256)  # frame_stride=1: every 10 ms state
        np.testing.assert_allclose(eu.frames[2], last[0].numpy(), atol=2e-5)
        np.testing.assert_allclose(eu.pooled[2], last[0].numpy().mean(0), atol=2e-5)


def test_crepe_tiny_matches_torchcrepe(crepe_tiny, torchcrepe):
    w = _wave(1.37, seed=3)
    eu = crepe_tiny.encode([w], frames=True)[0]
    x = torch.from_numpy(w)[None]
    with torch.no_grad():
        emb = torchcrepe.embed(x, 16000, hop_length=320, model="tiny")  # (1, T, 32, 8)
        n = emb.shape[1]
        assert eu.frames.shape == (2, n, 256) and n == 1 + len(w) // 320
        np.testing.assert_allclose(eu.frames[0], emb.reshape(n, -1).numpy(), atol=5e-5)
        # layer 1 is the pitch classifier's input: through torchcrepe's classifier it gives its posteriors
        windows = next(torchcrepe.preprocess(x, 16000, hop_length=320))
        probs = torchcrepe.infer(windows, model="tiny")
        ours = torch.sigmoid(crepe_tiny.model.classifier(torch.from_numpy(eu.frames[1])))
    np.testing.assert_allclose(ours.numpy(), probs.numpy(), atol=1e-5)
    np.testing.assert_allclose(eu.pooled, eu.frames.mean(1), rtol=1e-5, atol=1e-6)


def test_crepe_hop_and_padding_invariance(crepe_tiny):
    a, b = _wave(0.9, seed=1), _wave(2.2, seed=2, f0=240.0)
    both = crepe_tiny.encode([a, b], frames=True)
    for w, eu in zip((a, b), both):
        alone = crepe_tiny.encode([w], frames=True)[0]
        np.testing.assert_allclose(eu.frames, alone.frames, atol=1e-5)
    assert both[1].frames.shape[1] == 1 + len(b) // 320  # 20 ms hop by default
    slow = build_encoder("crepe-tiny", hop_ms=40, batch_windows=7)
    assert slow.encode([b])[0].pooled.shape == (1, 256)
    assert slow.identity.preprocessing["hop_ms"] == 40
    with pytest.raises(ConfigError, match="hop_ms"):
        build_encoder("crepe-tiny", hop_ms=5)


def test_resemblyzer_batch_independent(resemblyzer_enc):
    a, b = _wave(1.1, seed=4), _wave(2.9, seed=5)
    both = resemblyzer_enc.encode([a, b], frames=True)
    for w, eu in zip((a, b), both):
        alone = resemblyzer_enc.encode([w], frames=True)[0]
        np.testing.assert_allclose(eu.pooled, alone.pooled, atol=1e-6)
    strided = build_encoder("resemblyzer", layers="0,2")  # default frame_stride 2: 50 frames/s
    eu = strided.encode([b], frames=True)[0]
    np.testing.assert_allclose(eu.frames[1], both[1].frames[2][::2], atol=1e-5)


def test_identity_is_the_wheel_file_hash():
    import resemblyzer

    spec = importlib.util.find_spec("torchcrepe")
    tiny = build_encoder("crepe-tiny")
    path = f"{spec.submodule_search_locations[0]}/assets/tiny.pth"
    assert tiny.identity.checkpoint_sha256 == sha256_file(path)
    assert tiny.identity.checkpoint.startswith("torchcrepe==") and tiny.identity.layers == [1]
    res = build_encoder("resemblyzer", layers="last")
    assert res.identity.checkpoint_sha256 == sha256_file(f"{resemblyzer.__path__[0]}/pretrained.pt")
    assert res.identity.layers == [3]
    untrained = build_encoder("resemblyzer", random_init=True, seed=1)
    assert untrained.identity.checkpoint_sha256 is None and untrained.identity.random_init
    assert get_spec("resemblyzer").kind == "recurrent" and get_spec("crepe-full").kind == "convolutional"


def test_crepe_full_loads_its_weights():
    enc = build_encoder("crepe-full", layers="all")
    eu = enc.encode([_wave(0.1)], frames=True)[0]
    assert eu.frames.shape == (2, 6, 2048) and np.isfinite(eu.frames).all()


def test_missing_wheel_is_one_line_naming_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchcrepe" else real(name, *a))
    with pytest.raises(CheckpointError, match=r"crepe-tiny: .*'torchcrepe' wheel.*parrot-ser\[demo\]") as e:
        build_encoder("crepe-tiny")
    assert "\n" not in str(e.value)


def test_wrong_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, bad)
    with pytest.raises(CheckpointError, match="bad.pth: not a CREPE-tiny state dict"):
        build_encoder("crepe-tiny", checkpoint=str(bad))
    with pytest.raises(CheckpointError, match="bad.pth: not a resemblyzer GE2E state dict"):
        build_encoder("resemblyzer", checkpoint=str(bad))


def test_hetero_pairs_put_the_non_attention_encoder_first():
    kinds = {"whisper-base": "attention", "resemblyzer": "recurrent", "crepe-tiny": "convolutional",
             "logmel": "handcrafted"}
    cells = grid_cells(list(kinds), ["concat"], kinds, pairs="hetero")
    assert [c.encoders for c in cells] == [("resemblyzer", "whisper-base"), ("crepe-tiny", "whisper-base")]
    other = {c.encoders: c.pair_kind for c in grid_cells(list(kinds), ["concat"], kinds, pairs="all")}
    assert other[("resemblyzer", "crepe-tiny")] == "other" and other[("logmel", "whisper-base")] == "other"


def test_hear_timestamps():
    for name, step in (("resemblyzer", 20.0), ("crepe-tiny", 20.0)):
        model = hear.load_model(name)
        emb, ts = hear.get_timestamp_embeddings(torch.from_numpy(np.stack([_wave(1.0), _wave(1.0, 1)])), model)
        assert emb.shape[:2] == ts.shape and emb.shape[2] == model.timestamp_embedding_size
        np.testing.assert_allclose(ts[0].numpy(), step * np.arange(ts.shape[1]))
        scene = hear.get_scene_embeddings(torch.from_numpy(_wave(1.0))[None], model)
        assert scene.shape == (1, model.scene_embedding_size)


def test_store_train_export_predict_onnx(emodb_root, tmp_path):
    """Real Emo-DB clips through the whole path: store (frames + pooled of every layer), a pair trained
    on layer-weighted pooled features and one on layer-weighted frames, bundles, predict from audio,
    ONNX (CREPE's audio graph matches PyTorch; resemblyzer's absence is stated)."""
    pytest.importorskip("onnxruntime")
    import parrot_ser
    from parrot_ser.corpora import scan_corpus
    from parrot_ser.corpora.base import Manifest
    from parrot_ser.export import export_run
    from parrot_ser.features import extract_features, open_store
    from parrot_ser.inference.onnx_export import export_onnx
    from parrot_ser.training.config import TrainConfig
    from parrot_ser.training.run import run_cv

    man = scan_corpus("emodb", emodb_root)
    keep = [u for u in man.utterances if u.speaker in ("03", "10") and u.label in ("angry", "sad")]
    keep = Manifest(man.corpus, man.root, [u for s in ("03", "10") for u in [v for v in keep if v.speaker == s][:5]])
    for name in ("resemblyzer", "crepe-tiny"):
        extract_features(keep, build_encoder(name, layers="all"), tmp_path / "feat", frames=True, progress=False)
    store = open_store(tmp_path / "feat")
    res = store.get("resemblyzer")
    assert res.pooled_all().shape == (len(keep.utterances), 4, 256) and res.frames_all(0).shape[1:] == (4, 256)
    crepe_meta = store.get("crepe-tiny").meta
    assert crepe_meta["identity"]["checkpoint_sha256"] == build_encoder("crepe-tiny").identity.checkpoint_sha256
    run = tmp_path / "run"
    run_cv(tmp_path / "feat", ["resemblyzer", "crepe-tiny"], "concat",
           TrainConfig(epochs=2, patience=0, batch_size=4, layer="weighted"), [0], "speaker-kfold", run, n_folds=2)
    bundle = export_run(run, tmp_path / "bundle")
    model = parrot_ser.load_model(bundle, quiet=True)
    from parrot_ser.audio import load_audio

    wave = load_audio(emodb_root / keep.utterances[0].path, 16000)
    wave = wave[0] if isinstance(wave, tuple) else wave
    pred = model.predict(wave, sample_rate=16000)[0]
    assert set(pred.probabilities) == {"angry", "sad"}
    assert abs(sum(pred.probabilities.values()) - 1) < 1e-5
    # frame models take layer weighting too: parrot-token on every layer's frames, mixed with the
    # same learned weights as the pooled vectors; trained, exported and served from audio
    frun = tmp_path / "frames_run"
    run_cv(tmp_path / "feat", ["resemblyzer", "crepe-tiny"], "parrot-token",
           TrainConfig(epochs=2, patience=0, batch_size=4, layer="weighted", use_frames=True,
                       model={"token_source": "frames", "conv_channels": [4, 8]}),
           [0], "speaker-kfold", frun, n_folds=2)
    fmodel = parrot_ser.load_model(export_run(frun, tmp_path / "frames_bundle"), quiet=True)
    fpred = fmodel.predict(wave, sample_rate=16000)[0]
    assert abs(sum(fpred.probabilities.values()) - 1) < 1e-5
    # ONNX: an fcn head (conv heads are refused by a known head-export bug owned by issue 21)
    run_cv(tmp_path / "feat", ["crepe-tiny"], "fcn", TrainConfig(epochs=2, patience=0, batch_size=4, layer="weighted"),
           [0], "speaker-kfold", tmp_path / "fcn", n_folds=2)
    report = export_onnx(export_run(tmp_path / "fcn", tmp_path / "fcn_bundle"))
    assert set(report["files"]) == {"head.onnx", "model.onnx"}  # CREPE has an audio graph
    assert report["files"]["model.onnx"]["max_abs_diff_vs_torch"] < 1e-4
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "fcn_bundle" / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    fcn = parrot_ser.load_model(tmp_path / "fcn_bundle", quiet=True)
    ref = fcn.predict(wave[:20000], sample_rate=16000)[0]
    got = sess.run(None, {"audio": wave[None, :20000]})[0][0]
    np.testing.assert_allclose(got, [ref.probabilities[lab] for lab in fcn.labels], atol=1e-4)
    from parrot_ser.inference.onnx_export import not_exportable_reason

    assert "partial windows" in not_exportable_reason(build_encoder("resemblyzer"))
