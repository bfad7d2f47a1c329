"""Export bundle: a real tiny run (logmel features of real Emo-DB files, 2 speaker folds, fcn head)
-> export -> load -> predict reproduces the run's own test probabilities; integrity checks refuse a
changed byte, a missing file, an edited bundle.json and a different encoder checkpoint."""

from __future__ import annotations

import csv
import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from parrot_ser.errors import BundleError
from parrot_ser.export import export_run
from parrot_ser.inference import load_model
from parrot_ser.inference.bundle import load_bundle, verify_bundle, write_bundle
from parrot_ser.inference.predictor import Predictor

SPEAKERS = ("03", "08", "09", "10")
LABELS = ("angry", "neutral", "sad")


@functools.cache
def build_run(root: str, emodb: str) -> tuple[Path, Path]:
    """A real run on real audio (cached per session): 106 Emo-DB files, logmel, fcn, 2 folds, seed 0.
    Returns (run_dir, bundle_dir) with the bundle made by the real export path."""
    return _build_run(Path(root), emodb)


def _build_run(base: Path, emodb: str) -> tuple[Path, Path]:
    from parrot_ser.corpora import scan_corpus
    from parrot_ser.corpora.base import Manifest
    from parrot_ser.encoders import build_encoder
    from parrot_ser.features import extract_features
    from parrot_ser.training.config import TrainConfig
    from parrot_ser.training.run import run_cv

    man = scan_corpus("emodb", emodb)
    keep = [u for u in man.utterances if u.label in LABELS and u.speaker in SPEAKERS]
    extract_features(Manifest(man.corpus, man.root, keep), build_encoder("logmel"), base / "feat", progress=False)
    run_cv(base / "feat", ["logmel"], "fcn", TrainConfig(epochs=4, patience=2), [0], "speaker-kfold",
           base / "run", n_folds=2)
    return base / "run", export_run(base / "run", base / "bundle")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, emodb_root) -> tuple[Path, Path]:
    return build_run(str(tmp_path_factory.getbasetemp() / "h7_run"), str(emodb_root))


def _wav(emodb_root: Path, utt_id: str) -> Path:
    return emodb_root / "wav" / (utt_id.split("/")[-1] + ".wav")


def test_bundle_is_self_describing_and_pickle_free(tiny_run):
    run_dir, bundle = tiny_run
    doc = verify_bundle(bundle)
    assert doc["labels"] == list(LABELS)
    assert [e["name"] for e in doc["encoders"]] == ["logmel"]
    assert doc["encoders"][0]["preprocessing"]["n_mels"] == 80 and doc["encoders"][0]["layers"] == [0]
    assert doc["model"]["name"] == "fcn" and doc["model"]["config"]["epochs"] == 4
    assert doc["ensemble"] == {"kind": "cv-ensemble", "n_members": 2,
                               "aggregation": "mean of the members' softmax probabilities"}
    assert doc["training"]["headline"]["accuracy"]["n"] == 2  # mean +- std over the 2 folds
    assert doc["package_version"] and doc["warning"] is None
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    # every file is hashed in the manifest except the model card (documentation owners edit; hub.py)
    assert files == {"bundle.json", "README.md", *doc["files"]}
    assert all(f.endswith((".json", ".safetensors", ".md")) for f in files)
    members = load_bundle(bundle).members
    assert any(k.startswith("std_pooled_mean_0") for k in members[0].state_dict)  # standardiser travels


