"""HTTP service under client mistakes and hostile uploads (issue 12): never a 5xx for the client's
fault, never a server path in an answer, and a bounded load test against a real uvicorn server."""

from __future__ import annotations

import json
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from live_server import start_server, stop_server  # noqa: E402
from parrot_ser.service.app import create_app  # noqa: E402
from test_service import make_predictor, wav_bytes  # noqa: E402


@pytest.fixture(scope="module")
def client():
    app = create_app(make_predictor(), max_upload_bytes=200_000, max_seconds=3.0, thread_limit=8)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _no_trace(r) -> None:
    assert r.status_code < 500, r.text
    assert "Traceback" not in r.text and "Stream consumed" not in r.text
    body = r.json()
    assert set(body) >= {"error", "detail"}


def test_multipart_field_not_named_file_is_422_naming_the_field(client):
    r = client.post("/v1/predict", files={"audio": ("a.wav", wav_bytes(), "audio/wav")})
    _no_trace(r)
    assert r.status_code == 422 and "'file'" in r.json()["detail"] and "audio" in r.json()["detail"]


def test_truncated_multipart_body_is_400(client):
    boundary = "XyZ123"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode() + wav_bytes()[:2000]  # no closing boundary
    r = client.post("/v1/predict", content=body,
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    _no_trace(r)
    assert r.status_code == 400 and "multipart" in r.json()["detail"]


def test_wav_posted_as_urlencoded_form_is_scored_as_the_raw_body(client):
    data = wav_bytes()
    r = client.post("/v1/predict", content=data, headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    raw = client.post("/v1/predict", content=data, headers={"content-type": "audio/wav"}).json()
    assert r.json()["probabilities"] == raw["probabilities"]


@pytest.mark.parametrize("query", ["window=inf", "hop=inf", "window=1e308", "window=nan", "hop=-inf",
                                   "window=1e308&hop=1e308"])
def test_non_finite_or_huge_window_and_hop_are_422(client, query):
    r = client.post(f"/v1/predict?{query}", files={"file": ("w.wav", wav_bytes(1.0), "audio/wav")})
    _no_trace(r)
    assert r.status_code == 422
    name = query.split("=")[0]
    assert name in r.json()["detail"]


def test_chunked_upload_without_content_length_is_413_also_as_multipart(client):
    boundary = "B0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()

    def chunks():  # 25 MB in 1 MB pieces, no Content-Length: only the streaming check sees the size
        yield head
        for _ in range(25):
            yield b"\0" * (1 << 20)

    r = client.post("/v1/predict", content=chunks(),
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413 and r.json()["error"] == "upload too large", r.text


def test_model_info_shows_no_absolute_server_paths():
    pred = make_predictor()
    pred.info = {"model": {"name": "fcn"}, "training": {"run_dir": "/srv/secret/runs/parrot",
                                                         "note": "features from /srv/secret/feats/logmel ok"},
                 "encoders": [{"name": "ssam-base", "checkpoint": "/models/private/ssam-base.safetensors"}],
                 "files": {"members/a.safetensors": "00"}}
    with TestClient(create_app(pred)) as c:
        text = c.get("/v1/model").text
    info = json.loads(text)
    assert "/srv" not in text and "/models" not in text and "files" not in info
    assert info["encoders"][0]["checkpoint"] == "ssam-base.safetensors"
    assert info["training"]["run_dir"] == "parrot"
    assert info["training"]["note"] == "features from logmel ok"


def test_untrained_model_answers_carry_the_warning():
    pred = make_predictor()
    pred.info = {"encoders": [{"name": "hubert-base", "random_init": True}]}
    assert pred.untrained == ["hubert-base"]
    with TestClient(create_app(pred)) as c:
        body = c.post("/v1/predict", files={"file": ("t.wav", wav_bytes(), "audio/wav")}).json()
        health = c.get("/health").json()
    assert any("UNTRAINED" in w and "hubert-base" in w for w in body["warnings"])
    assert health["untrained"] == ["hubert-base"]


def test_serve_says_it_is_loading_before_the_slow_start(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import parrot_ser.service.app as service_app
    from parrot_ser.cli.main import app

    order = []
    monkeypatch.setattr(service_app, "create_app",
                        lambda *a, **k: order.append("create_app") or create_app(make_predictor()))
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: order.append("run"))
    res = CliRunner().invoke(app, ["serve", str(tmp_path / "model"), "--port", "8123"])
    assert res.exit_code == 0, res.output
    assert "loading model bundle" in res.output and str(tmp_path / "model") in res.output
    assert res.output.index("loading") < res.output.index("serving") and order == ["create_app", "run"]


# ---------------------------------------------------------------- bounded load test (real server)

def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS read from /proc")
def test_load_32_clients_mixed_uploads_real_uvicorn_no_5xx_bounded_rss():
    import httpx

    app = create_app(make_predictor(), max_upload_bytes=300_000, max_seconds=5.0, thread_limit=4)
    server, thread = start_server(app, log_level="error", access_log=False)
    port = server.config.port
    url = f"http://127.0.0.1:{port}/v1/predict"
    good = wav_bytes(0.5)
    big = b"\0" * 400_000
    cases = [  # (kind, request kwargs); the bad ones are client mistakes: 4xx, never 5xx
        ("good", {"files": {"file": ("g.wav", good, "audio/wav")}}),
        ("raw", {"content": good, "headers": {"content-type": "audio/wav"}}),
        ("text", {"files": {"file": ("t.wav", b"not audio " * 50, "audio/wav")}}),
        ("field", {"files": {"upload": ("f.wav", good, "audio/wav")}}),
        ("cut", {"files": {"file": ("c.wav", good[:40], "audio/wav")}}),
        ("empty", {"content": b"", "headers": {"content-type": "audio/wav"}}),
        ("big", {"content": big, "headers": {"content-type": "audio/wav"}}),
        ("inf", {"files": {"file": ("i.wav", good, "audio/wav")}, "params": {"window": "inf"}}),
    ]
    n_requests = 320
    rss0 = _rss_mb()

    def worker(k: int) -> list[tuple[str, int]]:
        out = []
        with httpx.Client(timeout=60) as c:
            for i in range(k, n_requests, 32):
                kind, kw = cases[i % len(cases)]
                out.append((kind, c.post(url, **kw).status_code))
        return out

    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=32) as pool:
            codes = [x for part in pool.map(worker, range(32)) for x in part]
    finally:
        stop_server(server, thread)
    wall = time.perf_counter() - t0
    growth = _rss_mb() - rss0
    assert len(codes) == n_requests
    assert [(k, c) for k, c in codes if c >= 500] == []
    assert {c for k, c in codes if k in ("good", "raw")} == {200}
    assert {c for k, c in codes if k == "big"} == {413}
    assert all(400 <= c < 500 for k, c in codes if k not in ("good", "raw"))
    assert growth < 200, f"RSS grew by {growth:.0f} MB over {n_requests} requests"
    print(f"load test: {n_requests} requests, 32 clients, {wall:.1f} s, RSS +{growth:.0f} MB")


def test_wav_whose_header_claims_more_data_answers_with_the_claimed_vs_read_warning(client):
    # The CLI warns about a header that announces data the file does not hold; the service used to
    # drop that warning (it only checked clipping on the resampled wave).
    import struct

    b = bytearray(wav_bytes())
    ds = b.find(b"data")
    real = struct.unpack("<I", b[ds + 4:ds + 8])[0]
    b[ds + 4:ds + 8] = struct.pack("<I", real * 10)
    r = client.post("/v1/predict", files={"file": ("claims.wav", bytes(b), "audio/wav")})
    assert r.status_code == 200, r.text
    warns = [w for w in r.json()["warnings"] if "header announces" in w]
    assert len(warns) == 1 and warns[0].startswith("claims.wav")


# ---------------------------------------------------------------- client hanging up mid-upload (issue 20)

@pytest.mark.parametrize("multipart", [True, False])
def test_client_disconnecting_mid_upload_is_one_log_line_without_traceback(caplog, multipart):
    import logging


    app = create_app(make_predictor(), max_upload_bytes=2_000_000, max_seconds=5.0)
    caplog.set_level(logging.INFO)
    # log_config=None: uvicorn's loggers propagate to the root logger, where caplog listens
    server, thread = start_server(app, log_config=None, access_log=False)
    port = server.config.port
    try:
        boundary = "b0und"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
                "Content-Type: audio/wav\r\n\r\n").encode() if multipart else b""
        ctype = f"multipart/form-data; boundary={boundary}" if multipart else "audio/wav"
        for _ in range(3):  # three clients hang up after sending part of a 1 MB body
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall((f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                           "Content-Length: 1000000\r\n\r\n").encode() + head + wav_bytes(1.0)[:20000])
                time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop_server(server, thread)
    records = [r for r in caplog.records if r.name.startswith(("uvicorn", "parrot_ser"))]
    assert [r for r in records if r.exc_info or "Traceback" in r.getMessage()] == []
    gone = [r.getMessage() for r in records if "disconnected" in r.getMessage()]
    assert len(gone) == 3 and all("/v1/predict" in m for m in gone), [r.getMessage() for r in records]
    assert not [r for r in records if r.levelno >= logging.ERROR], [r.getMessage() for r in records]


def test_untrained_warning_is_the_same_in_predict_json_and_http(monkeypatch, tmp_path):
    # issue 20 item 10: `predict --json` had "warnings": [] for an untrained model (stderr only)
    import json

    from typer.testing import CliRunner

    import parrot_ser.inference.predictor as predictor_mod
    from parrot_ser.cli.main import app

    pred = make_predictor()
    pred.info = {"encoders": [{"name": "hubert-base", "random_init": True}]}
    monkeypatch.setattr(predictor_mod, "load_model_quiet", lambda *a, **k: pred)
    clip = tmp_path / "t.wav"
    clip.write_bytes(wav_bytes())
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "model"), str(clip), "--json"])
    assert res.exit_code == 0, res.output
    cli_warnings = json.loads(res.stdout)["warnings"]
    with TestClient(create_app(pred)) as c:
        http_warnings = c.post("/v1/predict", files={"file": ("t.wav", wav_bytes(), "audio/wav")}).json()["warnings"]
    assert cli_warnings == http_warnings and len(cli_warnings) == 1
    assert "UNTRAINED" in cli_warnings[0] and "hubert-base" in cli_warnings[0]
