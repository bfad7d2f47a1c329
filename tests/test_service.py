"""HTTP service: good/corrupt/empty/non-audio/oversize/too-long uploads and a concurrent burst.

The service is driven by a real Predictor (windowing, batching, lock) with a stand-in encoder
(a few signal statistics) and a seeded linear head, so these tests need no trained run."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf
import torch

from parrot_ser.inference.predictor import Predictor

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from parrot_ser.service.app import create_app  # noqa: E402

LABELS = ["angry", "happy", "neutral"]


class StatsEncoder:
    """Stand-in encoder: pooled (1, 4) = mean, std, peak, zero-crossing rate of the waveform."""

    sample_rate = 16000

    def encode(self, waves, *, frames=False):
        from parrot_ser.encoders.base import EncodedUtterance

        out = []
        for w in waves:
            zc = float(np.mean(np.abs(np.diff(np.sign(w))) > 0)) if len(w) > 1 else 0.0
            out.append(EncodedUtterance(np.array([[w.mean(), w.std(), np.abs(w).max(), zc]], np.float32)))
        return out


class LinearHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.lin = torch.nn.Linear(4, len(LABELS))
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(len(LABELS), 4, generator=g) * 5)
            self.lin.bias.copy_(torch.randn(len(LABELS), generator=g))

    def forward(self, x):
        return self.lin(x.pooled[0])


def make_predictor() -> Predictor:
    return Predictor(LABELS, [StatsEncoder()], [LinearHead()])


def wav_bytes(seconds: float = 0.5, sr: int = 22050, freq: float = 220.0) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def client():
    app = create_app(make_predictor(), max_upload_bytes=200_000, max_seconds=3.0, thread_limit=8)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_health_labels_and_openapi(client):
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/v1/labels").json() == {"labels": LABELS}
    schema = client.get("/openapi.json").json()
    post = schema["paths"]["/v1/predict"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("PredictOut")
    assert {"413", "422"} <= set(post["responses"])


def test_good_file_multipart_and_raw_body_agree_with_python_api(client):
    data = wav_bytes()
    r = client.post("/v1/predict", files={"file": ("tone.wav", data, "audio/wav")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "tone.wav" and body["label"] in LABELS
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert body["duration"] == pytest.approx(0.5, abs=1e-3)
    raw = client.post("/v1/predict", content=data, headers={"content-type": "application/octet-stream"}).json()
    assert raw["name"] == "<body>" and raw["probabilities"] == pytest.approx(body["probabilities"], abs=1e-6)
    # Same numbers as the Python API on the same decoded samples.
    from parrot_ser.audio import decode_audio

    api = make_predictor().predict(decode_audio(data, 16000, warn=False), sample_rate=16000)[0]
    assert api.probabilities == pytest.approx(body["probabilities"], abs=1e-5)


@pytest.mark.parametrize("payload,kind", [
    (wav_bytes()[:30], "unreadable or corrupt audio"),  # truncated WAV header
    (b"hello, this is text and not audio at all" * 10, "not an audio file"),
])
def test_bad_content_is_422_json_without_traceback(client, payload, kind):
    r = client.post("/v1/predict", files={"file": ("clip.wav", payload, "audio/wav")})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == kind and "clip.wav" in body["detail"]
    assert "Traceback" not in r.text


def test_empty_body_is_422(client):
    r = client.post("/v1/predict", content=b"", headers={"content-type": "audio/wav"})
    assert r.status_code == 422 and r.json()["error"] == "empty upload"


def test_oversize_upload_is_413(client):
    big = wav_bytes(seconds=2.5, sr=48000)  # ~240 kB > 200 kB limit
    r = client.post("/v1/predict", files={"file": ("big.wav", big, "audio/wav")})
    assert r.status_code == 413 and r.json()["error"] == "upload too large"

    def chunks():  # no Content-Length: the streaming check must catch it
        for i in range(0, len(big), 50_000):
            yield big[i:i + 50_000]

    r = client.post("/v1/predict", content=chunks(), headers={"content-type": "audio/wav"})
    assert r.status_code == 413


def test_too_long_recording_is_413(client):
    long = wav_bytes(seconds=4.0, sr=8000)  # small file, 4 s > 3 s limit
    r = client.post("/v1/predict", files={"file": ("long.wav", long, "audio/wav")})
    assert r.status_code == 413 and r.json()["error"] == "recording too long"
    assert "4.0 s" in r.json()["detail"]


def test_windows_are_reported(client):
    r = client.post("/v1/predict?window=1&hop=0.5", files={"file": ("w.wav", wav_bytes(2.0, 16000), "audio/wav")})
    body = r.json()
    assert [w["start"] for w in body["windows"]] == [0.0, 0.5, 1.0]
    mean = {k: np.mean([w["probabilities"][k] for w in body["windows"]]) for k in LABELS}
    assert body["probabilities"] == pytest.approx(mean, abs=1e-6)
    r = client.post("/v1/predict?window=0.01&hop=0.01", files={"file": ("w.wav", wav_bytes(2.0), "audio/wav")})
    assert r.status_code == 422 and "window must be" in r.json()["detail"]


def test_internal_error_hides_details():
    class Broken:
        labels = LABELS
        sample_rate = 16000

        def predict_waveforms(self, *a, **k):
            raise RuntimeError("secret internal state /etc/passwd")

    with TestClient(create_app(Broken()), raise_server_exceptions=False) as c:
        r = c.post("/v1/predict", content=wav_bytes(), headers={"content-type": "audio/wav"})
    assert r.status_code == 500 and "secret" not in r.text and r.json()["error"] == "internal error"


def test_concurrent_burst_all_succeed_with_identical_results(client):
    files = [wav_bytes(0.4 + 0.1 * (i % 3), freq=150.0 + 100 * (i % 3)) for i in range(50)]

    def call(i):
        r = client.post("/v1/predict", files={"file": (f"c{i}.wav", files[i], "audio/wav")})
        return i, r.status_code, r.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, range(50)))
    assert all(code == 200 for _, code, _ in results)
    by_kind: dict[int, dict] = {}
    for i, _, body in results:
        ref = by_kind.setdefault(i % 3, body["probabilities"])
        assert body["probabilities"] == ref  # same input -> bit-identical answer under concurrency
    assert len({tuple(v.values()) for v in by_kind.values()}) == 3


def test_app_from_a_real_bundle_folder(tmp_path_factory, emodb_root):
    from test_bundle import build_run

    bundle = build_run(str(tmp_path_factory.getbasetemp() / "h7_run"), str(emodb_root))[1]
    with TestClient(create_app(str(bundle))) as c:
        info = c.get("/v1/model").json()
        assert info["model"]["name"] == "fcn" and "files" not in info
        data = (emodb_root / "wav" / "03a01Wa.wav").read_bytes()
        body = c.post("/v1/predict", files={"file": ("03a01Wa.wav", data, "audio/wav")}).json()
    from parrot_ser.inference import load_model

    api = load_model(bundle).predict(emodb_root / "wav" / "03a01Wa.wav")[0]
    assert body["label"] == api.label and body["probabilities"] == pytest.approx(api.probabilities, abs=1e-5)