def test_serving_a_bundle_loads_no_training_code_nor_sklearn(tiny_run, emodb_root):
    """Loading a bundle and predicting goes through the model layer only (issue 8)."""
    import subprocess
    import sys

    _, bundle = tiny_run
    code = ("import sys, parrot_ser\n"
            f"m = parrot_ser.load_model({str(bundle)!r})\n"
            f"print(m.predict({str(_wav(emodb_root, '03a01Wa'))!r})[0].label)\n"
            "bad = sorted(x for x in sys.modules if x == 'sklearn' or x.startswith(('sklearn.', "
            "'parrot_ser.training', 'parrot_ser.cli')))\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] in LABELS


def test_round_trip_reproduces_the_runs_test_probabilities(tiny_run, emodb_root):
    run_dir, bundle = tiny_run
    pred = load_model(bundle)
    assert pred.labels == list(LABELS) and pred.batch_mode == "independent" and len(pred.heads) == 2
    rows = list(csv.DictReader(open(run_dir / "predictions.csv", encoding="utf-8")))
    probs_cols = [f"prob_{c}" for c in LABELS]
    tags = [m["tag"] for m in pred.info["members"]]
    for k, tag in enumerate(tags):
        fold_rows = [r for r in rows if f"seed{r['seed']}_fold{r['fold']}" == tag][:12]
        assert fold_rows
        member = Predictor(pred.labels, pred.encoders, [pred.heads[k]])
        got = member.predict([_wav(emodb_root, r["utt_id"]) for r in fold_rows])
        want = np.array([[float(r[c]) for c in probs_cols] for r in fold_rows])
        have = np.array([[g.probabilities[c] for c in LABELS] for g in got])
        np.testing.assert_allclose(have, want, atol=2e-5)  # predictions.csv holds 6 decimals
    # The bundle's answer is the mean of its members'.
    paths = [_wav(emodb_root, r["utt_id"]) for r in rows[:5]]
    ens = np.array([[p.probabilities[c] for c in LABELS] for p in pred.predict(paths)])
    each = [np.array([[p.probabilities[c] for c in LABELS]
                      for p in Predictor(pred.labels, pred.encoders, [h]).predict(paths)]) for h in pred.heads]
    np.testing.assert_allclose(ens, np.mean(each, axis=0), atol=1e-6)


def test_alone_or_batched_gives_the_same_answer(tiny_run, emodb_root):
    _, bundle = tiny_run
    pred = load_model(bundle)
    paths = sorted((emodb_root / "wav").glob("1*.wav"))[:6]
    batched = pred.predict(paths, batch_size=6)
    for p, b in zip(paths, batched):
        alone = pred.predict(p)[0]
        assert alone.label == b.label and alone.path == str(p)
        assert alone.probabilities == pytest.approx(b.probabilities, abs=1e-6)


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(bundle, dst)
    return dst


def test_changed_byte_is_refused(tiny_run, tmp_path):
    b = _copy(tiny_run[1], tmp_path)
    f = next((b / "members").glob("*.safetensors"))
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the weights
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=rf"{f.name}: sha256 .* does not match"):
        load_model(b)


def test_missing_file_is_refused(tiny_run, tmp_path):
    b = _copy(tiny_run[1], tmp_path)
    f = next((b / "members").glob("*.safetensors"))
    f.unlink()
    with pytest.raises(BundleError, match=rf"{f.name}: missing from the model bundle"):
        load_model(b)
    (b / "bundle.json").unlink()
    with pytest.raises(BundleError, match="bundle.json: missing"):
        load_model(b)


def test_edited_bundle_json_is_refused(tiny_run, tmp_path):
    b = _copy(tiny_run[1], tmp_path)
    doc = json.loads((b / "bundle.json").read_text())
    doc["labels"] = ["sad", "neutral", "angry"]  # swapping labels would silently mislabel everything
    (b / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="does not match its recorded hash"):
        load_model(b)


def test_encoder_checkpoint_hash_mismatch_is_refused(tiny_run, tmp_path):
    bundle = load_bundle(tiny_run[1])
    doc = {k: v for k, v in bundle.doc.items() if k not in ("format", "format_version", "members", "files",
                                                             "content_sha256")}
    doc["encoders"] = [{**doc["encoders"][0], "checkpoint_sha256": "ab" * 32}]  # made with another checkpoint
    out = write_bundle(tmp_path / "other", doc, bundle.members)
    verify_bundle(out)  # the bundle itself is intact...
    with pytest.raises(BundleError, match=r"sha256 none, the bundle was made with ababababab.*\(a different checkpoint\)"):
        load_model(out)  # ...but the encoder rebuilt here is not the one it was trained on


