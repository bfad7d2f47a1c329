"""Trainer, config, run_cv outputs and resume, `parrot-ser train` on a tiny real feature store.

The store is built with the real writer (features.extract_features) from real WAV files: tones
whose pitch depends on the emotion class (plus a per-speaker shift and noise), encoded by the logmel
encoder and by a second logmel instance registered under another name with kind "mamba" (so fusion
models and heterogeneous pairs have two inputs)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from parrot_ser.cli.main import app
from parrot_ser.corpora.base import Manifest, Utterance
from parrot_ser.errors import ConfigError
from parrot_ser.training import (
    RunSpec,
    SERData,
    TrainConfig,
    fit_model,
    fold_runs,
    load_config,
    predict_proba,
)
from parrot_ser.training import run as run_mod
from parrot_ser.training.run import load_fold_model, run_cv

EMOTIONS = (("angry", 300.0), ("sad", 150.0), ("happy", 600.0))


def build_store(root: Path, n_spk: int = 6, per: int = 3, frames: bool = False, targets: bool = False) -> Path:
    """``targets``: also arousal / valence per utterance (read off the pitch, plus noise), and every
    fourth utterance without a label (a multitask run trains its dimensions only)."""
    from parrot_ser.encoders.logmel import SPEC, LogMelEncoder
    from parrot_ser.features import extract_features

    rng = np.random.default_rng(0)
    utts = []
    wav_root = root / "wav"
    for s in range(n_spk):
        for lab, f0 in EMOTIONS:
            for k in range(per):
                t = np.arange(4000) / 16000
                x = 0.3 * np.sin(2 * np.pi * (f0 * (1 + 0.05 * s) + 20 * k) * t) + 0.02 * rng.normal(size=t.size)
                p = wav_root / f"spk{s}" / f"{lab}_{k}.wav"
                p.parent.mkdir(parents=True, exist_ok=True)
                sf.write(p, x.astype(np.float32), 16000)
                meta = {"session": str(s // 2 + 1)}
                label = lab
                if targets:
                    meta.update(arousal=f"{1 + f0 / 150 + 0.3 * rng.normal():.3f}",
                                valence=f"{4 - 0.5 * s + k + 0.3 * rng.normal():.3f}")
                    label = "" if len(utts) % 4 == 3 else lab
                utts.append(Utterance(f"spk{s}_{lab}_{k}", str(p.relative_to(wav_root)), label, f"spk{s}", lab, meta))
    man = Manifest("synthetic", wav_root, utts, targets=["arousal", "valence"] if targets else [])
    store = root / "store"
    extract_features(man, LogMelEncoder(), store, progress=False, frames=frames)
    extract_features(man, LogMelEncoder(replace(SPEC, name="toy-mamba", kind="mamba")), store, progress=False,
                     frames=frames)
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return build_store(tmp_path_factory.mktemp("store"), frames=True)


def synthetic(n: int = 60, seed: int = 0) -> SERData:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    a = rng.normal(size=(n, 24)).astype(np.float32)
    b = rng.normal(size=(n, 16)).astype(np.float32)
    a[:, :4] += 2.5 * y[:, None]
    b[:, :4] -= 2.5 * y[:, None]
    return SERData([a, b], y, [f"u{i:03d}" for i in range(n)], ["x", "y", "z"],
                   speakers=[f"s{i % 5}" for i in range(n)])


# ------------------------------------------------------------------------------------------- config
def test_yaml_config_overrides_and_unknown_key(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("epochs: 7\nlr: 1e-4\nlayer: mean\nmodel:\n  hidden: 64\n", encoding="utf-8")
    cfg = load_config(cfg_file, {"epochs": 3, "batch_size": None, "model": {"ot_eps": 0.1}})
    assert (cfg.epochs, cfg.lr, cfg.layer, cfg.batch_size) == (3, 1e-4, "mean", 32)
    assert cfg.model == {"hidden": 64, "ot_eps": 0.1}
    assert TrainConfig().patience == 10 and TrainConfig().early_stop_metric == "auto"  # = macro_f1 for classification
    cfg_file.write_text("epochs: 7\nlearning_rate: 0.1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        load_config(cfg_file)
    cfg_file.write_text("epochs: many\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="'epochs' has an invalid value"):
        load_config(cfg_file)
    with pytest.raises(ConfigError, match="early_stop_metric"):
        load_config(None, {"early_stop_metric": "accuracy"})


# ------------------------------------------------------------------------------------------ trainer
def test_fit_model_is_deterministic_and_learns():
    data = synthetic()
    tr, va, te = data.subset(range(0, 36)), data.subset(range(36, 48)), data.subset(range(48, 60))
    cfg = RunSpec.build("concat", TrainConfig(epochs=6, batch_size=8, patience=3))
    m1, h1 = fit_model(tr, va, cfg, seed=1)
    m2, h2 = fit_model(tr, va, cfg, seed=1)
    p1, p2 = predict_proba(m1, te, cfg), predict_proba(m2, te, cfg)
    assert np.array_equal(p1, p2) and h1 == h2
    assert np.allclose(p1.sum(1), 1.0, atol=1e-5)
    assert (p1.argmax(1) == te.labels).mean() >= 0.75  # a strong planted signal is learned
    m3, _ = fit_model(tr, va, cfg, seed=2)
    assert not np.array_equal(p1, predict_proba(m3, te, cfg))
    assert 1 <= h1["best_epoch"] <= h1["stopped_epoch"] <= 6 and h1["monitor"] == "val_macro_f1"
    # the standardiser is fitted on the training rows only and travels as buffers
    std = m1.standardiser()
    assert np.allclose(std.pooled_mean[0], tr.pooled[0].mean(0), atol=1e-5)
    assert not np.allclose(std.pooled_mean[0], data.pooled[0].mean(0), atol=1e-3)


def test_batch_dependent_model_eval_does_not_depend_on_row_order():
    data = synthetic(48)
    cfg = RunSpec.build("parrot", TrainConfig(epochs=2, batch_size=8, eval_batch_size=8))
    model, _ = fit_model(data.subset(range(32)), None, cfg, seed=0)
    test = data.subset(range(32, 48))
    perm = np.random.default_rng(0).permutation(16)
    p = predict_proba(model, test, cfg)
    q = predict_proba(model, test.subset(perm), cfg)
    assert np.allclose(p[perm], q, atol=1e-6)
    # a different eval batch size regroups the batches, and the paper's batch-level OT notices
    r = predict_proba(model, test, replace(cfg, optimisation=replace(cfg.optimisation, eval_batch_size=3)))
    assert not np.allclose(p, r, atol=1e-7)


# ------------------------------------------------------------------------------------------- run_cv
def test_run_cv_writes_outputs_and_resumes(store, tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = TrainConfig(epochs=2, batch_size=8, eval_batch_size=16)
    res = run_cv(store, ["toy-mamba", "logmel"], "parrot", cfg, [0], "speaker-kfold", out, n_folds=3)
    for f in ("results.json", "run.json", "predictions.csv", "confusion.png", "per_class_f1.png",
              "transport.png", *(f"models/seed0_fold{k}.safetensors" for k in range(3))):
        assert (out / f).is_file(), f
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["headline"] == json.loads(json.dumps(res["headline"]))
    for m in ("accuracy", "ua", "macro_f1", "weighted_f1"):
        assert 0.0 <= res["headline"][m]["mean"] <= 100.0 and res["headline"][m]["n"] == 3
    assert np.asarray(res["confusion_sum"]).sum() == 54
    tr = res["transport"]
    assert 1.0 <= tr["eff_partners"]["mean"] <= 16.0 and tr["entropy"]["mean"] >= 0
    assert "effective_partners" not in tr and tr["row_entropy"]["mean"] >= 0  # one owner: plan_stats
    for f in res["folds"]["0"]:
        assert set(f["test_speakers"]).isdisjoint(f["train_speakers"] + f["val_speakers"])
    assert set(res["versions"]) >= {"torch", "numpy", "scikit-learn", "transformers", "parrot-ser"}
    rows = list(csv.DictReader(open(out / "predictions.csv", encoding="utf-8")))
    assert len(rows) == 54 and len({r["utt_id"] for r in rows}) == 54
    probs = np.asarray([[float(r[f"prob_{c}"]) for c in res["classes"]] for r in rows])
    assert np.allclose(probs.sum(1), 1.0, atol=1e-4)
    # the saved weights + run.json rebuild the fold's model exactly
    model, run = load_fold_model(out, 0, 1)
    entry = json.loads((out / "folds" / "seed0_fold1.json").read_text())
    spec = RunSpec.from_dict(run["spec"])
    data, _, _ = run_mod.load_features(store, spec)
    test = data.subset([data.utt_ids.index(u) for u in entry["test_utt_ids"]])
    assert np.allclose(predict_proba(model, test, spec), entry["test_proba"], atol=1e-5)

    # resume: nothing is refitted; a deleted entry is the only one recomputed
    calls = []
    real_fit = fold_runs.fit_model

    def counting_fit(*a, **k):
        calls.append(1)
        return real_fit(*a, **k)

    monkeypatch.setattr(fold_runs, "fit_model", counting_fit)
    assert json.loads((out / "run.json").read_text())["spec"]["execution"]["batched"] is None  # automatic
    # resumed with other execution settings: the same run (nothing refitted); run.json's spec says how
    again = run_cv(store, ["toy-mamba", "logmel"], "parrot", cfg, [0], "speaker-kfold", out, n_folds=3,
                   batched=False, workers=1)
    assert calls == [] and again["headline"] == res["headline"]
    assert json.loads((out / "run.json").read_text())["spec"]["execution"] == {
        "device": "cpu", "num_threads": cfg.num_threads, "workers": 1, "engine": "local", "batched": False}
    (out / "folds" / "seed0_fold2.json").unlink()
    run_cv(store, ["toy-mamba", "logmel"], "parrot", cfg, [0], "speaker-kfold", out, n_folds=3)
    assert calls == [1]
    with pytest.raises(ConfigError, match="different run"):
        run_cv(store, ["toy-mamba", "logmel"], "parrot", replace(cfg, lr=0.01), [0], "speaker-kfold", out,
               n_folds=3)


def test_cli_train_json_and_errors(store, tmp_path):
    runner = CliRunner()
    yaml_file = tmp_path / "t.yaml"
    yaml_file.write_text("epochs: 3\nbatch_size: 8\nmodel:\n  encoder_pool: adaptive\n", encoding="utf-8")
    out = tmp_path / "cli_run"
    r = runner.invoke(app, ["train", "--features", str(store), "--encoder", "logmel", "--model", "cnn",
                            "--protocol", "iemocap-sessions", "--config", str(yaml_file), "--epochs", "2",
                            "--out", str(out), "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["protocol"] == "iemocap-sessions" and doc["summary"]["n_folds"] == 3
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["epochs"] == 2 and run["config"]["model"] == {"encoder_pool": "adaptive"}
    assert all(len(e["history"]) <= 2 for e in
               (json.loads(p.read_text()) for p in (out / "folds").glob("*.json")))
    bad = runner.invoke(app, ["train", "--features", str(store), "--encoder", "hubert-base", "--model", "cnn",
                              "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "no features for encoder 'hubert-base'" in bad.output
    assert "Traceback" not in bad.output
    two = runner.invoke(app, ["train", "--features", str(store), "--encoder", "logmel", "--model", "parrot",
                              "--out", str(tmp_path / "y")])
    assert two.exit_code == 2 and "takes 2 encoder(s)" in two.output


def test_frames_and_all_layers_round_trip(store, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=8, use_frames=True, model={"ot_tokens": 8})
    out = tmp_path / "frames"
    res = run_cv(store, ["toy-mamba", "logmel"], "parrot-token", cfg, [0], "speaker-kfold", out, n_folds=2)
    run = json.loads((out / "run.json").read_text())
    assert run["frame_dims"] == [160, 160] and run["use_frames"] and not run["model_spec"]["batch_dependent"]
    model, _ = load_fold_model(out, 0, 1)
    assert "std_frames_mean_0" in model.state_dict()
    spec = RunSpec.of_run(run)
    data, _, _ = run_mod.load_features(store, spec)
    entry = json.loads((out / "folds" / "seed0_fold1.json").read_text())
    test = data.subset([data.utt_ids.index(u) for u in entry["test_utt_ids"]])
    assert np.allclose(predict_proba(model, test, spec), entry["test_proba"], atol=1e-5)
    tr = res["transport"]  # per-utterance plans between the two frame sequences (26 frames each here)
    assert 1.0 <= tr["eff_partners"]["mean"] <= tr["m"]["mean"] + 1e-6 and tr["m"]["mean"] == 26

    out2 = tmp_path / "all_layers"
    run_cv(store, ["logmel"], "cnn", replace(cfg, use_frames=False, layer="weighted"), [0], "speaker-kfold",
           out2, n_folds=2)
    run2 = json.loads((out2 / "run.json").read_text())
    assert run2["input_shapes"] == [[1, 320]] and run2["layer"] == "weighted"
    model2, _ = load_fold_model(out2, 0, 0)  # rebuilt with layer weighting, loads strictly
    assert any("select" in k for k in model2.state_dict())
    with pytest.raises(ConfigError, match="does not use frame features"):
        run_cv(store, ["logmel"], "cnn", cfg, [0], "speaker-kfold", tmp_path / "r1", n_folds=2)
