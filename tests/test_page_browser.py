"""The web page in a real headless browser (issue 18): Debian's chromium driven by Playwright, against
a real uvicorn server with the real tiny Emo-DB model. Loads the page, checks the model card, uploads
a real Emo-DB clip (probabilities) and a 25 s recording (timeline), and compares what the page shows
with the Python API. CI installs chromium (.ci/run); set PARROT_PAGE_SCREENSHOT=PATH to keep the
screenshot (docs/img/page.png is made this way)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("needs Debian's chromium (apt-get install chromium; .ci/run does it)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extra)")

from live_server import start_server, stop_server  # noqa: E402
from parrot_ser.service.app import create_app  # noqa: E402
from test_tasks_emodb import store  # noqa: E402, F401  (fixture)
from test_timeline import model, recording  # noqa: E402, F401  (fixtures)
from test_timeline_dims import DIMS, regression  # noqa: E402, F401  (fixture)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         # the microphone: chromium's fake capture device (a beep) and no permission prompt
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


def _serve(app):
    return start_server(app, log_level="warning")


@pytest.fixture(scope="module")
def server_url(model):  # noqa: F811
    server, thread = _serve(create_app(model))
    yield f"http://127.0.0.1:{server.config.port}"
    stop_server(server, thread)


def _browser(p, tmp_path):
    return p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
                                                args=FLAGS, viewport={"width": 1100, "height": 900})


def _page(ctx):
    """A new page and the list its script errors land in."""
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


def test_page_upload_shows_probabilities_then_a_timeline(server_url, model, recording, emodb_root, tmp_path):  # noqa: F811
    clip = emodb_root / "wav" / "03a01Wa.wav"
    expected = model.predict(clip)[0]
    long_path, truth = recording
    timeline = model.analyze(long_path)
    with playwright.sync_playwright() as p:
        ctx = _browser(p, tmp_path)
        try:
            page, errors = _page(ctx)
            outside: list[str] = []
            page.on("request", lambda r: None if r.url.startswith((server_url, "data:")) else outside.append(r.url))
            page.goto(server_url + "/")
            page.wait_for_selector("#card-labels", timeout=20_000)
            assert page.inner_text("#card-labels") == ", ".join(model.labels)
            assert "logmel" in page.inner_text("#card-encoders") and "real weights" in page.inner_text("#card-encoders")
            assert page.locator("#card-warning").count() == 0  # a real model: no UNTRAINED warning

            page.set_input_files("#file", str(clip))
            page.click("#go")
            page.wait_for_selector("#top-label", timeout=60_000)
            assert page.inner_text("#top-label") == expected.label
            rows = page.locator(".bar-row")
            assert rows.count() == len(model.labels)
            for i in range(rows.count()):
                lab = rows.nth(i).get_attribute("data-label")
                shown = float(rows.nth(i).locator(".num").inner_text().rstrip(" %"))
                assert shown == pytest.approx(100 * expected.probabilities[lab], abs=0.051)

            page.set_input_files("#file", str(long_path))
            page.click("#go")
            page.wait_for_selector("#segments", timeout=120_000)
            assert page.locator("#segments tr").count() == 1 + len(timeline.segments)
            assert page.locator("#timeline-svg rect.seg").count() == len(timeline.segments)
            assert f"{len(timeline.segments)} segments" in page.inner_text("#result-title")
            shot = Path(os.environ.get("PARROT_PAGE_SCREENSHOT") or tmp_path / "page.png")
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
            assert errors == [] and outside == []  # no script error, nothing fetched from elsewhere
        finally:
            ctx.close()


def test_page_microphone_and_token(model, tmp_path):  # noqa: F811
    """With a token the page asks for it once, then works; the Record button sends the fake
    microphone's audio as a WAV and shows its probabilities."""
    server, thread = _serve(create_app(model, token="page-secret"))
    url = f"http://127.0.0.1:{server.config.port}/"
    try:
        with playwright.sync_playwright() as p:
            ctx = _browser(p, tmp_path)
            try:
                page = ctx.new_page()
                page.goto(url)
                page.wait_for_selector("#token-box:not([hidden])", timeout=20_000)
                assert "unavailable" in page.inner_text("#card-body")
                page.fill("#token", "page-secret")
                page.click("#token-go")
                page.wait_for_selector("#card-labels", timeout=20_000)
                assert page.is_hidden("#token-box")
                page.click("#rec")
                page.wait_for_function("document.getElementById('rec').textContent === 'Stop'", timeout=20_000)
                page.wait_for_timeout(2500)  # about 2.5 s of the fake device's beeps
                page.click("#rec")
                page.wait_for_selector("#top-label", timeout=60_000)
                assert page.inner_text("#top-label") in model.labels
                assert "microphone.wav" in page.inner_text("#result-title")
            finally:
                ctx.close()
    finally:
        stop_server(server, thread)


def test_page_shows_the_dimensions_of_a_regression_only_model(regression, recording, emodb_root, tmp_path):  # noqa: F811
    """A model with dimensions and no label: the card names them, a short clip shows their values,
    a long recording a timeline without a label band, with dimension curves and a table row per
    speech region."""
    from parrot_ser.inference import load_model

    pred = load_model(regression, quiet=True)
    clip = emodb_root / "wav" / "03a01Wa.wav"
    expected = pred.predict(clip)[0]
    long_path, truth = recording
    server, thread = _serve(create_app(pred))
    url = f"http://127.0.0.1:{server.config.port}/"
    try:
        with playwright.sync_playwright() as p:
            ctx = _browser(p, tmp_path)
            try:
                page, errors = _page(ctx)
                page.goto(url)
                page.wait_for_selector("#card-dims", timeout=20_000)
                assert page.inner_text("#card-dims") == ", ".join(DIMS) and page.locator("#card-labels").count() == 0
                page.set_input_files("#file", str(clip))
                page.click("#go")
                page.wait_for_selector("#dims", timeout=60_000)
                assert page.locator("#top-label").count() == 0
                assert page.inner_text("#dims") == ", ".join(f"{d} {expected.dimensions[d]:.2f}" for d in DIMS)
                page.set_input_files("#file", str(long_path))
                page.click("#go")
                page.wait_for_selector("#segments", timeout=120_000)
                assert page.locator("#segments tr").count() == 1 + len(truth)  # a row per speech region
                assert page.locator("#timeline-svg rect.seg").count() == 0  # no label band
                assert page.locator("#timeline-svg path.dim-curve").count() == len(DIMS)
                header = page.inner_text("#segments tr >> nth=0")
                assert all(d in header for d in DIMS) and "emotion" not in header
                page.screenshot(path=str(tmp_path / "dims.png"), full_page=True)
                assert errors == []
            finally:
                ctx.close()
    finally:
        stop_server(server, thread)