def _rewrite(bundle_dir: Path, out: Path, edit) -> Path:
    """A copy of the bundle whose bundle.json was edited by ``edit(doc)`` and every hash recomputed:
    what a careless (or hostile) user who knows the format can make."""
    bundle = load_bundle(bundle_dir)
    doc = {k: v for k, v in bundle.doc.items() if k not in ("format", "format_version", "members", "files",
                                                             "content_sha256")}
    edit(doc)
    return write_bundle(out, doc, bundle.members, bundle.anchors)


def test_a_bundle_with_a_format_1_run_spec_loads_and_predicts_the_same(tiny_run, tmp_path, emodb_root):
    """A bundle as written before RunSpec format /2: its run_spec names the model config's store
    position "layer", and its run was given the model option under that old key."""
    from parrot_ser.training.spec import RunSpec

    def edit(doc):
        spec = doc["run_spec"]
        mc = {("layer" if k == "position" else k): v for k, v in spec["model_config"].items()}
        doc["run_spec"] = {**spec, "format": "parrot-ser-runspec/1", "model_config": mc}
        doc["model"]["config"]["model"] = {"layer": -1}  # trained with --model-option layer=-1

    old = _rewrite(tiny_run[1], tmp_path / "v1", edit)
    doc = load_bundle(old).doc
    assert doc["run_spec"]["format"].endswith("/1") and "layer" in doc["run_spec"]["model_config"]
    assert RunSpec.from_dict(doc["run_spec"]) == RunSpec.from_dict(load_bundle(tiny_run[1]).doc["run_spec"])
    paths = sorted((emodb_root / "wav").glob("1*.wav"))[:4]
    want = [p.probabilities for p in load_model(tiny_run[1]).predict(paths)]
    assert [p.probabilities for p in load_model(old).predict(paths)] == want


def test_heads_are_built_from_the_run_spec_not_the_config(capsys):
    """Serving builds a head from the run's resolved spec (as training does), the config only for
    runs written before it; a former spec format's key (``layer``) is read silently."""
    from parrot_ser.models import head_from_run
    from parrot_ser.training.config import TrainConfig
    from parrot_ser.training.spec import RunSpec

    spec = RunSpec.build("fcn", TrainConfig(model={"hidden": 24}), encoders=["logmel"]).to_dict()
    run = {"model": "fcn", "input_dims": [8], "labels": ["a", "b"], "config": {"model": {"hidden": 16}}}
    width = lambda m: m.net.head[1].out_features  # noqa: E731  (the classifier's hidden Dense)
    assert width(head_from_run(run)) == 16  # before RunSpec: the config
    assert width(head_from_run({**run, "spec": spec})) == 24  # the spec wins
    v1 = {**spec, "format": "parrot-ser-runspec/1",
          "model_config": {("layer" if k == "position" else k): v for k, v in spec["model_config"].items()}}
    assert width(head_from_run({**run, "spec": v1})) == 24
    assert "is now spelled" not in capsys.readouterr().err  # our own record, not the user's option


@pytest.mark.parametrize("field", ["input_dims", "input_shapes"])
def test_edited_model_dims_with_recomputed_hashes_are_refused(tiny_run, tmp_path, field):
    def edit(doc):
        if field == "input_dims":
            doc["model"]["input_dims"] = [d + 1 for d in doc["model"]["input_dims"]]
        else:
            doc["model"]["input_shapes"] = [[1] for _ in doc["model"]["input_dims"]]

    out = _rewrite(tiny_run[1], tmp_path / "edited", edit)
    verify_bundle(out)  # every hash matches: only the shapes tell
    with pytest.raises(BundleError, match=r"bundle.json: model.input_dims\[0\]=.*disagree with the weights"):
        load_model(out)


