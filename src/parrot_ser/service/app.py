"""FastAPI app: ``POST /v1/predict``, ``GET /v1/labels``, ``GET /v1/model``, ``GET /health``.

- Upload: multipart form field ``file``, or the audio bytes as the raw request body (any other
  Content-Type, urlencoded included, is read as raw audio bytes: the content decides, not the header).
- Client mistakes are 4xx, never 5xx: a multipart body without a ``file`` field or cut short, non-finite
  or absurd ``window``/``hop`` values. Answers never show absolute server paths (``/v1/model`` and
  error details keep only the last path component).
- An untrained (random-initialised) model says so in every answer's ``warnings``.
- Limits: request bodies over ``max_upload_bytes`` get 413 (checked on the Content-Length header
  and again while the body streams in, so a chunked upload cannot get round it); recordings longer
  than ``max_seconds`` get 413 too (checked from the header before decoding the samples).
- Content is checked by decoding it (parrot_ser.audio.decode_audio), never by the file name or the
  Content-Type: a text file named .wav is 422 "not an audio file".
- Errors are JSON ``{"error": kind, "detail": message}``; no stack trace ever leaves the server
  (unexpected exceptions are logged and answered with a generic 500).
- Model calls run in the threadpool (``run_in_threadpool``); the predictor holds a lock, so
  concurrent requests are safe; ``thread_limit`` caps the pool.
"""

from __future__ import annotations

import io
import logging
import math
import re
import tempfile
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser, parse_options_header
from starlette.requests import ClientDisconnect

from parrot_ser import __version__
from parrot_ser.errors import AudioError, AudioTooLongError, ConfigError, ParrotError
from parrot_ser.inference.writers import predictions_doc

log = logging.getLogger("parrot_ser.service")

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_SECONDS = 120.0
DEFAULT_ANALYZE_MAX_BYTES = 1 << 30  # 1 GiB on disk: about 9 h of 16 kHz 16-bit mono WAV
DEFAULT_ANALYZE_MAX_SECONDS = 4 * 3600.0
DEFAULT_STREAM_MAX_SECONDS = 4 * 3600.0
MIN_WINDOW_SECONDS = 0.5
MIN_HOP_SECONDS = 0.25


class PredictorLike(Protocol):
    """What the app needs from a model (parrot_ser.inference.Predictor, or a test double)."""

    labels: list[str]
    sample_rate: int

    def predict_waveforms(self, waves: Any, names: Any = None, *, window: float | None = None,
                          hop: float | None = None, batch_size: int = 8) -> list[Any]: ...


# --- response models (they make /openapi.json describe the answers) -------------------------------
class WindowOut(BaseModel):
    window: int
    start: float = Field(description="seconds")
    end: float = Field(description="seconds")
    label: str | None = Field(None, description="most probable label; absent for a regression-only model")
    probabilities: dict[str, float] = Field(default_factory=dict)
    dimensions: dict[str, float] = Field(default_factory=dict, description="dimension -> value, training data's scale")


class ScoreOut(BaseModel):
    label: str
    score: float


class PredictOut(BaseModel):
    name: str = Field(description="upload file name, or '<body>' for a raw body")
    label: str | None = Field(None, description="most probable label; absent for a regression-only model "
                                                "(then only dimensions)")
    probabilities: dict[str, float] = Field(default_factory=dict, description="label -> probability (sums to 1)")
    dimensions: dict[str, float] = Field(default_factory=dict, description="models trained on dimensions: "
                                         "dimension (arousal, ...) -> predicted value in the training data's scale")
    scores: list[ScoreOut] = Field(default_factory=list, description="Hugging Face audio-classification "
                                   "pipeline shape: every label with its probability, highest first (a "
                                   "regression-only model: its dimensions in model order, value as score)")
    duration: float = Field(description="seconds of audio scored")
    windows: list[WindowOut] = Field(default_factory=list,
                                     description="per-window results when the recording was split")
    warnings: list[str] = Field(default_factory=list)


class LabelsOut(BaseModel):
    labels: list[str]


class HealthOut(BaseModel):
    status: str
    version: str
    labels: int
    untrained: list[str] = Field(default_factory=list, description="encoders with random weights (test only)")


class ErrorOut(BaseModel):
    error: str
    detail: str


ERRORS = {400: {"model": ErrorOut, "description": "malformed multipart body"},
          413: {"model": ErrorOut, "description": "upload or recording too large"},
          422: {"model": ErrorOut, "description": "empty, corrupt or non-audio input"},
          500: {"model": ErrorOut, "description": "internal error (no details leaked)"}}


