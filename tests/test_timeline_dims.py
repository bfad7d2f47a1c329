"""Dimensions over time (issues 17 + 18): `analyze` with a multitask model (labels and dimensions) and a
regression-only model (dimensions, no label), on the real Emo-DB recording of test_timeline.

The models are tiny real runs (logmel + fcn, 2 folds, 2 epochs) on test_tasks_emodb's relabelled
subset, whose arousal / valence are DERIVED from the acted emotion (test targets, not a result)."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from parrot_ser.cli.main import app
from parrot_ser.inference import load_model
from parrot_ser.inference.timeline import TimelineAnalyzer, analyze_file
from parrot_ser.inference.writers import render, timeline_doc
from test_tasks_emodb import store  # noqa: F401  (fixture: the relabelled logmel store)
from test_timeline import recording  # noqa: F401  (fixture: clips with silences between them)

runner = CliRunner()
DIMS = ["arousal", "valence"]


def _bundle(store, out, task: str):  # noqa: F811
    r = runner.invoke(app, ["train", "--features", str(store), "--encoder", "logmel", "--model", "fcn", "--epochs",
                            "2", "--folds", "2", "--out", str(out / "run"), "--quiet", "--task", task])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["export", str(out / "run"), "--out", str(out / "bundle")])
    assert r.exit_code == 0, r.output
    return out / "bundle"


@pytest.fixture(scope="module")
def multitask(store, tmp_path_factory):  # noqa: F811
    return _bundle(store, tmp_path_factory.mktemp("mt"), "multitask")


@pytest.fixture(scope="module")
def regression(store, tmp_path_factory):  # noqa: F811
    return _bundle(store, tmp_path_factory.mktemp("reg"), "regression")


def test_multitask_windows_and_segments_carry_dimensions(multitask, recording):  # noqa: F811
    model = load_model(multitask, quiet=True)
    path, truth = recording
    tl = analyze_file(model, path, vad="silero", window=1.0)
    assert len(tl.regions) == len(truth) and tl.windows
    for w in tl.windows:
        assert set(w.dimensions) == set(DIMS) and w.label in model.labels
        assert w.label == max(w.probabilities, key=w.probabilities.__getitem__)  # argmax of labels only
        assert sum(w.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    # each window's values are the predictor's own for that audio (probabilities, then dimensions)
    from parrot_ser.audio import load_audio

    audio = load_audio(path, 16000, warn=False)
    w = tl.windows[0]
    row = model.probabilities([audio[int(round(w.start * 16000)):int(round(w.end * 16000))]])[0]
    np.testing.assert_allclose([*w.probabilities.values(), *w.dimensions.values()], row, atol=1e-5)
    # a segment's dimensions are the mean of its windows'
    for seg in tl.segments:
        inside = [x for x in tl.windows if x.region == seg.region and seg.start - 1e-6 <= x.start < seg.end]
        assert len(inside) == seg.n_windows
        for d in DIMS:
            assert seg.dimensions[d] == pytest.approx(np.mean([x.dimensions[d] for x in inside]), abs=1e-9)
    d = tl.to_dict()
    assert set(d["segments"][0]["dimensions"]) == set(DIMS) and "probabilities" in d["windows"][0]
    # smoothing averages the dimensions too
    sm = analyze_file(model, path, vad="silero", window=1.0, smooth=3)
    r0 = [x for x in tl.windows if x.region == 0]
    assert sm.windows[0].dimensions["arousal"] == pytest.approx(np.mean([x.dimensions["arousal"] for x in r0[:2]]))


def test_regression_only_model_gives_dimension_curves_and_speech_region_segments(regression, recording, tmp_path):  # noqa: F811
    model = load_model(regression, quiet=True)
    assert model.labels == [] and model.dims == DIMS
    path, truth = recording
    tl = analyze_file(model, path, vad="silero", window=1.0)
    # no label: one segment per speech region, spanning it, with the mean of its windows' dimensions
    assert len(tl.segments) == len(tl.regions) == len(truth)
    for seg, (s, e) in zip(tl.segments, tl.regions):
        assert seg.label is None and seg.probabilities == {} and set(seg.dimensions) == set(DIMS)
        assert seg.start == pytest.approx(s) and seg.end == pytest.approx(e)
    assert sum(s.n_windows for s in tl.segments) == len(tl.windows) > len(truth)
    d = tl.to_dict()["segments"][0]
    assert d["label"] is None and "probabilities" not in d and set(d["dimensions"]) == set(DIMS)
    doc = timeline_doc(str(regression), [], [tl.to_dict()], dims=DIMS)
    rows = list(csv.DictReader(io.StringIO(render(doc, "csv").decode())))
    assert {"arousal", "valence"} <= set(rows[0]) and not any(k.startswith("prob_") for k in rows[0])
    assert sum(r["level"] == "segment" for r in rows) == len(truth) and all(r["label"] == "" for r in rows)
    png = render(doc, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 15_000
    (tmp_path / "reg.png").write_bytes(png)


def test_cli_service_and_stream_carry_dimensions(multitask, regression, recording, tmp_path):  # noqa: F811
    from fastapi.testclient import TestClient

    from parrot_ser.service.app import create_app

    path, truth = recording
    # CLI: printed timeline, --out JSON/CSV/PNG, and the stream's lines
    res = runner.invoke(app, ["analyze", str(regression), str(path)])
    assert res.exit_code == 0, res.output
    assert "arousal" in res.output and "valence" in res.output and "None" not in res.output
    res = runner.invoke(app, ["analyze", str(multitask), str(path), "--out", str(tmp_path / "o"), "--window", "1"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "o" / f"{path.stem}.timeline.json").read_text())
    assert doc["dims"] == DIMS and set(doc["recordings"][0]["windows"][0]["dimensions"]) == set(DIMS)
    header = (tmp_path / "o" / f"{path.stem}.timeline.csv").read_text().splitlines()[0].split(",")
    assert header[-3:] == ["arousal", "valence", "error"] and "prob_high" in header
    res = runner.invoke(app, ["analyze", str(regression), "--stream"], input=path.read_bytes())
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == len(truth) and all(x["label"] is None and set(x["dimensions"]) == set(DIMS) for x in lines)
    # service: /v1/analyze answers with the dimensions
    client = TestClient(create_app(load_model(multitask, quiet=True), vad="silero"))
    r = client.post("/v1/analyze", files={"file": (path.name, path.read_bytes(), "audio/wav")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dims"] == DIMS and all(set(s["dimensions"]) == set(DIMS) for s in body["recordings"][0]["segments"])


def test_stream_of_a_regression_model_equals_the_file(regression, recording):  # noqa: F811
    model = load_model(regression, quiet=True)
    path, _ = recording
    whole = analyze_file(model, path, vad="silero")
    from parrot_ser.audio import load_audio

    audio = load_audio(path, 16000, warn=False)
    an = TimelineAnalyzer(model, vad="silero", eager=True)
    got = []
    for i in range(0, len(audio), 1600):
        got += an.feed(audio[i:i + 1600])
    got += an.finish()
    assert [(s.start, s.end) for s in got] == [(s.start, s.end) for s in whole.segments]
    for a, b in zip(got, whole.segments):
        assert a.dimensions == pytest.approx(b.dimensions, abs=1e-5)