def test_untrained_encoders_are_announced(tiny_run, tmp_path):
    from parrot_ser.encoders import build_encoder

    bundle = load_bundle(tiny_run[1])
    doc = {k: v for k, v in bundle.doc.items() if k not in ("format", "format_version", "members", "files",
                                                             "content_sha256")}
    doc["encoders"] = [{**doc["encoders"][0], "random_init": True, "seed": 7}]
    out = write_bundle(tmp_path / "untrained", doc, bundle.members)
    enc = build_encoder("logmel")
    enc.identity.random_init, enc.identity.seed = True, 7  # stand-in for a random-init PTM rebuilt from seed 7
    with pytest.warns(UserWarning, match="UNTRAINED ENCODER"):
        pred = Predictor.from_bundle(out, encoders=[enc])
    assert pred.untrained == ["logmel"]
    enc2 = build_encoder("logmel")
    enc2.identity.random_init, enc2.identity.seed = True, 8
    with pytest.raises(BundleError, match="seed 8 differs"):
        Predictor.from_bundle(out, encoders=[enc2], quiet=True)


def test_refit_trains_one_model_on_all_data(tiny_run, tmp_path, emodb_root):
    run_dir, _ = tiny_run
    shutil.copytree(tiny_run[1], tmp_path / "refit")  # re-export over the 2-member bundle
    out = export_run(run_dir, tmp_path / "refit", refit=True)
    doc = verify_bundle(out)
    assert sorted(p.name for p in (out / "members").iterdir()) == ["refit_seed0.safetensors"]  # no stale files
    assert doc["ensemble"]["kind"] == "refit" and doc["ensemble"]["n_members"] == 1
    m = doc["members"][0]
    assert m["n_train"] + m["n_val"] == 106 and m["val_speakers"]  # all data; early-stopping speakers held out
    p = load_model(out).predict(_wav(emodb_root, "03a01Wa"))[0]
    assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-6)