def _error(status: int, kind: str, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": kind, "detail": public_text(detail)})


# An absolute POSIX path's folders (the last component is kept): "/srv/runs/x/model" -> "model".
_ABS_DIRS = re.compile(r"(?<![\w.~:/-])/(?:[^\s/'\"(),;:]+/)+")


def public_text(text: str) -> str:
    """``text`` with absolute server paths cut to their last component (answers must not reveal
    the server's file layout: run folders, checkpoint locations, user names)."""
    return _ABS_DIRS.sub("", text)


def public_info(obj: Any) -> Any:
    """A JSON-able structure with every string passed through :func:`public_text`."""
    if isinstance(obj, str):
        return public_text(obj)
    if isinstance(obj, dict):
        return {k: public_info(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [public_info(v) for v in obj]
    return obj


class _TooLarge(Exception):
    pass


class _ClientError(Exception):
    """A mistake in the request, answered as ``status`` with a one-line detail."""

    def __init__(self, status: int, kind: str, detail: str):
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


class BodyLimitMiddleware:
    """Pure ASGI: refuse bodies over ``max_bytes`` (or ``per_path[path]``) with 413 before the app
    buffers them."""

    def __init__(self, app: Any, max_bytes: int, per_path: dict[str, int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = per_path or {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.per_path.get(scope.get("path", ""), self.max_bytes)
        for k, v in scope.get("headers", []):
            if k == b"content-length" and v.isdigit() and int(v) > limit:
                return await _error(413, "upload too large", self._msg(int(v), limit))(scope, receive, send)
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return msg

        async def tracking_send(msg: dict) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if started:  # pragma: no cover - the app answered before reading everything
                return
            await _error(413, "upload too large", self._msg(seen, limit))(scope, receive, send)

    def _msg(self, n: int, limit: int) -> str:
        flag = "--max-upload-mb" if limit == self.max_bytes else "--analyze-max-mb"
        return f"request body of {n} bytes exceeds the limit of {limit} bytes ({flag})"


# The endpoint reads the body itself (so a wrong field name, a cut multipart body or a urlencoded
# Content-Type cannot reach FastAPI's form parser and end as a 500); the schema is declared here.
_UPLOAD_SCHEMA = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": "audio file (WAV, FLAC, OGG, AIFF, MP3...)"}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                                            "description": "the audio file's bytes as the body"}}}}}


async def _read_upload(request: Request) -> tuple[str, bytes]:
    """(name, bytes) of the upload: multipart field ``file``, else the raw body."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data":
        return "<body>", await request.body()
    tail = b""

    async def stream():  # keeps the body's last bytes: a complete multipart body ends with --BOUNDARY--
        nonlocal tail
        async for chunk in request.stream():
            tail = (tail + chunk)[-200:]
            yield chunk

    hint = "send the audio as a form field named 'file' (curl -F file=@clip.wav)"
    try:
        form = await MultiPartParser(request.headers, stream(), max_files=4, max_fields=16).parse()
    except MultiPartException as e:
        raise _ClientError(400, "invalid multipart body", f"the multipart body could not be parsed ({e}); "
                           f"{hint}") from None
    boundary = parse_options_header(request.headers["content-type"])[1].get(b"boundary", b"")
    if b"--" + boundary + b"--" not in tail:
        await form.close()
        raise _ClientError(400, "invalid multipart body", "the multipart body ends before its closing boundary "
                           f"(upload cut short?); {hint}")
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            got = sorted(form.keys())
            raise _ClientError(422, "no file field", f"the multipart body has no file field named 'file' (fields "
                               f"sent: {got}); send it as -F file=@clip.wav")
        return upload.filename or "<upload>", await upload.read()
    finally:
        await form.close()


def _check_window(label: str, value: float | None, max_seconds: float) -> None:
    # A non-finite or absurd length would overflow window arithmetic (1e308 s) or mean "never";
    # no window longer than the longest accepted recording is useful.
    if value is not None and not (math.isfinite(value) and value <= max_seconds):
        raise _ClientError(422, "invalid request", f"{label}={value} must be a finite number of seconds, at most "
                           f"the {max_seconds:g} s recording limit (--max-seconds)")


def _lifespan(thread_limit: int | None) -> Any:
    """At start-up: at most ``thread_limit`` requests decode and predict at once (anyio's pool)."""
    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        if thread_limit:
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = int(thread_limit)
        yield

    return lifespan


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON: one line, never a traceback."""
    @app.exception_handler(AudioError)
    async def _audio_error(request: Request, exc: AudioError) -> JSONResponse:
        return _error(422, exc.problem, str(exc))

    @app.exception_handler(ParrotError)
    async def _parrot_error(request: Request, exc: ParrotError) -> JSONResponse:
        return _error(422, type(exc).__name__, str(exc))

    @app.exception_handler(_ClientError)
    async def _client_error(request: Request, exc: _ClientError) -> JSONResponse:
        return _error(exc.status, exc.kind, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return _error(422, "invalid request", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http error", str(exc.detail))

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        # A client that hangs up mid-upload is not a server fault: one line, no traceback. Nobody
        # reads the answer; handled here (not in the catch-all below) so Starlette does not re-raise.
        client = request.client.host if request.client else "?"
        log.warning("client %s disconnected during %s %s; request dropped", client, request.method, request.url.path)
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)
        return _error(500, "internal error", "the server failed to process the request; see the server log")


@dataclass
class ServiceLimits:
    """Per-endpoint limits. /v1/predict holds the upload in memory (short clips); /v1/analyze streams
    its upload to a temporary file (long recordings); the WebSocket caps each message and a session."""

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_seconds: float = DEFAULT_MAX_SECONDS
    analyze_max_bytes: int = DEFAULT_ANALYZE_MAX_BYTES
    analyze_max_seconds: float = DEFAULT_ANALYZE_MAX_SECONDS
    stream_max_seconds: float = DEFAULT_STREAM_MAX_SECONDS
    stream_max_message_bytes: int = 1 << 20


def create_app(model: str | Path | PredictorLike, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               max_seconds: float = DEFAULT_MAX_SECONDS, thread_limit: int | None = None,
               window: float | None = None, hop: float | None = None, limits: ServiceLimits | None = None,
               token: str | None = None, vad: str = "silero") -> FastAPI:
    """The service for a model bundle folder (loaded and verified now) or a ready predictor.
    ``window``/``hop``: as ``parrot-ser predict``. ``token``: required on every endpoint but
    /health and the page's static files (auth.py). ``vad``: for /v1/analyze and the WebSocket."""
    limits = limits or ServiceLimits(max_upload_bytes=max_upload_bytes, max_seconds=max_seconds)
    if min(limits.max_upload_bytes, limits.max_seconds, limits.analyze_max_bytes, limits.analyze_max_seconds,
           limits.stream_max_seconds) <= 0:
        raise ConfigError(f"limits must be positive ({limits})")
    if isinstance(model, (str, Path)):
        from parrot_ser.inference.predictor import load_model

        predictor: PredictorLike = load_model(model, quiet=True)
    else:
        predictor = model
    app = FastAPI(title="PARROT-SER", version=__version__, lifespan=_lifespan(thread_limit),
                  description="Speech emotion recognition with an exported PARROT-SER model bundle.")
    app.state.predictor = predictor
    app.add_middleware(BodyLimitMiddleware, max_bytes=int(limits.max_upload_bytes),
                       per_path={"/v1/analyze": int(limits.analyze_max_bytes)})
    if token:
        from parrot_ser.service.auth import TokenMiddleware

        app.add_middleware(TokenMiddleware, token=token)
    _add_error_handlers(app)
    _add_info_routes(app, predictor)
    _add_predict_route(app, predictor, limits, window, hop)
    _add_analyze_routes(app, predictor, limits, token, vad)
    from parrot_ser.service.page import add_page

    add_page(app)
    return app


def _add_info_routes(app: FastAPI, predictor: PredictorLike) -> None:
    untrained = list(getattr(predictor, "untrained", []) or [])

    @app.get("/health", response_model=HealthOut)
    def health() -> HealthOut:
        return HealthOut(status="ok", version=__version__, labels=len(predictor.labels), untrained=untrained)

    @app.get("/v1/labels", response_model=LabelsOut)
    def labels() -> LabelsOut:
        return LabelsOut(labels=list(predictor.labels))

    @app.get("/v1/model")
    def model_info() -> dict:
        """The bundle's description (encoders, model, labels, training summary), minus the file list."""
        info = dict(getattr(predictor, "info", {}) or {})
        info.pop("files", None)
        info["untrained"] = untrained
        info["warnings"] = _untrained_notes(untrained)
        return public_info(info)


def _add_predict_route(app: FastAPI, predictor: PredictorLike, limits: ServiceLimits, window: float | None,
                       hop: float | None) -> None:
    max_seconds = limits.max_seconds
    untrained_notes = _untrained_notes(list(getattr(predictor, "untrained", []) or []))

    # response_model_exclude_none: a regression-only model answers without a "label" key at all
    @app.post("/v1/predict", response_model=PredictOut, responses=ERRORS, openapi_extra=_UPLOAD_SCHEMA,
              response_model_exclude_none=True)
    async def predict(
        request: Request,
        window_s: float | None = Query(None, alias="window", ge=0, description="window seconds (0: never split)"),
        hop_s: float | None = Query(None, alias="hop", gt=0, description="hop seconds (default window/2)"),
        fmt: str = Query("json", alias="format", description="answer format: json, or another prediction "
                                                             "writer (csv)"),
    ) -> Any:
        """Multipart upload (field ``file``) or raw audio bytes as the body."""
        writer = _writer(fmt, "predictions")
        _check_window("window", window_s, max_seconds)
        _check_window("hop", hop_s, max_seconds)
        name, data = await _read_upload(request)
        if not data:
            return _error(422, "empty upload", f"{name}: no audio bytes received (send a multipart field "
                                               "'file' or the audio as the request body)")
        seconds = _header_seconds(data)
        if seconds is not None and seconds > max_seconds:
            return _error(413, "recording too long",
                          f"{name}: {seconds:.1f} s of audio exceeds the limit of {max_seconds:g} s (--max-seconds)")
        try:
            wave, warns = await run_in_threadpool(_decode, data, predictor.sample_rate, name, max_seconds)
        except AudioTooLongError:
            return _error(413, "recording too long",
                          f"{name}: more than {max_seconds:g} s of audio exceeds the limit (--max-seconds)")
        dur = len(wave) / predictor.sample_rate
        if dur > max_seconds:  # formats whose header does not state the length
            return _error(413, "recording too long",
                          f"{name}: {dur:.1f} s of audio exceeds the limit of {max_seconds:g} s (--max-seconds)")
        w = window if window_s is None else window_s
        h = hop if hop_s is None else hop_s
        # Tiny windows/hops would turn one upload into thousands of model calls.
        if (w is not None and 0 < w < MIN_WINDOW_SECONDS) or (h is not None and h < MIN_HOP_SECONDS):
            return _error(422, "invalid request", f"window must be 0 or >= {MIN_WINDOW_SECONDS} s and hop >= "
                                                  f"{MIN_HOP_SECONDS} s (got window={w}, hop={h})")
        pred = (await run_in_threadpool(predictor.predict_waveforms, [wave], [name], window=w, hop=h))[0]
        if writer is not None:  # the CLI's writers (inference/writers.py), same columns as predict --csv
            doc = predictions_doc(name, predictor.labels, [{**pred.to_dict(), "path": name}],
                                  warnings=untrained_notes + warns, dims=getattr(predictor, "dims", []))
            return Response(writer.render(doc), media_type=writer.media_type)
        return _predict_out(name, pred, dur, untrained_notes + warns)



def _add_analyze_routes(app: FastAPI, predictor: PredictorLike, limits: ServiceLimits, token: str | None,
                        vad: str) -> None:
    notes = _untrained_notes(list(getattr(predictor, "untrained", []) or []))

    @app.post("/v1/analyze", responses=ERRORS, openapi_extra=_UPLOAD_SCHEMA)
    async def analyze(
        request: Request,
        window_s: float | None = Query(None, alias="window", gt=0, le=60, description="window seconds "
                                       "(default: the model's training clip length)"),
        hop_s: float | None = Query(None, alias="hop", gt=0, le=240, description="hop seconds (default: window)"),
        smooth: int = Query(1, ge=1, le=50, description="average N neighbouring windows"),
        fmt: str = Query("json", alias="format", description="json, csv or png (the timeline writers)"),
    ) -> Any:
        """Emotion over time for a long recording (multipart field ``file`` or the raw body): speech
        regions, windows, merged segments. The upload is streamed to a temporary file, never held in
        memory; limits: --analyze-max-mb and --analyze-max-seconds."""
        from parrot_ser.inference.timeline import analyze_file
        from parrot_ser.inference.writers import get_writer, timeline_doc

        try:
            writer = get_writer(fmt, "timeline")
        except ConfigError as e:
            raise _ClientError(422, "invalid request", str(e)) from None
        with tempfile.TemporaryDirectory(prefix="parrot-analyze-") as tmp:
            name, path = await _upload_to_file(request, Path(tmp))
            await run_in_threadpool(_check_length, path, name, limits.analyze_max_seconds)
            tl = await run_in_threadpool(analyze_file, predictor, path, vad=vad, window=window_s, hop=hop_s,
                                         smooth=smooth)
        d = tl.to_dict()
        d["path"] = name
        doc = timeline_doc(name, list(predictor.labels), [d], notes, dims=list(getattr(predictor, "dims", None) or []))
        return Response(writer.render(doc), media_type=writer.media_type)

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        from parrot_ser.service.stream import stream_session

        await stream_session(ws, predictor, token=token, vad=vad, max_seconds=limits.stream_max_seconds,
                             max_message_bytes=limits.stream_max_message_bytes)


async def _upload_to_file(request: Request, folder: Path) -> tuple[str, Path]:
    """The upload (multipart field ``file`` or raw body) copied in pieces to ``folder``."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    target = folder / "upload"
    if ctype != "multipart/form-data":
        n = 0
        with open(target, "wb") as f:
            async for chunk in request.stream():
                f.write(chunk)
                n += len(chunk)
        if n == 0:
            raise _ClientError(422, "empty upload", "<body>: no audio bytes received")
        return "<body>", target
    try:  # starlette spools multipart files over 1 MB to disk
        form = await MultiPartParser(request.headers, request.stream(), max_files=4, max_fields=16).parse()
    except MultiPartException as e:
        raise _ClientError(400, "invalid multipart body", f"the multipart body could not be parsed ({e})") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise _ClientError(422, "no file field", "the multipart body has no file field named 'file'")
        with open(target, "wb") as f:
            while chunk := await upload.read(1 << 20):
                f.write(chunk)
        return upload.filename or "<upload>", target
    finally:
        await form.close()


def _check_length(path: Path, name: str, max_seconds: float) -> None:
    from parrot_ser.audio import read_info

    try:
        info = read_info(path, max_seconds=float("inf"))  # this endpoint's own limit is checked below
    except AudioError as e:
        raise _ClientError(422, e.problem, f"{name}: {e.problem}" + (f" ({e.detail})" if e.detail else "")) from None
    if info.duration > max_seconds:
        raise _ClientError(413, "recording too long", f"{name}: {info.duration:.0f} s of audio exceeds the limit "
                           f"of {max_seconds:g} s (--analyze-max-seconds)")


def _writer(fmt: str, kind: str) -> Any:
    """None for the JSON answer of the response model, else the registry's writer ``fmt``."""
    from parrot_ser.inference.writers import get_writer

    if fmt == "json":
        return None
    try:
        return get_writer(fmt, kind)
    except ConfigError as e:
        raise _ClientError(422, "invalid request", str(e)) from None


def _predict_out(name: str, pred: Any, dur: float, warnings: list[str]) -> PredictOut:
    """The answer for one recording: label and probabilities, dimensions (models trained on them)."""
    return PredictOut(name=name, label=pred.label, probabilities=pred.probabilities,
                      dimensions=getattr(pred, "dimensions", {}),
                      scores=[ScoreOut(**s) for s in pred.scores()], duration=round(dur, 4),
                      windows=[WindowOut(window=x.window, start=x.start, end=x.end, label=x.label,
                                         probabilities=x.probabilities, dimensions=getattr(x, "dimensions", {}))
                               for x in pred.windows],
                      warnings=warnings)


def _untrained_notes(untrained: list[str]) -> list[str]:
    """Every answer of an untrained model says so, in the words of `predict --json` (notices.py)."""
    from parrot_ser.notices import untrained_warnings

    return untrained_warnings(untrained)


def _header_seconds(data: bytes) -> float | None:
    """Duration from the container header without decoding samples; None when unknown."""
    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(data))
    except Exception:  # undecodable: decode_audio reports the precise error
        return None
    if info.samplerate > 0 and info.frames > 0 and not math.isinf(info.duration):
        return float(info.frames) / info.samplerate
    return None


def _decode(data: bytes, sr: int, name: str, max_seconds: float) -> tuple[np.ndarray, list[str]]:
    from parrot_ser.audio import decode_with_warnings

    # The texts go into the response (warnings.warn is process-global). They are the CLI's: clipping
    # measured before resampling, and a header that claims more data than the file holds. Decoding
    # stops a little past the service's own limit, so a header-less stream cannot take the memory of
    # the 2 h library cap before the 413 below.
    return decode_with_warnings(data, sr, name, max_seconds=max_seconds + 1.0)
