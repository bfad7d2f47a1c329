"""Real pretrained weights end to end: OpenAI whisper-base from ../shared/models/whisper-base.

Through the public API and the CLI: identity (real, sha256 of the weight files), determinism, shapes
per layer, the clip window against the model's own 30 s forward, >30 s windowing, the same features
through `extract` and through an exported bundle, and a small end-to-end run that trains on real
features and predicts a held-out speaker. Bounded for CI: a 6-speaker Emo-DB subset (126 clips), an fcn head."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from parrot_ser.cli.main import app

WHISPER_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "whisper-base"
TRAIN_SPEAKERS = ("03", "08", "09", "10", "11", "12")  # 3 folds: 4 training speakers, 1 of them for early stopping
HELD_OUT = "13"
PER_CELL = 3  # utterances per (speaker, emotion)


@pytest.fixture(scope="module")
def whisper_dir() -> Path:
    if not (WHISPER_DIR / "model.safetensors").is_file():
        pytest.skip(f"real whisper-base weights not found at {WHISPER_DIR} (expected ../shared/models/whisper-base)")
    return WHISPER_DIR


@pytest.fixture(scope="module")
def enc(whisper_dir):
    from parrot_ser.encoders import build_encoder

    return build_encoder("whisper-base", checkpoint=str(whisper_dir), layers="all")


@pytest.fixture(scope="module")
def clips(emodb_root):
    from parrot_ser.audio import load_audio

    paths = sorted((emodb_root / "wav").glob("*.wav"))[:3]
    return [load_audio(p, 16000, warn=False) for p in paths]


def test_identity_is_real_with_the_weights_sha256(enc, whisper_dir):
    ident = enc.identity
    assert ident.random_init is False and ident.seed is None
    assert "WARNING" not in ident.preprocessing and "random_init_config" not in ident.preprocessing
    h = hashlib.sha256(b"model.safetensors")  # _weights_sha256: name + bytes of each weight file
    h.update((whisper_dir / "model.safetensors").read_bytes())
    assert ident.checkpoint_sha256 == h.hexdigest()
    assert ident.preprocessing["sha256_of"] == "weight files"
    assert ident.checkpoint == str(whisper_dir.resolve())
    assert ident.layers == list(range(7)) and ident.options == {"window": "clip"}
    assert ident.preprocessing["feature_extractor_source"] == "checkpoint"  # its preprocessor_config.json


def test_deterministic_and_shapes_per_layer(enc, clips, whisper_dir):
    from parrot_ser.encoders import build_encoder

    a = enc.encode(clips, frames=True)
    twice = enc.encode(clips, frames=True)  # run to run: bit for bit
    b = enc.encode(clips[::-1], frames=True)[::-1]  # other batch order: float-rounding close
    for x, x2, y, w in zip(a, twice, b, clips):
        assert x.pooled.shape == (7, 512) and x.frames.shape == (7, math.ceil(len(w) / 320), 512) == (7, 100, 512)
        np.testing.assert_array_equal(x.frames, x2.frames)
        np.testing.assert_allclose(x.frames, y.frames, atol=2e-5)
        np.testing.assert_allclose(x.pooled, x.frames.mean(1), rtol=1e-5, atol=1e-6)
    # real weights: the layers differ from each other and the utterances from each other
    assert np.abs(a[0].pooled[6] - a[0].pooled[3]).max() > 0.1
    assert np.abs(a[0].pooled - a[1].pooled).max() > 0.05
    again = build_encoder("whisper-base", checkpoint=str(whisper_dir), layers="2,6").encode(clips[:1])[0]
    assert again.pooled.shape == (2, 512)
    np.testing.assert_allclose(again.pooled, a[0].pooled[[2, 6]], atol=2e-5)  # batch of 1 vs 3


def test_clip_window_is_the_models_own_forward(enc, clips):
    """On a full 30 s input our truncated-position forward equals the HF forward bit for bit, and the
    30 s option reproduces the official padding path."""
    from parrot_ser.encoders import build_encoder

    mel = enc.fe(clips[:1], sampling_rate=16000, padding="max_length", return_tensors="pt")["input_features"]
    with torch.inference_mode():
        ref = enc.model(input_features=mel, output_hidden_states=True).hidden_states
    ours = enc._whisper_hidden(mel)
    assert len(ours) == len(ref) == 7
    for x, y in zip(ours, ref):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    official = build_encoder("whisper-base", checkpoint=str(WHISPER_DIR), layers="all", window="30s")
    assert official.identity.options == {"window": "30s"}
    r30 = official.encode(clips[:1], frames=True)[0]
    np.testing.assert_allclose(r30.frames, torch.stack([h[0, :100] for h in ref]).numpy(), atol=1e-5)
    rclip = enc.encode(clips[:1], frames=True)[0]
    # same model, different context: the embedding output agrees, deeper layers drift apart
    cos = [float(np.dot(p, q) / np.linalg.norm(p) / np.linalg.norm(q)) for p, q in zip(rclip.pooled, r30.pooled)]
    assert cos[0] > 0.999 and min(cos) > 0.8 and cos[-1] < 0.999, cos


def test_clips_longer_than_30_s_are_windowed(enc, clips):
    long = np.concatenate([clips[0]] * 16)[: int(16000 * 31.01)]  # 31.01 s: one full window + 1.01 s
    r = enc.encode([long], frames=True)[0]
    assert r.frames.shape == (7, math.ceil(len(long) / 320), 512)
    head = enc.encode([long[:30 * 16000]], frames=True)[0]
    np.testing.assert_allclose(r.frames[:, :1500], head.frames, atol=1e-5)  # windows are independent
    assert np.isfinite(enc.encode([long[:100]])[0].pooled).all()  # under one encoder frame: padded to 20 ms


def test_bad_window_option_is_one_line_error(emodb_root, whisper_dir, tmp_path):
    r = CliRunner().invoke(app, ["extract", str(emodb_root), "--corpus", "emodb", "-e", "whisper-base",
                                 "--checkpoint", f"whisper-base={whisper_dir}", "--option",
                                 "whisper-base:window=20s", "--out", str(tmp_path / "s")])
    assert r.exit_code == 2 and "window must be one of clip, 30s" in r.output
    assert "Traceback" not in r.output


@pytest.fixture(scope="module")
def subset(emodb_root, tmp_path_factory):
    """Manifest CSVs: 6 training speakers x 7 emotions x 3 utterances, and the held-out speaker."""
    from parrot_ser.corpora import Manifest, scan_corpus

    man = scan_corpus("emodb", emodb_root)
    keep, count = [], defaultdict(int)
    for u in man.utterances:
        if u.speaker in TRAIN_SPEAKERS and count[(u.speaker, u.label)] < PER_CELL:
            count[(u.speaker, u.label)] += 1
            keep.append(u)
    d = tmp_path_factory.mktemp("whisper-e2e")
    train = Manifest(man.corpus, man.root, keep)
    held = Manifest(man.corpus, man.root, [u for u in man.utterances if u.speaker == HELD_OUT])
    train.to_csv(d / "train.csv")
    held.to_csv(d / "held.csv")
    return d, train, held


def test_end_to_end_real_features_extract_train_export_predict(subset, whisper_dir, enc):
    import parrot_ser
    from parrot_ser.audio import load_audio
    from parrot_ser.features import open_store

    d, train, held = subset
    store = d / "store"
    r = CliRunner().invoke(app, ["extract", "--manifest", str(d / "train.csv"), "-e", "whisper-base",
                                 "--checkpoint", f"whisper-base={whisper_dir}", "--layers", "3",
                                 "--out", str(store), "--threads", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    fs = open_store(store).get("whisper-base")
    meta = fs.meta
    assert not meta["identity"]["random_init"] and meta["identity"]["checkpoint_sha256"] == enc.identity.checkpoint_sha256
    assert meta["identity"]["layers"] == [3] and meta["identity"]["options"] == {"window": "clip"}
    # extract == the API, row by row (float32 store)
    ids = list(fs.utt_ids)[:4]
    by_id = {u.utt_id: u for u in train.utterances}
    waves = [load_audio(train.abspath(by_id[i]), 16000, warn=False) for i in ids]
    api = np.stack([e.pooled[3] for e in enc.encode(waves)])
    stored = np.asarray(fs.pooled(), dtype=np.float32)[np.asarray(fs.rows(ids))]
    np.testing.assert_allclose(stored, api, atol=1e-5)

    run = d / "run"
    r = CliRunner().invoke(app, ["train", "--features", str(store), "--encoder", "whisper-base", "--model", "fcn",
                                 "--folds", "3", "--seeds", "0", "--epochs", "25", "--patience", "5",
                                 "--threads", "1", "--out", str(run), "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["random_init_encoders"] == []
    cv_acc = res["headline"]["accuracy"]["mean"]
    assert cv_acc > 40.0, cv_acc  # chance 14.3%; real whisper features give ~60-75% here

    bundle = d / "bundle"
    r = CliRunner().invoke(app, ["export", str(run), "--out", str(bundle)])
    assert r.exit_code == 0, r.output
    model = parrot_ser.load_model(bundle)
    assert model.untrained == []
    # train/serve parity: the bundle's encoder gives the store's features
    feats = model.features(waves)
    np.testing.assert_allclose(feats.pooled[0].numpy(), stored, atol=1e-5)
    # a speaker no fold has seen
    files = [held.abspath(u) for u in held.utterances]
    preds = model.predict(files)
    assert len(preds) == len(files) == 61
    acc = np.mean([p.label == u.label for p, u in zip(preds, held.utterances)])
    assert acc > 0.35, acc
    r = CliRunner().invoke(app, ["predict", str(bundle), str(files[0]), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["predictions"][0]["label"] == preds[0].label and doc["summary"]["failed"] == 0
    rows = list(csv.DictReader(open(run / "predictions.csv", encoding="utf-8")))
    assert {r_["speaker"] for r_ in rows} == set(TRAIN_SPEAKERS)


def test_demo_with_the_real_encoder(whisper_dir, tmp_path):
    out = tmp_path / "demo"
    # --untrained: the demo of untrained PTMs, with the real whisper-base in place of its attention one
    r = CliRunner().invoke(app, ["demo", "--quick", "--untrained", "--out", str(out), "--checkpoint",
                                 f"whisper-base={whisper_dir}"])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "demo.json").read_text(encoding="utf-8"))
    assert summary["plan"]["encoders"] == ["logmel", "ssam-tiny", "whisper-base"]  # in place of wavlm-base-plus
    enc = summary["encoders"]
    assert enc["whisper-base"]["untrained"] is False and enc["ssam-tiny"]["untrained"] is True
    assert enc["whisper-base"]["checkpoint"] == str(whisper_dir.resolve())
    report = (out / "REPORT.md").read_text(encoding="utf-8")
    assert "`whisper-base` (attention): **real** pretrained weights" in report
    assert "`ssam-tiny` (mamba): **UNTRAINED** (random init)" in report
    assert "RANDOM weights" in report and "(ssam-tiny)" in report  # the caveat names only the untrained one
    meta = json.loads((out / "features" / "whisper-base" / "meta.json").read_text(encoding="utf-8"))
    assert meta["identity"]["random_init"] is False
    bundle = json.loads((out / "model" / "bundle.json").read_text(encoding="utf-8"))
    assert {e["name"]: e["random_init"] for e in bundle["encoders"]} == {"ssam-tiny": True, "whisper-base": False}
    r = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path / "bad"), "--checkpoint", "nope=/x"])
    assert r.exit_code == 2 and "Traceback" not in r.output
