"""`parrot-ser export --onnx`: head and audio -> probabilities graphs; onnxruntime matches PyTorch
within 1e-4 on real Emo-DB files (logmel bundle of test_bundle.py, a tiny random-init HuBERT
bundle, a random-init SSAM bundle); the graph-friendly front ends (DFT-as-conv STFT, HF normalisation,
Whisper log-mel, SSAM chunking + the unrolled out-of-place scan) reproduce the encoders' features; an SSAMBA
bundle gets head.onnx only, a batch-dependent head none."""

from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")
import onnxruntime as ort  # noqa: E402

import parrot_ser  # noqa: E402
from parrot_ser.cli.main import app  # noqa: E402
from parrot_ser.errors import BundleError  # noqa: E402
from parrot_ser.inference.onnx_export import TOLERANCE, OnnxExportError, export_encoder, export_onnx  # noqa: E402
from test_bundle import build_run  # noqa: E402

FILES = ("03a01Wa.wav", "08a01Na.wav", "09a01Fa.wav", "08a01Wa.wav")  # three speakers


def _wavs(emodb_root: Path) -> list[np.ndarray]:
    from parrot_ser.audio import load_audio

    out = [load_audio(emodb_root / "wav" / f, 16000) for f in FILES]  # decoded + resampled as predict does
    out = [w[0] if isinstance(w, tuple) else w for w in out]
    # the copy's clips are all 2 s: crop two so the graphs also see other lengths (dynamic axis)
    return [out[0], out[1][:20800], out[2], out[3][:27200]]


def _sess(path: Path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory, emodb_root):
    """Runs on 12 real Emo-DB files (2 speakers) for the encoders a test asks for (cached)."""
    from parrot_ser.corpora import scan_corpus
    from parrot_ser.corpora.base import Manifest
    from parrot_ser.encoders import build_encoder
    from parrot_ser.features import extract_features
    from parrot_ser.training.config import TrainConfig
    from parrot_ser.training.run import run_cv

    man = scan_corpus("emodb", emodb_root)
    by = collections.defaultdict(list)
    for u in man.utterances:
        if u.speaker in ("03", "10") and u.label in ("angry", "neutral", "sad"):
            by[u.speaker].append(u)
    keep = Manifest(man.corpus, man.root, [u for s in sorted(by) for u in by[s][:6]])
    base = tmp_path_factory.mktemp("onnx_runs")
    done: dict[tuple, Path] = {}

    def make(encoders: tuple[tuple[str, dict], ...], model: str) -> Path:
        key = (repr(encoders), model)
        if key not in done:
            for name, kw in encoders:
                if not (base / "feat" / name).is_dir():
                    extract_features(keep, build_encoder(name, **kw), base / "feat", progress=False)
            out = base / f"run_{model}_{len(done)}"
            run_cv(base / "feat", [n for n, _ in encoders], model, TrainConfig(epochs=3, patience=0, batch_size=4),
                   [0], "speaker-kfold", out, n_folds=2)
            done[key] = out
        return done[key]

    return make


def test_logmel_bundle_graphs_match_pytorch_on_emodb(tmp_path_factory, emodb_root, tmp_path):
    run_dir, _ = build_run(str(tmp_path_factory.getbasetemp() / "h7_run"), str(emodb_root))
    out = tmp_path / "bundle"
    r = CliRunner().invoke(app, ["export", str(run_dir), "--out", str(out), "--onnx"])
    assert r.exit_code == 0, r.output
    assert "onnx/model.onnx: onnxruntime vs PyTorch max abs diff" in r.stderr
    report = json.loads((out / "onnx" / "onnx.json").read_text())
    assert set(report["files"]) == {"head.onnx", "model.onnx"}
    model = parrot_ser.load_model(out)  # the onnx files are in the verified manifest
    full, head = _sess(out / "onnx" / "model.onnx"), _sess(out / "onnx" / "head.onnx")
    diffs = []
    for w in _wavs(emodb_root):
        ref = np.array([model.predict(w, sample_rate=16000)[0].probabilities[lab] for lab in model.labels])
        diffs.append(np.abs(full.run(None, {"audio": w[None]})[0][0] - ref).max())
        pooled = model.features([w]).pooled[0].numpy()
        diffs.append(np.abs(head.run(None, {"pooled_0": pooled})[0][0] - ref).max())
    assert max(diffs) < TOLERANCE
    two = np.stack([w[:20000] for w in _wavs(emodb_root)[:2]])  # dynamic batch
    assert full.run(None, {"audio": two})[0].shape == (2, len(model.labels))
    blob = out / "onnx" / "model.onnx"
    blob.write_bytes(blob.read_bytes()[:-1] + b"\0")
    with pytest.raises(BundleError, match="model.onnx: sha256"):
        parrot_ser.load_model(out)


