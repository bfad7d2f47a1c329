"""`parrot-ser predict` / `export` on the real exported bundle of test_bundle's tiny run, the Python
API's input forms, and the windowing plan."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from parrot_ser.cli.main import app
from parrot_ser.errors import ConfigError, EmptyAudioError
from parrot_ser.inference import load_model, window_spans
from test_bundle import build_run  # the same cached real run + bundle (one build per session)

runner = CliRunner()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, emodb_root) -> Path:
    return build_run(str(tmp_path_factory.getbasetemp() / "h7_run"), str(emodb_root))[1]


@pytest.fixture
def folder(tmp_path, emodb_root) -> Path:
    d = tmp_path / "audio"
    (d / "sub").mkdir(parents=True)
    shutil.copy(emodb_root / "wav" / "03a01Wa.wav", d / "a.wav")
    shutil.copy(emodb_root / "wav" / "08a01Na.wav", d / "sub" / "b.wav")
    (d / "sub" / "broken.wav").write_bytes((emodb_root / "wav" / "03a01Wa.wav").read_bytes()[:40])
    (d / "notes.txt").write_text("not scanned: not an audio suffix")
    return d


def test_window_spans():
    sr = 10
    assert window_spans(150, sr) == [(0, 150)]  # 15 s <= 20 s: whole
    auto = window_spans(250, sr)  # 25 s: 10 s windows, 5 s hop, last aligned to the end
    assert auto == [(0, 100), (50, 150), (100, 200), (150, 250)]
    assert window_spans(250, sr, window=0) == [(0, 250)]
    assert window_spans(25, sr, window=1.0, hop=1.0) == [(0, 10), (10, 20), (15, 25)]
    with pytest.raises(ConfigError):
        window_spans(25, sr, window=1.0, hop=0)


def test_cli_folder_with_a_corrupt_file(tiny_bundle, folder, tmp_path):
    out_csv = tmp_path / "pred.csv"
    r = runner.invoke(app, ["predict", str(tiny_bundle), str(folder), "--json", "--csv", str(out_csv)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [Path(p["path"]).name for p in doc["predictions"]] == ["a.wav", "b.wav"]
    assert all(p["label"] in doc["labels"] for p in doc["predictions"])
    assert len(doc["errors"]) == 1 and "broken.wav" in doc["errors"][0]["path"]
    assert "corrupt" in doc["errors"][0]["error"]
    assert doc["summary"]["predicted"] == 2 and doc["summary"]["failed"] == 1
    rows = list(csv.DictReader(open(out_csv, encoding="utf-8")))
    assert [r["window"] for r in rows] == ["all", "all", ""] and rows[2]["error"]
    # Same numbers as the Python API.
    api = load_model(tiny_bundle).predict(folder / "a.wav")[0]
    assert doc["predictions"][0]["probabilities"] == pytest.approx(api.probabilities, abs=1e-5)


def test_cli_all_bad_exits_1_and_bad_bundle_exits_2(tiny_bundle, folder, tmp_path):
    r = runner.invoke(app, ["predict", str(tiny_bundle), str(folder / "sub" / "broken.wav"), str(tmp_path / "nope.wav")])
    assert r.exit_code == 1
    assert "broken.wav" in r.stderr and "nope.wav: file not found" in r.stderr
    r = runner.invoke(app, ["predict", str(tmp_path), str(folder)])
    assert r.exit_code == 2 and "bundle.json: missing" in r.stderr and "Traceback" not in r.output


def test_cli_windows_and_manifest(tiny_bundle, folder, tmp_path):
    man = tmp_path / "m.csv"
    man.write_text("path,label,speaker\naudio/a.wav,angry,03\naudio/sub/b.wav,neutral,08\n")
    r = runner.invoke(app, ["predict", str(tiny_bundle), str(man), "--json", "--window", "1", "--hop", "0.5"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    first = doc["predictions"][0]
    assert first["reference"] == "angry" and first["utt_id"] == "audio/a"
    assert [(w["start"], w["end"]) for w in first["windows"]] == [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0)]
    mean = {k: np.mean([w["probabilities"][k] for w in first["windows"]]) for k in doc["labels"]}
    assert first["probabilities"] == pytest.approx(mean, abs=1e-5)
    assert doc["summary"]["accuracy_vs_manifest"] in (0.0, 50.0, 100.0)


def test_cli_export(tiny_bundle, tmp_path):
    run_dir = tiny_bundle.parent / "run"
    # Default: one model refit on all the data (issue 20, item 2: a 15-model ensemble was 15x the
    # size and the prediction time); --ensemble keeps every fold x seed model.
    r = runner.invoke(app, ["export", str(run_dir), "--out", str(tmp_path / "b"), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ensemble"] == {**doc["ensemble"], "kind": "refit", "n_members": 1}
    assert "exported refit (1 model(s), fcn, logmel)" in r.stderr
    assert "One model trained on all the run's data" in (tmp_path / "b" / "README.md").read_text()
    r = runner.invoke(app, ["export", str(run_dir), "--out", str(tmp_path / "e"), "--ensemble", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["ensemble"]["n_members"] == 2
    assert "exported cv-ensemble (2 model(s), fcn, logmel)" in r.stderr
    r = runner.invoke(app, ["export", str(tmp_path), "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "run.json: not found" in r.stderr


def test_api_waveform_inputs(tiny_bundle, emodb_root):
    import soundfile as sf

    pred = load_model(tiny_bundle)
    path = emodb_root / "wav" / "03a01Wa.wav"
    x, sr = sf.read(path, dtype="float32")
    from_path = pred.predict(str(path))[0]
    from_wave = pred.predict(x, sample_rate=sr)[0]
    assert from_wave.path is None and from_wave.label == from_path.label
    assert from_wave.probabilities == pytest.approx(from_path.probabilities, abs=1e-5)
    two = pred.predict([x, x[: sr]], sample_rate=sr)
    assert len(two) == 2 and two[0].probabilities == pytest.approx(from_wave.probabilities, abs=1e-6)
    with pytest.raises(ConfigError, match="sample_rate"):
        pred.predict(x)
    with pytest.raises(ConfigError, match="1-D"):
        pred.predict(np.stack([x, x]), sample_rate=sr)
    with pytest.raises(EmptyAudioError):
        pred.predict(np.zeros(0, np.float32), sample_rate=sr)


def test_a_file_the_encoder_refuses_does_not_sink_its_batch():
    import torch

    from parrot_ser.cli.inference import _predict_chunk
    from parrot_ser.encoders.base import EncodedUtterance
    from parrot_ser.errors import AudioError
    from parrot_ser.inference.inputs import InputItem
    from parrot_ser.inference.predictor import Predictor

    class PickyEncoder:  # like an HF encoder refusing clips shorter than its conv receptive field
        sample_rate = 16000

        def encode(self, waves, *, frames=False):
            if any(len(w) < 400 for w in waves):
                raise AudioError(None, "too short")
            return [EncodedUtterance(np.array([[w.mean(), w.std()]], np.float32)) for w in waves]

    class Head(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x.pooled[0], -x.pooled[0]], dim=1)[:, :3]

    pred = Predictor(["a", "b", "c"], [PickyEncoder()], [Head()])
    items = [InputItem(Path(f"{i}.wav")) for i in range(3)]
    waves = [np.ones(1600, np.float32) * 0.1, np.ones(100, np.float32), np.ones(1600, np.float32) * -0.1]
    errors: list[dict] = []
    res = _predict_chunk(pred, items, waves, errors, window=None, hop=None, batch_size=8)
    assert [it.path.name for it, _ in res] == ["0.wav", "2.wav"]
    assert errors == [{"path": "1.wav", "error": "1.wav: audio error (too short)"}]
