"""Open label sets, numeric targets, MSP-Podcast and EmoBox layouts (fixture trees built here), speaker
overlap of imported folds, and the dimensional metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from parrot_ser.cli.main import app
from parrot_ser.corpora import Manifest, scan_corpus
from parrot_ser.corpora.base import check_labelled, is_unknown_speaker
from parrot_ser.corpora.emobox import read_jsonl, write_emobox_folds
from parrot_ser.errors import ConfigError, CorpusError, FeatureStoreError, LeakageError
from parrot_ser.training.metrics import ccc, compute_regression_metrics, pearson
from parrot_ser.training.splits import make_folds, speaker_overlap

runner = CliRunner()


def _tone(path: Path, tone_writer) -> Path:
    return tone_writer(path, seconds=0.05, sr=8000)


# --- any label set ------------------------------------------------------------------------------

@pytest.fixture
def arousal_csv(tmp_path, tone_writer) -> Path:
    rows = ["path,label,speaker,arousal,valence"]
    for i, (lab, a) in enumerate([("low", 1.5), ("neutral", 3.0), ("high", 4.5), ("high", 5.0), ("low", 2.0)]):
        _tone(tmp_path / f"a{i}.wav", tone_writer)
        rows.append(f"a{i}.wav,{lab},s{i % 3},{a},{6 - a}")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "list.csv"


def test_csv_with_own_labels_keeps_them_and_says_so(arousal_csv):
    man = scan_corpus("csv", arousal_csv)
    assert man.labels() == ["high", "low", "neutral"] and not man.problems
    assert man.label_policy["mode"] == "asis" and man.label_policy["chosen_by"] == "default"
    assert "'high'" in man.label_policy["note"] and "'low'" in man.label_policy["note"]
    canon = scan_corpus("csv", arousal_csv, labels="canonical")  # only 'neutral' is a known spelling
    assert canon.labels() == ["neutral"] and len(canon.problems) == 4
    check_labelled(man, arousal_csv)  # any label string is trainable


def test_label_map_yaml_and_json_merge_rename_drop(arousal_csv, tmp_path):
    (tmp_path / "m.yaml").write_text("low: calm\nhigh: aroused\nneutral: null\nnope: x\n")
    man = scan_corpus("csv", arousal_csv, label_map=tmp_path / "m.yaml")
    assert man.labels() == ["aroused", "calm"] and len(man) == 4
    assert man.excluded == {"label 'neutral' dropped by the label map": 1}
    assert man.label_policy["map"]["low"] == "calm" and "nope" in man.label_policy["note"]
    (tmp_path / "m.json").write_text(json.dumps({"low": "not-high", "neutral": "not-high"}))
    assert scan_corpus("csv", arousal_csv, label_map=tmp_path / "m.json").labels() == ["high", "not-high"]
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(ConfigError, match="bad.json: label map is not valid JSON"):
        scan_corpus("csv", arousal_csv, label_map=tmp_path / "bad.json")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="non-empty mapping"):
        scan_corpus("csv", arousal_csv, label_map=tmp_path / "list.yaml")


def test_builtin_corpus_asis_keeps_its_codes(tmp_path, tone_writer):
    for name in ("03a01Fa.wav", "10b02Wb.wav"):
        _tone(tmp_path / "wav" / name, tone_writer)
    assert scan_corpus("emodb", tmp_path).labels() == ["angry", "happy"]
    man = scan_corpus("emodb", tmp_path, labels="asis")
    assert man.labels() == ["F", "W"] and man.label_policy["mode"] == "asis"
    with pytest.raises(ConfigError, match="--labels must be one of canonical, asis"):
        scan_corpus("emodb", tmp_path, labels="own")


def test_manifest_round_trip_keeps_policy_and_targets(arousal_csv, tmp_path):
    man = scan_corpus("csv", arousal_csv, targets="arousal,valence")
    back = Manifest.from_csv(man.to_csv(tmp_path / "out/m.csv"))
    assert back.targets == ["arousal", "valence"] and back.label_policy == man.label_policy
    assert back.target_values(back.utterances[2]) == [4.5, 1.5]


def test_csv_targets_without_label_column(tmp_path, tone_writer):
    for i in range(3):
        _tone(tmp_path / f"x{i}.wav", tone_writer)
    (tmp_path / "t.csv").write_text("path,speaker,arousal\nx0.wav,s1,0.5\nx1.wav,s2,high\nx2.wav,s2,-1e-1\n")
    man = scan_corpus("csv", tmp_path / "t.csv", targets="arousal")
    assert [u.utt_id for u in man.utterances] == ["x0", "x2"] and man.targets == ["arousal"]
    assert "target arousal='high' is not a number" in man.problems[0].problem
    with pytest.raises(CorpusError, match="lacks column.*label.*targets=COLUMNS"):
        scan_corpus("csv", tmp_path / "t.csv")
    with pytest.raises(CorpusError, match="target column.*valence not in the header"):
        scan_corpus("csv", tmp_path / "t.csv", targets="valence")


def test_store_refuses_a_second_label_policy(arousal_csv, tmp_path):
    from parrot_ser.features.writer import _merge_manifest

    out = tmp_path / "store"
    out.mkdir()
    _merge_manifest(out, scan_corpus("csv", arousal_csv))
    assert Manifest.from_csv(out / "manifest.csv").label_policy["mode"] == "asis"
    with pytest.raises(FeatureStoreError, match="holds labels 'asis'.*new manifest has 'canonical'"):
        _merge_manifest(out, scan_corpus("csv", arousal_csv, labels="canonical"))


def test_cli_inspect_and_manifest_with_labels_options(arousal_csv, tmp_path):
    (tmp_path / "m.yaml").write_text("low: calm\n")
    r = runner.invoke(app, ["corpus", "inspect", str(arousal_csv), "--corpus", "csv", "--json", "--label-map",
                            str(tmp_path / "m.yaml"), "--corpus-option", "targets=arousal"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["labels"] == {"high": 2, "calm": 2, "neutral": 1}
    assert doc["label_policy"]["mode"] == "asis" and doc["targets"]["arousal"]["max"] == 5.0
    r = runner.invoke(app, ["corpus", "manifest", str(arousal_csv), "--corpus", "csv", "--labels", "canonical",
                            "-o", str(tmp_path / "out.csv")])
    assert r.exit_code == 0 and "labels: canonical (--labels canonical)" in r.output
    assert Manifest.from_csv(tmp_path / "out.csv").label_policy["mode"] == "canonical"


# --- MSP-Podcast ------------------------------------------------------------------------------------

def _msp_tree(root: Path, tone_writer) -> Path:
    rows = [("MSP-PODCAST_0001_0001.wav", "A", 5.2, 2.0, 5.0, "127", "Train"),
            ("MSP-PODCAST_0001_0002.wav", "C", 4.0, 3.0, 4.4, "127", "Train"),
            ("MSP-PODCAST_0002_0001.wav", "X", 3.8, 4.1, 3.9, "Unknown", "Train"),
            ("MSP-PODCAST_0002_0002.wav", "N", 4.0, 4.0, 4.0, "Unknown", "Test1"),
            ("MSP-PODCAST_0003_0001.wav", "H", 5.5, 6.0, 5.0, "230", "Development"),
            ("MSP-PODCAST_0004_0001.wav", "S", 2.1, 2.0, 3.0, "311", "Test1"),
            ("MSP-PODCAST_0005_0001.wav", "N", 4.0, 4.0, 4.0, "400", "Test2"),
            ("MSP-PODCAST_0006_0001.wav", "N", 4.0, 4.0, 4.0, "401", "Train")]  # no audio file
    for r in rows[:-1]:
        _tone(root / "Audios" / r[0], tone_writer)
    lines = ["FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"]
    lines += [f"{n},{c},{a},{v},{d},{s},Female,{sp}" for n, c, a, v, d, s, sp in rows]
    (root / "Labels").mkdir(parents=True)
    (root / "Labels/labels_consensus.csv").write_text("\n".join(lines) + "\n")
    return root


def test_msp_podcast_layout_splits_targets_and_unknown_speakers(tmp_path, tone_writer):
    man = scan_corpus("msp-podcast", _msp_tree(tmp_path, tone_writer))
    u = {x.utt_id: x for x in man.utterances}
    assert len(u) == 6 and man.targets == ["arousal", "valence", "dominance"]
    assert u["MSP-PODCAST_0001_0002"].label == "contempt"  # in the shared vocabulary now
    assert u["MSP-PODCAST_0002_0001"].label == ""  # X: no agreement, kept for its ratings
    assert man.target_values(u["MSP-PODCAST_0001_0001"]) == [5.2, 2.0, 5.0]
    assert {x.meta["split"] for x in man.utterances} == {"train", "dev", "test"}
    assert man.excluded == {"Split_Set Test2 (not the chosen test set 'test1')": 1}
    assert "not found under Audios" in man.problems[0].problem
    unknown = [x for x in man.utterances if is_unknown_speaker(x.speaker)]
    assert len(unknown) == 2 and len({x.speaker for x in unknown}) == 2  # not one speaker
    folds = make_folds([x.label for x in man.utterances], [x.speaker for x in man.utterances],
                       protocol="predefined", meta=[x.meta for x in man.utterances])
    rec = folds[0].describe([x.speaker for x in man.utterances])
    assert (rec["n_train"], rec["n_val"], rec["n_test"]) == (3, 1, 2)
    assert rec["n_train_unknown_speaker"] == 1 and rec["n_test_unknown_speaker"] == 1
    assert not any(is_unknown_speaker(s) for s in rec["train_speakers"] + rec["test_speakers"])
    t2 = scan_corpus("msp-podcast", tmp_path, test_set="Test2")
    assert sorted(x.utt_id for x in t2.utterances if x.meta["split"] == "test") == ["MSP-PODCAST_0005_0001"]
    r = runner.invoke(app, ["corpus", "inspect", str(tmp_path), "--corpus", "msp-podcast"])
    assert r.exit_code == 0 and "unknown speaker: 2 utterance(s), counted apart" in r.output
    assert "(unknown speaker)" in r.output


# --- EmoBox -------------------------------------------------------------------------------------------

def _emobox_tree(root: Path, tone_writer) -> Path:
    """EmoBox's layout for an Emo-DB-like set: speakers only in the file names, folds sharing speakers."""
    data = root / "data" / "emodb"
    keys = [("03a01Wa", "anger"), ("03a02Wb", "anger"), ("08a01Lc", "boredem"), ("08b03Lc", "boredem"),
            ("09a01Wa", "anger"), ("09b03La", "boredem")]
    rows = []
    for k, emo in keys:
        _tone(root / "downloads/emodb/wav" / f"{k}.wav", tone_writer)
        rows.append({"key": f"emodb-{k}", "dataset": "emodb", "wav": f"downloads/emodb/wav/{k}.wav", "emo": emo,
                     "channel": 1, "length": 0.05})
    data.mkdir(parents=True)
    (data / "emodb.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (data / "label_map.json").write_text(json.dumps({"anger": "Angry", "boredem": "Boredom"}))
    tests = {1: [0, 2, 4], 2: [1, 3, 5]}  # speaker 03 is on both sides of both folds
    for k, idx in tests.items():
        (data / f"fold_{k}").mkdir()
        test = [rows[i] for i in idx]
        train = [r for i, r in enumerate(rows) if i not in idx]
        for side, rs in (("train", train), ("test", test)):
            (data / f"fold_{k}" / f"emodb_{side}_fold_{k}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))
    return data


def test_emobox_corpus_folds_and_overlap(tmp_path, tone_writer):
    data = _emobox_tree(tmp_path, tone_writer)
    with pytest.raises(CorpusError, match="carry no speaker.*speaker_regex"):
        scan_corpus("emobox", data)
    man = scan_corpus("emobox", data, speaker_regex=r"^(\d\d)")
    assert len(man) == 6 and man.labels() == ["angry", "boredom"]  # 'boredem' through EmoBox's label map
    assert {u.original_label for u in man.utterances} == {"Angry", "Boredom"}
    assert {u.utt_id: u.meta["split"] for u in man.utterances}["emodb-03a02Wb"] == "2"
    labels, speakers, meta = ([u.label for u in man.utterances], [u.speaker for u in man.utterances],
                              [u.meta for u in man.utterances])
    with pytest.raises(LeakageError, match="--allow-speaker-overlap"):
        make_folds(labels, speakers, protocol="predefined", meta=meta, val_fraction=0)
    folds = make_folds(labels, speakers, protocol="predefined", meta=meta, val_fraction=0, allow_overlap=True)
    assert speaker_overlap(folds, speakers) == {"0": 3, "1": 3}
    assert folds[0].describe(speakers)["shared_speakers"] == ["03", "08", "09"]


def test_write_our_folds_in_emobox_format_and_read_them_back(tmp_path, tone_writer):
    data = _emobox_tree(tmp_path, tone_writer)
    man = scan_corpus("emobox", data, speaker_regex=r"^(\d\d)")
    ids = [u.utt_id for u in man.utterances]
    doc = {"format": "parrot-ser-folds/1", "seeds": {"0": [
        {"fold": 0, "train": [i for i in ids if "-03" in i or "-08" in i], "val": [], "test":
         [i for i in ids if "-09" in i]},
        {"fold": 1, "train": [i for i in ids if "-09" in i or "-08" in i], "val": [], "test":
         [i for i in ids if "-03" in i]}]}}
    written = write_emobox_folds(doc, man, tmp_path / "ours", "mine")
    assert (tmp_path / "ours/fold_2/mine_test_fold_2.jsonl") in written
    rows = read_jsonl(tmp_path / "ours/fold_1/mine_test_fold_1.jsonl")
    assert {r["speaker"] for r in rows} == {"09"} and rows[0]["emo"] == "angry"
    back = scan_corpus("emobox", tmp_path / "ours")  # the speaker field: no regex needed
    folds = make_folds([u.label for u in back.utterances], [u.speaker for u in back.utterances],
                       protocol="predefined", meta=[u.meta for u in back.utterances], val_fraction=0)
    assert speaker_overlap(folds, [u.speaker for u in back.utterances]) == {}  # ours are speaker-independent
    with pytest.raises(ConfigError, match="no seed 3"):
        write_emobox_folds(doc, man, tmp_path / "x", "mine", seed=3)


# --- dimensional metrics --------------------------------------------------------------------------

def test_ccc_against_the_direct_formula():
    rng = np.random.default_rng(0)
    t = rng.normal(3, 1, 50)
    p = 0.7 * t + rng.normal(0.5, 0.6, 50)
    direct = 2 * np.cov(t, p, bias=True)[0, 1] / (t.var() + p.var() + (t.mean() - p.mean()) ** 2)
    assert ccc(t, p) == pytest.approx(direct, rel=1e-12)
    assert ccc(t, t) == pytest.approx(1.0) and ccc(t, t + 1.0) < 1.0  # a bias lowers CCC, not r
    assert pearson(t, t + 1.0) == pytest.approx(1.0)
    c = t - t.mean()
    assert ccc(c, -c) == pytest.approx(-1.0)  # perfect disagreement around a shared mean
    assert ccc([1, 1], [1, 1]) == 0.0 and pearson([1, 1, 1], [1, 2, 3]) == 0.0


def test_regression_metrics_per_dimension_and_mean():
    t = np.array([[1.0, 5.0], [2.0, 4.0], [3.0, 3.0], [4.0, 2.0]])
    p = np.array([[1.5, 5.0], [2.5, 4.0], [3.5, 3.0], [4.5, 2.0]])
    m = compute_regression_metrics(t, p, ["arousal", "valence"])
    assert m["per_dim"]["arousal"]["mae"] == pytest.approx(0.5) and m["per_dim"]["valence"]["mae"] == 0.0
    assert m["per_dim"]["valence"]["ccc"] == pytest.approx(1.0)
    assert m["ccc"] == pytest.approx((m["per_dim"]["arousal"]["ccc"] + 1.0) / 2)
    assert m["mae"] == pytest.approx(0.25) and m["n"] == 4


def test_train_on_emobox_folds_refused_then_run_with_the_overlap_said(tmp_path, tone_writer):
    data = _emobox_tree(tmp_path, tone_writer)
    store = tmp_path / "feat"
    r = runner.invoke(app, ["extract", str(data), "--corpus", "emobox", "--corpus-option", r"speaker_regex=^(\d\d)",
                            "-e", "logmel", "--out", str(store), "--quiet"])
    assert r.exit_code == 0, r.output
    base = ["train", "--features", str(store), "--encoder", "logmel", "--model", "fcn", "--epochs", "1",
            "--protocol", "predefined", "--quiet"]
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "r0")])
    assert r.exit_code == 2 and "--allow-speaker-overlap" in r.output
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "r1"), "--allow-speaker-overlap"])
    assert r.exit_code == 0, r.output
    assert "NOT speaker-independent" in r.output and "fold 0: 3, fold 1: 3" in r.output
    res = json.loads((tmp_path / "r1/results.json").read_text())
    assert res["speaker_independent"] is False and res["speaker_overlap"] == {"0": {"0": 3, "1": 3}}
    assert res["folds"]["0"][0]["shared_speakers"] == ["03", "08", "09"]
    # our own folds of the same store, written in EmoBox's layout
    folds = tmp_path / "folds.json"
    r = runner.invoke(app, ["train", "--features", str(store), "--encoder", "logmel", "--model", "fcn", "--protocol",
                            "loso", "--folds-file", str(folds), "--folds-only", "--out", str(tmp_path / "r2")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["corpus", "emobox-folds", str(folds), "--manifest", str(store / "manifest.csv"),
                            "--out", str(tmp_path / "eb"), "--dataset", "emodb"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "eb").iterdir()) == ["emodb.jsonl", "fold_1", "fold_2", "fold_3",
                                                                    "label_map.json"]


def test_rows_without_a_label_left_out_of_classification_kept_for_multitask(tmp_path, tone_writer):
    rows = ["path,label,speaker,arousal"]
    for i in range(12):
        tone_writer(tmp_path / f"c{i}.wav", seconds=0.3, sr=16000, freq=150 + 40 * i)
        lab = ("" if i % 4 == 3 else ("calm" if i % 2 else "tense"))  # every 4th row: no label (IEMOCAP's xxx)
        rows.append(f"c{i}.wav,{lab},s{i % 4},{1 + i * 0.3:.1f}")
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    store = tmp_path / "feat"
    r = runner.invoke(app, ["extract", str(tmp_path / "t.csv"), "--corpus", "csv", "--corpus-option", "targets=arousal",
                            "-e", "logmel", "--out", str(store), "--quiet"])
    assert r.exit_code == 0, r.output
    base = ["train", "--features", str(store), "--encoder", "logmel", "--model", "fcn", "--epochs", "1", "--folds", "2",
            "--quiet"]
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "cls")])
    assert r.exit_code == 0, r.output
    cls = json.loads((tmp_path / "cls/results.json").read_text())
    assert cls["n_utterances"] == 9 and cls["label_selection"]["unlabelled_dropped"] == 3
    assert "3 row(s) without a label left out" in r.output
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "mt"), "--task", "multitask"])
    assert r.exit_code == 0, r.output
    mt = json.loads((tmp_path / "mt/results.json").read_text())
    assert mt["n_utterances"] == 12 and mt["label_selection"]["unlabelled_kept"] == 3
    assert sum(run["metrics"]["n"] for run in mt["runs"]) == 9  # classes scored on the labelled rows
    assert sum(run["metrics"]["regression"]["n"] for run in mt["runs"]) == 12
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "bad"), "--task", "regression", "--early-stop", "macro_f1"])
    assert r.exit_code == 2 and "does not apply to a regression run" in r.output
