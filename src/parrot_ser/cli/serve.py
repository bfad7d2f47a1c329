"""`parrot-ser serve MODEL_DIR`: the FastAPI app of parrot_ser.service.app under uvicorn."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape

from parrot_ser.cli.common import err, guard
from parrot_ser.errors import ConfigError
from parrot_ser.notices import untrained_models_text

TOKEN_ENV = "PARROT_SER_TOKEN"


def _access_token(host: str, token: str | None, public: bool) -> str | None:
    """Loopback: the token only if given. Beyond loopback: the given one, none with --public, else a
    new random one, printed once (the page asks for it)."""
    from parrot_ser.service.auth import is_loopback

    if token or is_loopback(host) or public:
        if public and not is_loopback(host) and not token:
            err.print(f"[yellow]warning:[/] serving on {host} without a token (--public): anyone who reaches "
                      "this port can use the model")
        return token or None
    import secrets

    token = secrets.token_urlsafe(18)
    err.print(f"bound beyond loopback ({host}): every endpoint but /health needs the token [bold]{token}[/] "
              f"(header 'Authorization: Bearer TOKEN'; set your own with --token or {TOKEN_ENV}; --public: none)")
    return token


@guard
def serve(
    model_dir: Path = typer.Argument(..., help="Model bundle folder (from `parrot-ser export`)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0: all interfaces)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", help="Largest request body (413 above)."),
    max_seconds: float = typer.Option(120.0, "--max-seconds", help="Longest recording in seconds (413 above)."),
    workers_threads: int = typer.Option(4, "--workers-threads", min=1,
                                        help="Threads serving requests (model calls are serialised by a lock; "
                                             "extra threads decode uploads meanwhile)."),
    window: float | None = typer.Option(None, "--window", help="As `predict --window` (default: windows of the "
                                                                "model's training clip length for longer files)."),
    analyze_max_mb: float = typer.Option(1024.0, "--analyze-max-mb", help="Largest /v1/analyze upload "
                                                                         "(streamed to a temporary file)."),
    analyze_max_seconds: float = typer.Option(4 * 3600.0, "--analyze-max-seconds",
                                              help="Longest /v1/analyze recording in seconds."),
    stream_max_seconds: float = typer.Option(4 * 3600.0, "--stream-max-seconds",
                                             help="Longest WebSocket session (/v1/stream) in seconds of audio."),
    vad: str = typer.Option("silero", "--vad", help="Voice activity for /v1/analyze and /v1/stream: silero "
                                                   "or energy."),
    token: str | None = typer.Option(None, "--token", envvar=TOKEN_ENV, show_envvar=True,
                                     help="Required on every endpoint but /health (header 'Authorization: "
                                          "Bearer TOKEN'; the page asks once). Default off on 127.0.0.1; "
                                          "beyond loopback one is generated unless --public."),
    public: bool = typer.Option(False, "--public", help="Bound beyond loopback, serve without a token."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level: critical, error, warning, "
                                                            "info, debug or trace."),
) -> None:
    """The web page at / (upload or microphone), POST /v1/predict (short clips) and /v1/analyze (long
    recordings: a timeline), the WebSocket /v1/stream, GET /v1/labels, /v1/model, /health; OpenAPI at
    /docs and /openapi.json."""
    try:
        import uvicorn

        from parrot_ser.service.app import ServiceLimits, create_app
    except ImportError as e:
        raise ConfigError(f"the HTTP service needs the 'serve' extra: pip install 'parrot-ser[serve]' ({e})") from None
    if min(max_upload_mb, max_seconds, analyze_max_mb, analyze_max_seconds, stream_max_seconds) <= 0:
        raise ConfigError("--max-upload-mb, --max-seconds and the --analyze-/--stream- limits must be positive")
    if vad not in ("silero", "energy"):
        raise ConfigError(f"unknown --vad {vad!r}; choose silero (default) or energy")
    # Verifying hashes and rebuilding encoders takes seconds to minutes (measured 17 s): say so first.
    err.print(f"loading model bundle {model_dir} (verifying files, building encoders) ...")
    t0 = time.perf_counter()
    token = _access_token(host, token, public)
    limits = ServiceLimits(max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_seconds=max_seconds,
                           analyze_max_bytes=int(analyze_max_mb * 1024 * 1024), analyze_max_seconds=analyze_max_seconds,
                           stream_max_seconds=stream_max_seconds)
    app = create_app(model_dir, limits=limits, thread_limit=workers_threads, window=window, token=token, vad=vad)
    pred = app.state.predictor
    if getattr(pred, "untrained", None):
        err.print(f"[bold red]warning: {escape(untrained_models_text(pred.untrained))}[/]")
    err.print(f"loaded in {time.perf_counter() - t0:.1f} s; serving {model_dir} ({len(pred.labels)} labels) on "
              f"http://{host}:{port}  (page: /, docs: /docs)" + ("; token required" if token else ""))
    uvicorn.run(app, host=host, port=port, log_level=log_level)