def test_refit_of_a_run_written_before_run_spec_rebuilds_its_spec_from_config(tiny_run, tmp_path):
    """run.json of runs made before RunSpec holds only ``config``: export --refit rebuilds the spec from
    it (RunSpec.of_run) and trains exactly the model it trains from the stored spec."""
    from safetensors.torch import load_file

    from parrot_ser.training.spec import RunSpec

    run_dir = tmp_path / "old_run"
    shutil.copytree(tiny_run[0], run_dir)
    run = json.loads((run_dir / "run.json").read_text())
    stored = RunSpec.from_dict(run.pop("spec"))
    (run_dir / "run.json").write_text(json.dumps(run))
    assert RunSpec.of_run(run).identity() == stored.identity()  # execution (workers, ...) is not in old run.json
    new = export_run(tiny_run[0], tmp_path / "new", refit=True)
    old = export_run(run_dir, tmp_path / "old", refit=True)
    a, b = (load_file(str(d / "members" / "refit_seed0.safetensors")) for d in (new, old))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_export_refuses_an_unfinished_run(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(BundleError, match="run.json: not found"):
        export_run(tmp_path / "run", tmp_path / "b")


def _logmel_b():
    """A second, distinctly named logmel encoder: a cheap stand-in for the attention PTM of a pair."""
    import dataclasses

    from parrot_ser.encoders.logmel import SPEC, LogMelEncoder

    return LogMelEncoder(dataclasses.replace(SPEC, name="logmel-b"))


def test_batch_dependent_parrot_is_scored_with_fixed_anchors(tiny_run, tmp_path, emodb_root):
    """Paper PARROT (batch-level OT) exported for real: each utterance is scored with the bundle's
    fixed anchors, so its answer is the same alone or among other inputs."""

    import torch

    from parrot_ser.corpora.base import Manifest
    from parrot_ser.encoders import build_encoder
    from parrot_ser.features import extract_features, open_store
    from parrot_ser.training.config import TrainConfig
    from parrot_ser.training.run import run_cv

    feat = tiny_run[0].parent / "feat"
    store = open_store(feat)
    # 42 utterances (every 2nd+ of the 106) keep the run small; training uses the common ones.
    man = Manifest(store.manifest.corpus, store.manifest.root, store.manifest.utterances[::2][:42])
    extract_features(man, _logmel_b(), tmp_path / "feat", progress=False)
    shutil.copytree(feat / "logmel", tmp_path / "feat" / "logmel")
    run_cv(tmp_path / "feat", ["logmel", "logmel-b"], "parrot",
           TrainConfig(epochs=1, patience=0, model={"encoder_pool": "adaptive", "conv_channels": [8, 16]}), [0],
           "speaker-kfold", tmp_path / "run", n_folds=2)
    out = export_run(tmp_path / "run", tmp_path / "bundle")
    doc = verify_bundle(out)
    assert doc["model"]["batch_dependent"] and doc["inference"]["batch_mode"] == "anchors"
    assert doc["inference"]["n_anchors"] == 31  # eval_batch_size 32 - the utterance itself
    pred = Predictor.from_bundle(out, encoders=[build_encoder("logmel"), _logmel_b()])
    paths = sorted((emodb_root / "wav").glob("1[1-6]*.wav"))[:3]
    together = pred.predict(paths)
    for p, t in zip(paths, together):
        assert pred.predict(p)[0].probabilities == pytest.approx(t.probabilities, abs=1e-6)
    # Without the anchors the same head does depend on the batch: the fix is doing the work.
    from parrot_ser.audio import load_audio

    feats = pred.features([load_audio(p, pred.sample_rate) for p in paths])
    head = pred.heads[0]
    with torch.no_grad():
        batched = torch.softmax(head(feats.batch(range(3))), -1)
        alone = torch.cat([torch.softmax(head(feats.batch([i])), -1) for i in range(3)])
    assert not torch.allclose(batched, alone, atol=1e-4)


def test_hf_checkpoint_is_verified_by_hash(tmp_path):
    """A real (tiny, saved here) Hugging Face checkpoint: same files load; a moved checkpoint is found
    with checkpoints=; different weights at that place are refused."""
    import torch
    from transformers import AutoConfig, AutoModel, Wav2Vec2FeatureExtractor

    from parrot_ser.encoders import build_encoder
    from parrot_ser.encoders.hf import TINY
    from parrot_ser.inference.bundle import Member
    from parrot_ser.models import head_from_run as rebuild_model
    from parrot_ser.training.config import TrainConfig

    def save_tiny(path: Path, seed: int) -> None:
        torch.manual_seed(seed)
        AutoModel.from_config(AutoConfig.for_model("hubert", **TINY)).save_pretrained(path)
        Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(path)

    ck = tmp_path / "hubert"
    save_tiny(ck, 1)
    ident = build_encoder("hubert-base", checkpoint=str(ck)).identity.to_dict()
    md = {"model": "fcn", "name": "fcn", "config": TrainConfig().to_dict(), "input_dims": [64],
          "input_shapes": [[64]], "frame_dims": None, "labels": ["a", "b"], "n_classes": 2,
          "batch_dependent": False, "uses_frames": False}
    doc = {"labels": ["a", "b"], "encoders": [ident], "inputs": {"layer": None}, "model": md}
    out = write_bundle(tmp_path / "b", doc, [Member("m0", rebuild_model(md).state_dict())])
    wave = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    ref = load_model(out).predict(wave, sample_rate=16000)[0]
    shutil.move(ck, tmp_path / "moved")
    with pytest.raises(BundleError, match="cannot rebuild encoder 'hubert-base'"):
        load_model(out)
    moved = load_model(out, checkpoints={"hubert-base": str(tmp_path / "moved")})
    assert moved.predict(wave, sample_rate=16000)[0].probabilities == pytest.approx(ref.probabilities, abs=1e-6)
    save_tiny(tmp_path / "moved", 2)  # other weights, same place and config
    with pytest.raises(BundleError, match="a different checkpoint"):
        load_model(out, checkpoints={"hubert-base": str(tmp_path / "moved")})


def test_frame_model_round_trip(tmp_path, emodb_root):
    """A model fed frame features (parrot-token, frames of two encoders) through the real export:
    the bundle pads frames like training and reproduces the run's test probabilities."""
    from parrot_ser.corpora import scan_corpus
    from parrot_ser.corpora.base import Manifest
    from parrot_ser.encoders import build_encoder
    from parrot_ser.features import extract_features
    from parrot_ser.training.config import TrainConfig
    from parrot_ser.training.run import run_cv

    man = scan_corpus("emodb", str(emodb_root))
    keep = [u for u in man.utterances if u.label in LABELS and u.speaker in SPEAKERS][::3]
    m = Manifest(man.corpus, man.root, keep)
    for enc in (build_encoder("logmel"), _logmel_b()):
        extract_features(m, enc, tmp_path / "feat", frames=True, progress=False)
    cfg = TrainConfig(epochs=1, patience=0, use_frames=True,
                      model={"encoder_pool": "adaptive", "conv_channels": [8, 16]})
    run_cv(tmp_path / "feat", ["logmel", "logmel-b"], "parrot-token", cfg, [0], "speaker-kfold",
           tmp_path / "run", n_folds=2)
    pred = Predictor.from_bundle(export_run(tmp_path / "run", tmp_path / "bundle"),
                                 encoders=[build_encoder("logmel"), _logmel_b()])
    assert pred.use_frames and pred.batch_mode == "independent"
    rows = [r for r in csv.DictReader(open(tmp_path / "run" / "predictions.csv", encoding="utf-8"))
            if r["fold"] == "0"][:6]
    k = [m["tag"] for m in pred.info["members"]].index("seed0_fold0")
    member = Predictor(pred.labels, pred.encoders, [pred.heads[k]], use_frames=True)
    got = member.predict([_wav(emodb_root, r["utt_id"]) for r in rows])
    np.testing.assert_allclose([[g.probabilities[c] for c in LABELS] for g in got],
                               [[float(r[f"prob_{c}"]) for c in LABELS] for r in rows], atol=2e-5)


def test_float16_feature_store_parity(tmp_path, emodb_root):
    """Features stored as float16 in training: the bundle rounds its float32 features the same way
    and matches the run to float precision (without the rounding: ~1e-4 off)."""
    from parrot_ser.corpora import scan_corpus
    from parrot_ser.corpora.base import Manifest
    from parrot_ser.encoders import build_encoder
    from parrot_ser.features import extract_features
    from parrot_ser.training.config import TrainConfig
    from parrot_ser.training.run import run_cv

    man = scan_corpus("emodb", str(emodb_root))
    keep = [u for u in man.utterances if u.label in LABELS and u.speaker in SPEAKERS][::2]
    extract_features(Manifest(man.corpus, man.root, keep), build_encoder("logmel"), tmp_path / "feat",
                     dtype="float16", progress=False)
    run_cv(tmp_path / "feat", ["logmel"], "fcn", TrainConfig(epochs=2), [0], "speaker-kfold", tmp_path / "run",
           n_folds=2)
    pred = load_model(export_run(tmp_path / "run", tmp_path / "bundle"))
    assert pred.info["encoders"][0]["store_dtype"] == "float16"
    rows = [r for r in csv.DictReader(open(tmp_path / "run" / "predictions.csv", encoding="utf-8"))
            if r["fold"] == "0"][:8]
    k = [m["tag"] for m in pred.info["members"]].index("seed0_fold0")
    got = Predictor(pred.labels, pred.encoders, [pred.heads[k]], info=pred.info).predict(
        [_wav(emodb_root, r["utt_id"]) for r in rows])
    np.testing.assert_allclose([[g.probabilities[c] for c in LABELS] for g in got],
                               [[float(r[f"prob_{c}"]) for c in LABELS] for r in rows], atol=2e-6)
