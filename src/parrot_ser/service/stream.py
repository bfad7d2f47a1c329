"""WebSocket ``/v1/stream``: a client sends audio in chunks and gets one JSON message per finished
segment while it is still sending (the same TimelineAnalyzer as ``analyze --stream``).

Protocol: connect to ``/v1/stream?rate=16000&format=s16le&channels=1`` (raw PCM; ``token=`` when the
service has one, or send ``{"token": "..."}`` as the first message). Send binary messages of PCM.
Send the text ``end`` (or ``{"type": "end"}``) to finish: the last segments follow, then
``{"type": "done", ...}`` and the server closes. Answers: ``{"type": "segment", start, end, label,
probabilities, windows}`` and ``{"type": "error", "detail"}`` (then a close).

Limits: one message at most ``max_message_bytes`` (1009 close above), a session at most
``max_seconds`` of audio (1008 close); the audio waiting to be analysed is bounded by the
analyzer (one window plus a VAD frame) and by TCP back-pressure (a message is processed before the
next is read). A client that disconnects ends the session with one log line."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool

from parrot_ser.errors import ParrotError

log = logging.getLogger("parrot_ser.service")


class _Close(Exception):
    def __init__(self, code: int, detail: str):
        super().__init__(detail)
        self.code, self.detail = code, detail


async def _authorise(ws: WebSocket, token: str | None) -> None:
    from parrot_ser.service.auth import token_ok

    if token is None or token_ok(ws.query_params.get("token"), token):
        return
    first = await ws.receive()
    text = first.get("text")
    try:
        given = json.loads(text).get("token") if text else None
    except (ValueError, AttributeError):
        given = None
    if not token_ok(given, token):
        raise _Close(1008, "this service needs its token: ?token=TOKEN or a first message {\"token\": ...}")


def _setup(ws: WebSocket, predictor: Any, vad: str) -> tuple[Any, Any]:
    from parrot_ser.inference.streams import PcmDecoder, PcmFormat
    from parrot_ser.inference.timeline import TimelineAnalyzer

    q = ws.query_params
    try:
        fmt = PcmFormat(int(q.get("rate", "16000")), q.get("format", "s16le"), int(q.get("channels", "1")))
        window = float(q["window"]) if "window" in q else None
        return PcmDecoder(fmt), TimelineAnalyzer(predictor, vad=q.get("vad", vad), window=window, eager=True)
    except (ValueError, ParrotError) as e:
        raise _Close(1003, f"bad stream settings: {e}") from None


async def _send_segments(ws: WebSocket, segments: list) -> None:
    for s in segments:
        await ws.send_text(json.dumps({"type": "segment", **s.to_dict()}))


async def stream_session(ws: WebSocket, predictor: Any, *, token: str | None, vad: str, max_seconds: float,
                         max_message_bytes: int) -> None:
    await ws.accept()
    client = ws.client.host if ws.client else "?"
    try:
        await _authorise(ws, token)
        dec, an = _setup(ws, predictor, vad)
        seconds = 0.0
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(msg.get("code", 1000))
            data, text = msg.get("bytes"), msg.get("text")
            if text is not None and text.strip() in ("end", '{"type": "end"}', '{"type":"end"}'):
                break
            if data is None:
                continue  # other text: ignored (keep-alives)
            if len(data) > max_message_bytes:
                raise _Close(1009, f"message of {len(data)} bytes > {max_message_bytes} (send smaller chunks)")
            block = dec.decode(data)
            seconds += len(block) / 16000
            await _send_segments(ws, await run_in_threadpool(an.feed, block))
            if seconds > max_seconds:
                await _send_segments(ws, await run_in_threadpool(an.finish))
                raise _Close(1008, f"session longer than {max_seconds:g} s of audio (--stream-max-seconds)")
        await _send_segments(ws, await run_in_threadpool(lambda: an.feed(dec.flush()) + an.finish()))
        tl = an.timeline(None)
        await ws.send_text(json.dumps({"type": "done", "duration": round(tl.duration, 3),
                                       "regions": len(tl.regions), "segments": len(tl.segments)}))
        await ws.close(1000)
    except WebSocketDisconnect:
        log.info("stream client %s disconnected; session ended", client)
    except _Close as c:
        log.info("stream client %s: closed (%s)", client, c.detail)
        await _close_quietly(ws, c.code, c.detail)
    except ParrotError as e:
        await _close_quietly(ws, 1003, str(e))


async def _close_quietly(ws: WebSocket, code: int, detail: str) -> None:
    try:
        await ws.send_text(json.dumps({"type": "error", "detail": detail}))
        await ws.close(code, reason=detail[:120])
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client is already gone
