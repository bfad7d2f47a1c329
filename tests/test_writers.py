"""The prediction-writer registry (inference/writers.py): one place for output formats, shared by the
CLI and the service."""

from __future__ import annotations

import csv
import io
import json

import pytest

from parrot_ser.errors import ConfigError
from parrot_ser.inference.writers import WRITERS, formats, predictions_doc, render, timeline_doc

LABELS = ["angry", "neutral"]


def _rec(path, label, p_angry, start=0.0, end=2.0, **extra):
    return {"path": path, "label": label, "probabilities": {"angry": p_angry, "neutral": 1 - p_angry},
            "start": start, "end": end, **extra}


def test_predictions_json_and_csv_agree():
    rec = _rec("a.wav", "angry", 0.8, end=30.0, utt_id="a", reference="angry",
               windows=[_rec(None, "angry", 0.9, 0, 15, window=0), _rec(None, "neutral", 0.3, 15, 30, window=1)])
    doc = predictions_doc("m", LABELS, [rec], errors=[{"path": "b.wav", "error": "b.wav: not audio"}],
                          warnings=["w"])
    assert json.loads(render(doc, "json")) == doc
    rows = list(csv.DictReader(io.StringIO(render(doc, "csv").decode())))
    assert [r["window"] for r in rows] == ["all", "0", "1", ""]
    assert rows[2]["label"] == "neutral" and float(rows[2]["prob_angry"]) == pytest.approx(0.3)
    assert rows[3]["path"] == "b.wav" and rows[3]["error"] == "b.wav: not audio"


def test_timeline_csv_has_segments_then_windows():
    tl = {"path": "long.wav", "duration": 4.0, "regions": [[0.0, 4.0]],
          "segments": [_rec(None, "angry", 0.7, 0, 4)],
          "windows": [_rec(None, "angry", 0.8, 0, 2), _rec(None, "angry", 0.6, 2, 4)]}
    rows = list(csv.DictReader(io.StringIO(render(timeline_doc("m", LABELS, [tl]), "csv").decode())))
    assert [(r["level"], r["start"], r["end"]) for r in rows] == [
        ("segment", "0.000", "4.000"), ("window", "0.000", "2.000"), ("window", "2.000", "4.000")]


def test_unknown_or_unfit_format_is_one_line_naming_the_choices():
    with pytest.raises(ConfigError, match="choose one of csv, json"):
        render(predictions_doc("m", LABELS, []), "xml")
    with pytest.raises(ConfigError, match="png"):  # a picture of predictions does not exist
        render(predictions_doc("m", LABELS, []), "png")
    assert "png" in formats("timeline") and "png" not in formats("predictions")
    assert set(WRITERS.names()) >= {"json", "csv", "png"}


def test_service_answers_csv_through_the_same_writer():
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from parrot_ser.service.app import create_app
    from test_service import make_predictor, wav_bytes

    with TestClient(create_app(make_predictor())) as c:
        r = c.post("/v1/predict?format=csv", files={"file": ("t.wav", wav_bytes(), "audio/wav")})
        j = c.post("/v1/predict", files={"file": ("t.wav", wav_bytes(), "audio/wav")}).json()
        bad = c.post("/v1/predict?format=xml", files={"file": ("t.wav", wav_bytes(), "audio/wav")})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows[0]["path"] == "t.wav" and rows[0]["label"] == j["label"]
    assert float(rows[0][f"prob_{j['label']}"]) == pytest.approx(j["probabilities"][j["label"]], abs=1e-6)
    assert bad.status_code == 422 and "csv, json" in bad.json()["detail"]