@pytest.mark.parametrize("name,kw", [("hubert-base", {}), ("mms-1b", {}), ("whisper-base", {"window": "30s"}),
                                     ("ssam-tiny", {"depth": 1})])
def test_front_ends_reproduce_the_encoder(name, kw, emodb_root, tmp_path):
    """Tiny random-init configs of the three HF paths (group-norm CNN + normalisation, layer-norm
    CNN, Whisper's own log-mel and 30 s window: the real whisper-base weights take the same graph)
    and SSAM (log-mel, 200-frame chunks, the out-of-place scan), every layer."""
    from parrot_ser.encoders import build_encoder

    enc = build_encoder(name, random_init=True, layers="all", **kw)
    waves = _wavs(emodb_root)[:2]
    sess = _sess(export_encoder(enc, tmp_path / "enc.onnx", waves[0]))
    for w in waves:
        ref = enc.encode([w])[0].pooled
        got = sess.run(None, {"audio": w[None]})[0][0]
        assert got.shape == ref.shape and np.abs(got - ref).max() < TOLERANCE * max(1.0, np.abs(ref).max())


def test_whisper_clip_window_is_not_exported_as_the_30s_graph():
    """window=clip (the default since the Whisper window option) is not the fixed 30 s graph: refused
    with the reason rather than exported with features that differ (measured 7e-2)."""
    from parrot_ser.encoders import build_encoder
    from parrot_ser.inference.onnx_export import OnnxExportError, front_end

    with pytest.raises(OnnxExportError, match="window=clip"):
        front_end(build_encoder("whisper-base", random_init=True))


def test_hf_bundle_full_graph(small_runs, emodb_root, tmp_path):
    from parrot_ser.export import export_run

    run = small_runs((("hubert-base", {"random_init": True}),), "fcn")
    report = export_onnx(export_run(run, tmp_path / "b"))
    assert set(report["files"]) == {"head.onnx", "model.onnx"}
    model = parrot_ser.load_model(tmp_path / "b", quiet=True)
    sess = _sess(tmp_path / "b" / "onnx" / "model.onnx")
    for w in _wavs(emodb_root)[:2]:
        ref = np.array([model.predict(w, sample_rate=16000)[0].probabilities[lab] for lab in model.labels])
        assert np.abs(sess.run(None, {"audio": w[None]})[0][0] - ref).max() < TOLERANCE


def test_mamba_bundles_ssam_whole_ssamba_head_only_batch_dependent_none(small_runs, emodb_root, tmp_path):
    from parrot_ser.export import export_run

    mamba = ("ssam-tiny", {"random_init": True, "depth": 1})
    report = export_onnx(export_run(small_runs((mamba,), "fcn"), tmp_path / "m"))
    assert set(report["files"]) == {"head.onnx", "model.onnx"}
    model = parrot_ser.load_model(tmp_path / "m", quiet=True)
    sess = _sess(tmp_path / "m" / "onnx" / "model.onnx")
    for w in _wavs(emodb_root)[:2]:  # 2.0 s and 1.3 s: 2 and 1 chunks, 51 and 33 frames
        ref = np.array([model.predict(w, sample_rate=16000)[0].probabilities[lab] for lab in model.labels])
        assert np.abs(sess.run(None, {"audio": w[None]})[0][0] - ref).max() < TOLERANCE
    ssamba = ("ssamba-tiny", {"random_init": True, "depth": 2, "target_length": 256})
    report = export_onnx(export_run(small_runs((ssamba,), "fcn"), tmp_path / "s"))
    assert set(report["files"]) == {"head.onnx"} and "SSAMBA" in report["not_exported"]["model.onnx"]
    with pytest.raises(OnnxExportError, match="batch-dependent"):
        export_onnx(export_run(small_runs((mamba, ("logmel", {})), "parrot"), tmp_path / "p"))
    shutil.rmtree(tmp_path / "p")
