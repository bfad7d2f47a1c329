"""Service side of issue 18: POST /v1/analyze, the WebSocket /v1/stream (chunks in, segments out while
audio arrives, a client that disconnects), token access, and `serve`'s token rule."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from live_server import start_server, stop_server  # noqa: E402
from parrot_ser.service.app import ServiceLimits, create_app  # noqa: E402
from test_service import make_predictor  # noqa: E402
from test_timeline import model, recording  # noqa: E402, F401  (fixtures: the real tiny model, a 25 s file)


@pytest.fixture(scope="module")
def client(model):  # noqa: F811
    limits = ServiceLimits(max_upload_bytes=200_000, max_seconds=3.0, analyze_max_seconds=40.0)
    with TestClient(create_app(model, limits=limits), raise_server_exceptions=False) as c:
        yield c


def test_analyze_endpoint_gives_the_cli_timeline(client, model, recording):  # noqa: F811
    path, truth = recording
    data = path.read_bytes()
    assert len(data) > 200_000  # over /v1/predict's upload limit: /v1/analyze has its own
    r = client.post("/v1/analyze", files={"file": ("long.wav", data, "audio/wav")})
    assert r.status_code == 200, r.text
    rec = r.json()["recordings"][0]
    assert rec["path"] == "long.wav" and len(rec["regions"]) == len(truth)
    api = model.analyze(path)
    assert [(s["label"], s["start"]) for s in rec["segments"]] == [(s.label, round(s.start, 3)) for s in api.segments]
    raw = client.post("/v1/analyze?format=png", content=data, headers={"content-type": "audio/wav"})
    assert raw.status_code == 200 and raw.content[:4] == b"\x89PNG"
    assert client.post("/v1/predict", files={"file": ("long.wav", data, "audio/wav")}).status_code == 413


def test_analyze_limits_and_bad_input(model, recording):  # noqa: F811
    path, _ = recording
    with TestClient(create_app(model, limits=ServiceLimits(analyze_max_seconds=10.0))) as c:
        r = c.post("/v1/analyze", files={"file": ("long.wav", path.read_bytes(), "audio/wav")})
        assert r.status_code == 413 and "--analyze-max-seconds" in r.json()["detail"]
        r = c.post("/v1/analyze", files={"file": ("t.wav", b"not audio" * 100, "audio/wav")})
        assert r.status_code == 422 and "Traceback" not in r.text and "/tmp" not in r.text
        assert c.post("/v1/analyze?format=xml", content=b"x").status_code == 422


def _pcm(path) -> bytes:
    x, sr = sf.read(str(path), dtype="float32")
    assert sr == 16000
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def test_websocket_segments_arrive_while_sending_and_equal_the_files(client, model, recording):  # noqa: F811
    path, truth = recording
    pcm = _pcm(path)
    chunk = 3200  # 100 ms
    got = []
    with client.websocket_connect("/v1/stream?rate=16000&format=s16le") as ws:
        half = len(pcm) // 2 // chunk * chunk
        for i in range(0, half, chunk):
            ws.send_bytes(pcm[i:i + chunk])
        got.append(ws.receive_json())  # a segment of the first half, before the rest is sent
        assert got[0]["type"] == "segment" and got[0]["end"] < half / 32000
        for i in range(half, len(pcm), chunk):
            ws.send_bytes(pcm[i:i + chunk])
        ws.send_text("end")
        while got[-1]["type"] != "done":
            got.append(ws.receive_json())
    segs = [g for g in got if g["type"] == "segment"]
    whole = model.analyze(path)
    assert [s["label"] for s in segs] == [s.label for s in whole.segments]
    assert all(abs(a["start"] - b.start) <= 0.032 and abs(a["end"] - b.end) <= 0.032 for a, b in zip(segs, whole.segments))
    assert got[-1]["regions"] == len(truth)


def test_websocket_limits_close_cleanly(model):  # noqa: F811
    limits = ServiceLimits(stream_max_seconds=1.0, stream_max_message_bytes=10_000)
    with TestClient(create_app(model, limits=limits)) as c:
        with c.websocket_connect("/v1/stream?rate=16000") as ws:
            ws.send_bytes(b"\0" * 20_000)
            assert "smaller chunks" in ws.receive_json()["detail"]
            with pytest.raises(WebSocketDisconnect) as e:
                ws.receive_json()
            assert e.value.code == 1009
        with c.websocket_connect("/v1/stream?rate=16000") as ws:
            for _ in range(5):
                ws.send_bytes(b"\0" * 8000)  # 0.25 s each
            msg = ws.receive_json()
            assert msg["type"] == "error" and "longer than 1 s" in msg["detail"]
        with c.websocket_connect("/v1/stream?rate=16000&format=u8") as ws:
            assert "bad stream settings" in ws.receive_json()["detail"]


def test_token_guards_everything_but_health_and_the_page():
    with TestClient(create_app(make_predictor(), token="s3cret", vad="energy")) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/").status_code == 200 and "PARROT-SER" in c.get("/").text
        assert c.get("/static/app.js").status_code == 200
        for path in ("/v1/model", "/v1/labels", "/docs", "/openapi.json"):
            assert c.get(path).status_code == 401, path
        assert c.get("/v1/model", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/v1/model", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/v1/labels", headers={"X-Token": "s3cret"}).status_code == 200
        assert c.post("/v1/predict", content=b"x").status_code == 401
        with c.websocket_connect("/v1/stream") as ws:  # no token: the first message must carry it
            ws.send_text(json.dumps({"token": "nope"}))
            assert "token" in ws.receive_json()["detail"]
        with c.websocket_connect("/v1/stream?token=s3cret") as ws:
            ws.send_text("end")
            assert ws.receive_json()["type"] == "done"
        with c.websocket_connect("/v1/stream") as ws:
            ws.send_text(json.dumps({"token": "s3cret"}))
            ws.send_text("end")
            assert ws.receive_json()["type"] == "done"


def test_serve_needs_a_token_beyond_loopback(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import parrot_ser.service.app as service_app
    from parrot_ser.cli.main import app

    seen = {}

    def fake_create_app(*a, **k):
        seen["token"] = k.get("token")
        return create_app(make_predictor())

    monkeypatch.setattr(service_app, "create_app", fake_create_app)
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    monkeypatch.delenv("PARROT_SER_TOKEN", raising=False)
    run = CliRunner().invoke
    assert run(app, ["serve", str(tmp_path), "--host", "127.0.0.1"]).exit_code == 0 and seen["token"] is None
    res = run(app, ["serve", str(tmp_path), "--host", "0.0.0.0"])
    assert res.exit_code == 0 and seen["token"] and seen["token"] in res.output
    assert run(app, ["serve", str(tmp_path), "--host", "0.0.0.0", "--public"]).exit_code == 0 and seen["token"] is None
    assert run(app, ["serve", str(tmp_path), "--host", "0.0.0.0"], env={"PARROT_SER_TOKEN": "mine"}).exit_code == 0
    assert seen["token"] == "mine"


def test_websocket_client_that_disconnects_is_one_log_line(caplog, model, recording):  # noqa: F811
    import asyncio

    import websockets

    path, _ = recording
    caplog.set_level(logging.INFO)
    server, thread = start_server(create_app(model), log_config=None, access_log=False)
    port = server.config.port

    async def hang_up() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/stream?rate=16000") as ws:
            pcm = _pcm(path)
            for i in range(0, 32000 * 5, 3200):
                await ws.send(pcm[i:i + 3200])
            ws.transport.abort()  # gone without a close frame, as a crashed client

    try:
        asyncio.run(hang_up())
        time.sleep(1.0)
    finally:
        stop_server(server, thread)
    records = [r for r in caplog.records if r.name.startswith(("uvicorn", "parrot_ser"))]
    assert [r for r in records if r.exc_info or r.levelno >= logging.ERROR] == []
    assert len([r for r in records if "disconnected" in r.getMessage()]) == 1, [r.getMessage() for r in records]
