"""End to end on the real Emo-DB copy with the corpus's own labels replaced: a CSV manifest with three
arousal levels (low / neutral / high) and continuous arousal / valence targets DERIVED from the acted
emotion (a test target, NOT a real result: the note travels into every output), through corpus
inspect, extract, train, grid, export, predict, the service and ONNX; then regression and multitask
runs with logmel + fcn on the same subset."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from parrot_ser.cli.main import app

runner = CliRunner()
LEVEL = {"W": "high", "F": "high", "A": "high", "N": "neutral", "L": "low", "T": "low", "E": "neutral"}
# Derived from the acted emotion (Emo-DB has no ratings): arousal / valence on a 1-5 scale, plus a
# per-utterance offset from the sentence code so the target is not constant within a class.
AROUSAL = {"W": 4.5, "F": 4.0, "A": 4.0, "N": 2.5, "L": 1.5, "T": 1.5, "E": 3.0}
VALENCE = {"W": 1.5, "F": 4.5, "A": 1.5, "N": 3.0, "L": 2.5, "T": 1.5, "E": 1.5}
NOTE = "arousal/valence derived from the acted emotion for tests, NOT a real result"
PER_CELL = 2  # utterances per (speaker, emotion): 10 speakers x 7 emotions x 2 = at most 140 clips


def _write_manifest(emodb_root: Path, path: Path) -> Path:
    count: dict = defaultdict(int)
    rows = []
    for wav in sorted((emodb_root / "wav").glob("*.wav")):
        spk, emo = wav.name[:2], wav.name[5]
        if count[(spk, emo)] >= PER_CELL:
            continue
        count[(spk, emo)] += 1
        jitter = (int(wav.name[3:5]) % 5 - 2) * 0.1
        rows.append([str(wav), LEVEL[emo], spk, f"{AROUSAL[emo] + jitter:.2f}", f"{VALENCE[emo] - jitter:.2f}"])
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "speaker", "arousal", "valence"])
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def store(emodb_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("relabelled")
    table = _write_manifest(emodb_root, root / "levels.csv")
    r = runner.invoke(app, ["corpus", "inspect", str(table), "--corpus", "csv", "--json", "--corpus-option",
                            "targets=arousal,valence"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert set(doc["labels"]) == {"low", "neutral", "high"} and doc["label_policy"]["mode"] == "asis"
    assert "labels: the data's own" in r.stderr and doc["targets"]["arousal"]["max"] <= 4.7
    out = root / "store"
    r = runner.invoke(app, ["extract", str(table), "--corpus", "csv", "--corpus-option", "targets=arousal,valence",
                            "--corpus-option", f"note={NOTE}", "-e", "logmel", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    return out


def _train(store: Path, out: Path, *extra: str) -> dict:
    r = runner.invoke(app, ["train", "--features", str(store), "--encoder", "logmel", "--model", "fcn", "--epochs", "4",
                            "--folds", "5", "--out", str(out), "--quiet", *extra])
    assert r.exit_code == 0, r.output
    assert NOTE in r.output  # the derived-target note is printed with every run on this store
    return json.loads((out / "results.json").read_text())


def test_own_labels_through_train_grid_export_predict_service_onnx(store, tmp_path, emodb_root):
    res = _train(store, tmp_path / "run")
    assert res["classes"] == ["high", "low", "neutral"] and res["task"]["kind"] == "classification"
    assert res["headline"]["accuracy"]["mean"] > 100 / 3 + 5  # above chance for three levels
    assert any(NOTE in w for w in res["warnings"])
    rows = list(csv.DictReader(open(tmp_path / "run" / "predictions.csv", encoding="utf-8")))
    assert {r["label"] for r in rows} == {"high", "low", "neutral"} and "prob_low" in rows[0]

    r = runner.invoke(app, ["grid", "--features", str(store), "--encoders", "logmel", "--models", "fcn,cnn",
                            "--epochs", "2", "--folds", "5", "--out", str(tmp_path / "grid"), "--quiet"])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "grid" / "table.md").read_text()
    assert "UA (balanced accuracy)" in md and NOTE in md

    bundle = tmp_path / "bundle"
    r = runner.invoke(app, ["export", str(tmp_path / "run"), "--out", str(bundle), "--onnx"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((bundle / "config.json").read_text())
    assert cfg["id2label"] == {"0": "high", "1": "low", "2": "neutral"}
    assert json.loads((bundle / "onnx" / "onnx.json").read_text())["labels"] == ["high", "low", "neutral"]
    assert NOTE in (bundle / "README.md").read_text()

    # ground truth the model does not know is reported, not dropped
    probe = tmp_path / "probe.csv"
    probe.write_text("path,label,speaker\n" + "".join(f"{emodb_root / 'wav' / n},{lab},x\n" for n, lab in
                                                      (("03a01Wa.wav", "high"), ("03a01Nc.wav", "calm"))))
    r = runner.invoke(app, ["predict", str(bundle), str(probe), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert {p["label"] for p in doc["predictions"]} <= {"high", "low", "neutral"}
    assert doc["summary"]["unknown_reference_labels"] == {"calm": 1} and doc["summary"]["n_scored"] == 1
    assert "model does not know, not scored: calm x1" in r.stderr

    from fastapi.testclient import TestClient

    from parrot_ser.service.app import create_app

    with TestClient(create_app(str(bundle))) as c:
        assert c.get("/v1/labels").json()["labels"] == ["high", "low", "neutral"]
        body = c.post("/v1/predict", files={"file": ("a.wav", (emodb_root / "wav" / "03a01Wa.wav").read_bytes(),
                                                     "audio/wav")}).json()
    assert body["label"] in {"high", "low", "neutral"} and set(body["probabilities"]) == {"high", "low", "neutral"}


def test_label_map_and_classes_in_train(store, tmp_path):
    (tmp_path / "map.yaml").write_text("neutral: calm\n")
    res = _train(store, tmp_path / "run", "--label-map", str(tmp_path / "map.yaml"), "--classes", "high,calm")
    assert res["classes"] == ["calm", "high"]
    sel = res["label_selection"]
    assert sel["dropped"] and set(sel["dropped"]) == {"low"} and sel["label_map"] == {"neutral": "calm"}
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["config"]["classes"] == ["high", "calm"] and run["config"]["label_map"] == {"neutral": "calm"}


def test_regression_run_export_predict_service_onnx(store, tmp_path, emodb_root):
    res = _train(store, tmp_path / "run", "--task", "regression")
    assert res["classes"] == [] and res["task"]["dims"] == ["arousal", "valence"]
    ccc = res["headline"]["ccc"]["mean"]
    assert ccc > 0.3, ccc  # the derived arousal is easy on logmel (NOT a real result)
    assert {"ccc_arousal", "ccc_valence", "pearson", "mae"} <= set(res["headline"])
    assert all(r["monitor"] == "val_ccc" for r in res["runs"])
    # fcn on logmel is a small head: --batched auto stacks the 5 folds (vmap), dimensional tasks too
    assert [r["timings"]["training"] for r in res["runs"]] == ["batched"] * 5
    assert (tmp_path / "run" / "scatter.png").stat().st_size > 5000
    assert not (tmp_path / "run" / "confusion.png").exists()
    rows = list(csv.DictReader(open(tmp_path / "run" / "predictions.csv", encoding="utf-8")))
    assert "label" not in rows[0] and {"true_arousal", "pred_arousal", "true_valence"} <= set(rows[0])
    bundle = tmp_path / "bundle"
    r = runner.invoke(app, ["export", str(tmp_path / "run"), "--out", str(bundle), "--onnx"])
    assert r.exit_code == 0, r.output
    import parrot_ser

    model = parrot_ser.load_model(bundle)
    wav = emodb_root / "wav" / "03a01Wa.wav"
    pred = model.predict(wav)[0]
    assert pred.label is None and set(pred.dimensions) == {"arousal", "valence"}
    assert 0.0 < pred.dimensions["arousal"] < 7.0  # the data's own scale, not z-scores
    assert "label" not in pred.to_dict()
    # the HF pipeline shape: a regression head's outputs as scores (not an empty list)
    assert model.pipeline(wav) == [{"label": d, "score": pred.dimensions[d]} for d in ("arousal", "valence")]
    assert model.pipeline(wav, top_k=1) == [{"label": "arousal", "score": pred.dimensions["arousal"]}]
    onnx = json.loads((bundle / "onnx" / "onnx.json").read_text())
    assert onnx["dims"] == ["arousal", "valence"] and "arousal, valence" in onnx["files"]["head.onnx"]["output"]
    import onnxruntime as ort

    sess = ort.InferenceSession(str(bundle / "onnx" / "head.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"pooled_0": model.features([model_wave(wav, model)]).pooled[0].numpy()})[0][0]
    assert np.allclose(got, [pred.dimensions["arousal"], pred.dimensions["valence"]], atol=1e-4)

    from fastapi.testclient import TestClient

    from parrot_ser.service.app import create_app

    with TestClient(create_app(str(bundle))) as c:
        body = c.post("/v1/predict", files={"file": ("a.wav", wav.read_bytes(), "audio/wav")}).json()
        schema = c.get("/openapi.json").json()["components"]["schemas"]["PredictOut"]
    assert "label" not in body and body["dimensions"]["arousal"] == pytest.approx(pred.dimensions["arousal"], abs=1e-4)
    # one pipeline shape everywhere: the API's pipeline(), the service's scores, predict --json's scores
    assert [s["label"] for s in body["scores"]] == ["arousal", "valence"]
    assert body["scores"][1]["score"] == pytest.approx(pred.dimensions["valence"], abs=1e-4)
    assert "regression-only" in schema["properties"]["label"]["description"]
    r = runner.invoke(app, ["predict", str(bundle), str(wav), "--json"])
    assert r.exit_code == 0 and "arousal" in json.loads(r.stdout)["predictions"][0]["dimensions"]
    assert json.loads(r.stdout)["predictions"][0]["scores"] == [
        {"label": d, "score": round(pred.dimensions[d], 6)} for d in ("arousal", "valence")]


def model_wave(path: Path, model) -> np.ndarray:  # noqa: ANN001
    from parrot_ser.audio import load_audio

    return load_audio(path, model.sample_rate)


def test_multitask_run_and_bundle(store, tmp_path, emodb_root):
    res = _train(store, tmp_path / "run", "--task", "multitask")
    assert res["classes"] == ["high", "low", "neutral"] and res["task"]["dims"] == ["arousal", "valence"]
    assert {"accuracy", "ua", "macro_f1", "ccc"} <= set(res["headline"])
    assert all(r["monitor"] == "val_f1_ccc" for r in res["runs"])
    assert [r["timings"]["training"] for r in res["runs"]] == ["batched"] * 5
    assert (tmp_path / "run" / "scatter.png").is_file() and (tmp_path / "run" / "confusion.png").is_file()
    bundle = tmp_path / "bundle"
    r = runner.invoke(app, ["export", str(tmp_path / "run"), "--out", str(bundle)])
    assert r.exit_code == 0, r.output
    import parrot_ser

    model = parrot_ser.load_model(bundle)
    pred = model.predict(emodb_root / "wav" / "03a01Wa.wav")[0]
    assert pred.label in {"high", "low", "neutral"} and set(pred.dimensions) == {"arousal", "valence"}
    assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    # the timeline of a multitask model is one of its labels (its dimensions are left out of the argmax)
    tl = model.analyze(emodb_root / "wav" / "03a01Wa.wav", vad="energy")
    assert tl.windows and {w.label for w in tl.windows} <= {"high", "low", "neutral"}
