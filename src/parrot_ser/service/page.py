"""The web page at ``/``: upload a file or record from the microphone; the label probabilities of a
short clip, the timeline of a long one; the model card's facts. A small static page (HTML, CSS, one
script) served from this package: no CDN, no build step, works offline. Chosen over Gradio, which
loads its front end and fonts from the network by default and would add a large dependency."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"


def add_page(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
