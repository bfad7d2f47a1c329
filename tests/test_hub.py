"""Hugging Face conventions: config.json + model card written by export, load from a folder and from
a repo id in the local HF cache (and a one-line error when neither), save_pretrained, the folder
push_to_hub would upload (no network: HfApi is replaced by a recorder), and the audio-classification
pipeline shape in the API, the CLI and the HTTP service. Uses the real tiny Emo-DB run of
test_bundle.py (logmel + fcn, 2 speaker folds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import parrot_ser
from parrot_ser.cli.main import app
from parrot_ser.errors import BundleError
from parrot_ser.inference.bundle import verify_bundle
from parrot_ser.inference.hub import hub_files, model_card
from parrot_ser.inference.predictor import Predictor
from test_bundle import LABELS, build_run

WAV = "03a01Wa.wav"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, emodb_root) -> tuple[Path, Path]:
    return build_run(str(tmp_path_factory.getbasetemp() / "h7_run"), str(emodb_root))


def _fake_cache(cache: Path, repo_id: str, bundle: Path, files: list[str]) -> Path:
    """The huggingface_hub cache layout (models--owner--name/{refs/main, snapshots/<commit>/...}) as
    hf_hub_download leaves it, filled with the bundle's files."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    for rel in files:
        (snap / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(bundle / rel, snap / rel)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snap


def test_export_writes_config_and_model_card(tiny_run):
    from huggingface_hub import ModelCard

    run_dir, bundle = tiny_run
    doc = verify_bundle(bundle)
    assert "config.json" in doc["files"]  # hashed: an edit is caught like a weight change
    cfg = json.loads((bundle / "config.json").read_text())
    assert cfg["model_type"] == "parrot-ser" and cfg["num_labels"] == len(LABELS)
    assert cfg["id2label"] == {str(i): lab for i, lab in enumerate(LABELS)}
    assert cfg["label2id"] == {lab: i for i, lab in enumerate(LABELS)}
    assert cfg["encoders"][0]["name"] == "logmel" and cfg["encoders"][0]["random_init"] is False
    assert cfg["head"]["model"] == "fcn" and cfg["head"]["config"]["epochs"] == 4
    card = ModelCard.load(bundle / "README.md")  # the hub's own parser
    assert card.data.library_name == "parrot-ser" and card.data.pipeline_tag == "audio-classification"
    assert {"speech-emotion-recognition", "fcn", "logmel"} <= set(card.data.tags)
    results = json.loads((run_dir / "results.json").read_text())
    by_type = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert by_type["accuracy"] == pytest.approx(results["headline"]["accuracy"]["mean"], abs=0.01)
    assert by_type["f1"] == pytest.approx(results["headline"]["macro_f1"]["mean"], abs=0.01)
    text = card.text
    assert "emodb" in text and "## Limitations" in text and "## Intended use" in text
    assert "no weights (handcrafted features)" in text and "UNTRAINED" not in text
    # parrot-ser is not on PyPI: the card says how to install it (issue 20, item 4)
    assert "pip install parrot-ser" not in text and "not published on PyPI" in text and "pip install -e ." in text
    for r in results["runs"]:  # the per-fold table holds every member's own test numbers
        assert f"| {r['seed']} | {r['fold']} | {r['best_epoch']} | {r['metrics']['accuracy']:.2f} |" in text


def test_model_card_flags_untrained_encoders(tiny_run):
    doc = verify_bundle(tiny_run[1])
    doc["encoders"] = [dict(doc["encoders"][0], name="ssam-tiny", random_init=True, seed=3)]
    card = model_card(doc, "emodb")
    assert "untrained-encoders" in card.split("---")[1]  # a front-matter tag
    assert "WARNING: UNTRAINED ENCODER(S): ssam-tiny" in card and "random init, seed 3" in card


def test_load_from_folder_and_from_a_cached_repo_id(tiny_run, emodb_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bundle = tiny_run[1]
    wav = str(emodb_root / "wav" / WAV)
    ref = parrot_ser.load_model(bundle).predict(wav)[0].probabilities
    snap = _fake_cache(tmp_path / "hub", "acme/ser-logmel", bundle, hub_files(bundle))
    m = parrot_ser.load_model("acme/ser-logmel", cache_dir=tmp_path / "hub")
    assert m.bundle_root == snap and m.predict(wav)[0].probabilities == pytest.approx(ref, abs=1e-7)
    m2 = Predictor.from_pretrained("acme/ser-logmel", cache_dir=tmp_path / "hub")
    assert m2.labels == list(LABELS)


def test_missing_model_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BundleError) as e:
        parrot_ser.load_model("acme/not-there", cache_dir=tmp_path / "hub")
    msg = str(e.value)
    assert "\n" not in msg and "acme/not-there" in msg and "not in the local HF cache" in msg
    monkeypatch.delenv("HF_HUB_OFFLINE")  # the default is offline too: no hub call, the same error
    monkeypatch.delenv("PARROT_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(BundleError, match="nothing is downloaded unless asked"):
        parrot_ser.load_model("acme/not-there", cache_dir=tmp_path / "hub")
    with pytest.raises(BundleError, match="model bundle folder not found"):
        parrot_ser.load_model(str(tmp_path / "nope"))
    r = CliRunner().invoke(app, ["predict", "acme/not-there", "x.wav"], env={"HF_HUB_OFFLINE": "1",
                                                                          "HF_HUB_CACHE": str(tmp_path)})
    assert r.exit_code == 2 and "not in the local HF cache" in r.stderr and "Traceback" not in r.output


def test_save_pretrained_copies_a_verified_bundle(tiny_run, tmp_path):
    m = parrot_ser.load_model(tiny_run[1])
    out = m.save_pretrained(tmp_path / "copy")
    assert sorted(hub_files(out)) == sorted(hub_files(tiny_run[1]))
    assert (out / "README.md").is_file()
    with pytest.raises(BundleError, match="not an empty folder"):
        m.save_pretrained(tmp_path / "copy")
    cfg = out / "config.json"
    cfg.write_text(cfg.read_text().replace('"angry"', '"furious"'))
    with pytest.raises(BundleError, match="config.json: sha256"):
        parrot_ser.load_model(out)


def test_push_to_hub_uploads_exactly_the_bundle(tiny_run, tmp_path, monkeypatch):
    import huggingface_hub

    calls = {}

    class Recorder:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, **kw):
            calls["create"] = (repo_id, kw)

        def upload_folder(self, **kw):
            calls["upload"] = kw
            return "commit-url"

    monkeypatch.setattr(huggingface_hub, "HfApi", Recorder)
    bundle = tiny_run[1]
    (bundle / "notes.txt").write_text("a stray file in the folder is not uploaded")
    try:
        m = parrot_ser.load_model(bundle)
        assert m.push_to_hub("acme/ser-logmel", private=True, token="t") == "commit-url"
    finally:
        (bundle / "notes.txt").unlink()
    up = calls["upload"]
    assert calls["create"] == ("acme/ser-logmel", {"private": True, "exist_ok": True, "repo_type": "model"})
    assert Path(up["folder_path"]) == bundle and up["repo_id"] == "acme/ser-logmel"
    files = up["allow_patterns"]
    assert {"bundle.json", "config.json", "README.md"} <= set(files) and "notes.txt" not in files
    assert any(f.startswith("members/") for f in files)
    # What would be uploaded is a complete bundle on its own.
    only = tmp_path / "uploaded"
    for rel in files:
        (only / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(bundle / rel, only / rel)
    assert parrot_ser.load_model(only).labels == list(LABELS)


def test_pipeline_shape_in_api_cli_and_http(tiny_run, emodb_root):
    m = parrot_ser.load_model(tiny_run[1])
    wav = str(emodb_root / "wav" / WAV)
    out = m.pipeline(wav)
    assert [set(d) for d in out] == [{"label", "score"}] * len(LABELS)
    assert [d["score"] for d in out] == sorted((d["score"] for d in out), reverse=True)
    probs = m.predict(wav)[0].probabilities
    assert {d["label"]: d["score"] for d in out} == pytest.approx(probs)
    assert m(wav, top_k=1) == out[:1] and len(m([wav, wav])) == 2
    r = CliRunner().invoke(app, ["predict", str(tiny_run[1]), wav, "--json"])
    assert r.exit_code == 0, r.output
    scores = json.loads(r.stdout)["predictions"][0]["scores"]
    assert [d["label"] for d in scores] == [d["label"] for d in out]

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from parrot_ser.service.app import create_app

    with TestClient(create_app(m)) as c:
        body = c.post("/v1/predict", files={"file": (WAV, open(wav, "rb").read(), "audio/wav")}).json()
    assert [d["label"] for d in body["scores"]] == [d["label"] for d in out]
    assert body["scores"][0]["score"] == pytest.approx(out[0]["score"], abs=1e-5)
