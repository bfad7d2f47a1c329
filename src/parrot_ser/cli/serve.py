"""`parrot-ser serve MODEL_DIR`: the FastAPI app of parrot_ser.service.app under uvicorn."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape

from parrot_ser.cli.common import err, guard
from parrot_ser.errors import ConfigError
from parrot_ser.notices import untrained_models_text


@guard
def serve(
    model_dir: Path = typer.Argument(..., help="Model bundle folder (from `parrot-ser export`)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0: all interfaces)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", help="Largest request body (413 above)."),
    max_seconds: float = typer.Option(120.0, "--max-seconds", help="Longest recording in seconds (413 above)."),
    workers_threads: int = typer.Option(4, "--workers-threads", min=1,
                                        help="Threads serving requests (model calls are serialised by a lock; "
                                             "extra threads decode uploads meanwhile)."),
    window: float | None = typer.Option(None, "--window", help="As `predict --window` (default: 10 s windows "
                                                                "above 20 s)."),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """POST /v1/predict (multipart field 'file' or raw body), GET /v1/labels, /v1/model, /health;
    OpenAPI at /docs and /openapi.json."""
    try:
        import uvicorn

        from parrot_ser.service.app import create_app
    except ImportError as e:
        raise ConfigError(f"the HTTP service needs the 'serve' extra: pip install 'parrot-ser[serve]' ({e})") from None
    if max_upload_mb <= 0 or max_seconds <= 0:
        raise ConfigError("--max-upload-mb and --max-seconds must be positive")
    # Verifying hashes and rebuilding encoders takes seconds to minutes (measured 17 s): say so first.
    err.print(f"loading model bundle {model_dir} (verifying files, building encoders) ...")
    t0 = time.perf_counter()
    app = create_app(model_dir, max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_seconds=max_seconds,
                     thread_limit=workers_threads, window=window)
    pred = app.state.predictor
    if getattr(pred, "untrained", None):
        err.print(f"[bold red]warning: {escape(untrained_models_text(pred.untrained))}[/]")
    err.print(f"loaded in {time.perf_counter() - t0:.1f} s; serving {model_dir} ({len(pred.labels)} labels) on http://{host}:{port}  (docs: /docs)")
    uvicorn.run(app, host=host, port=port, log_level=log_level)
