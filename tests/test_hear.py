"""HEAR 2021 API (parrot_ser.hear): the model spec string, timestamps per encoder family (SSAM's
official duration / frame-count step), embeddings equal to the encoder's own features, and the real
``hearvalidator`` (PyPI 2021.0.2, installed --no-deps) on a random-init Mamba encoder and on the real
whisper-base weights, with the stand-in tensorflow module of tests/hear_stub."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from parrot_ser import hear
from parrot_ser.errors import ConfigError

STUB = Path(__file__).parent / "hear_stub"
WHISPER = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "whisper-base"
MAMBA = "ssam-tiny,random_init=true,depth=2"


@pytest.fixture(scope="module")
def mamba():
    return hear.load_model(MAMBA)


def test_model_spec_forms(tmp_path, monkeypatch):
    assert hear.parse_model_spec("whisper-base") == {"name": "whisper-base", "checkpoint": None, "options": {}}
    s = hear.parse_model_spec("ssam-base=/m/ck.pth,seed=3,corrected_grouping=true,layers=3;6")
    assert s == {"name": "ssam-base", "checkpoint": "/m/ck.pth", "seed": 3, "layers": "3;6",
                 "options": {"corrected_grouping": True}}
    from parrot_ser.encoders import resolve_layers  # the one layer parser reads HEAR's ';' lists

    assert resolve_layers(s["layers"], 13) == [3, 6]
    f = tmp_path / "m.json"
    f.write_text('{"encoder": "ssam-tiny", "random_init": true, "options": {"depth": 2}}')
    assert hear.parse_model_spec(str(f)) == {"name": "ssam-tiny", "checkpoint": None, "random_init": True,
                                             "options": {"depth": 2}}
    with pytest.raises(ConfigError, match="key=value"):
        hear.parse_model_spec("logmel,oops")
    monkeypatch.delenv(hear.ENV_MODEL, raising=False)
    with pytest.raises(ConfigError, match=hear.ENV_MODEL):
        hear.load_model()
    monkeypatch.setenv(hear.ENV_MODEL, "logmel")
    assert hear.load_model().scene_embedding_size == 320


def test_ssam_timestamps_step_by_duration_over_frame_count(mamba):
    for seconds in (1.0, 2.0, 3.74, 5.0):
        n = int(seconds * 16000)
        emb, ts = hear.get_timestamp_embeddings(torch.zeros(2, n).uniform_(-1, 1), mamba)
        # the official rule: log-mel frames padded to whole 200-frame chunks, tail trimmed
        t = 1 + n // 160
        pad = 200 - t % 200
        n_frames = (t + pad) // 200 * 50 - int(50 * pad / 200)
        assert emb.shape == (2, n_frames, 960) and ts.shape == (2, n_frames)
        step = 1000.0 * seconds / n_frames
        assert np.allclose(ts[0].numpy(), step * np.arange(n_frames), atol=1e-3)
        assert 38.4 < step < 40.0 and abs(step - 40.0) > 0.05  # not a fixed 40 ms


def test_embeddings_are_the_encoders_features(mamba, emodb_root):
    from parrot_ser.encoders import build_encoder

    x, sr = sf.read(emodb_root / "wav" / "03a01Wa.wav", dtype="float32")
    enc = build_encoder("ssam-tiny", random_init=True, depth=2)
    ref = enc.encode([x], frames=True)[0]
    audio = torch.from_numpy(x)[None]
    assert np.allclose(hear.get_scene_embeddings(audio, mamba)[0].numpy(), ref.pooled[0], atol=1e-5)
    emb, _ = hear.get_timestamp_embeddings(audio, mamba)
    assert np.allclose(emb[0].numpy(), ref.frames[0], atol=1e-5)
    assert mamba.to("cpu") is mamba and any(True for _ in mamba.parameters())


def test_other_families_timestamps():
    lm = hear.load_model("logmel")
    emb, ts = hear.get_timestamp_embeddings(torch.zeros(1, 8000), lm)
    assert emb.shape == (1, 51, 160) and np.allclose(ts[0].numpy(), 10.0 * np.arange(51))
    hb = hear.load_model("hubert-base,random_init=true,layers=all")  # tiny config, 3 hidden states
    emb, ts = hear.get_timestamp_embeddings(torch.zeros(1, 16000).uniform_(-1, 1), hb)
    # conv stack: receptive field 400 samples, hop 320 -> frame i centred at 20 i + 12.5 ms
    assert emb.shape == (1, 49, 3 * 64) and np.allclose(ts[0].numpy(), 12.5 + 20.0 * np.arange(49))
    assert hb.timestamp_embedding_size == 192 and hb.scene_embedding_size == 192


def _validator_env() -> dict:
    src = str(Path(hear.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(STUB), src]), "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1"}


def test_hearvalidator_cli_on_a_random_init_mamba_encoder():
    pytest.importorskip("hearvalidator")
    r = subprocess.run([sys.executable, "-c", "from hearvalidator.validate import main; main()",
                        "parrot_ser.hear", "-m", MAMBA, "-d", "cpu"], env=_validator_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "Looks good!" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Interval between timestamps is 39.21" in r.stdout


@pytest.mark.skipif(not (WHISPER / "model.safetensors").is_file(), reason=f"no whisper-base at {WHISPER}")
def test_hearvalidator_on_real_whisper_base(monkeypatch, capsys):
    pytest.importorskip("hearvalidator")
    monkeypatch.syspath_prepend(str(STUB))
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from hearvalidator.validate import ValidateModel

    ValidateModel("parrot_ser.hear", f"whisper-base={WHISPER}", device="cpu")()  # raises ModelError on failure
    out = capsys.readouterr().out
    assert "scene_embedding_size: 512" in out and "Interval between timestamps is 20.0ms" in out
