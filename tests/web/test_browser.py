"""The dashboard in a real browser (Debian's Chromium, headless) against a real HTTP server.

Set HOTLINE_TEST_SCREENSHOTS=/some/dir to keep screenshots of the pages it visits.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from hotline import registry
from hotline.models import Transcript
from tests.web.conftest import PASSWORD

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
WAIT_MS = 10_000


@pytest.fixture
def server(app) -> Iterator[str]:
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        from tests.conftest import missing_service

        missing_service(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=30_000)
        try:
            yield browser
        finally:
            browser.close()


def _shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if keep := os.environ.get("HOTLINE_TEST_SCREENSHOTS"):
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)


def test_engineer_reviews_a_voicemail(server, browser, app, accounts, voicemail, tmp_path):
    context = browser.new_context(locale="ru-RU", viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

    page.goto(server + "/review")
    assert "/login" in page.url
    _shot(page, tmp_path, "login")
    page.fill("input[name=login]", "ivanov")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server + "/review")
    _shot(page, tmp_path, "review")
    page.click(f"text={voicemail.number}")
    page.wait_for_url(f"{server}/requests/{voicemail.number}")

    # Play the recording: clicking a word seeks there and plays.
    page.click(".word.low")
    page.wait_for_function(
        "() => { const a = document.querySelector('audio');"
        " return a.readyState >= 2 && (a.currentTime > 0.75 || a.ended); }",
        timeout=WAIT_MS,
    )
    state = page.evaluate(
        "() => { const a = document.querySelector('audio');"
        " return {t: a.currentTime, d: a.duration, err: a.error && a.error.code}; }"
    )
    assert state["err"] is None and abs(state["d"] - 3.0) < 0.1 and state["t"] >= 0.7
    _shot(page, tmp_path, "request")

    # Correct the transcript.
    page.fill("textarea[name=text] >> nth=0", "Линия 3 не читает QR-коды")
    page.click("text=Сохранить исправление")
    page.wait_for_selector("text=Исправленная расшифровка сохранена.")

    # Change the status along the lifecycle.
    page.select_option("#status-form select[name=status]", "in_progress")
    page.fill("#status-form input[name=note]", "беру в работу")
    page.click("#status-form button[type=submit]")
    page.wait_for_selector("text=Статус: в работе.")
    _shot(page, tmp_path, "after")

    with app.extensions["hotline.db"].session() as s:
        assert registry.get_request(s, voicemail.number).status == "in_progress"
        t = s.scalars(select(Transcript)).one()
        assert (t.text, t.corrected_text) == ("линия три не читает коды", "Линия 3 не читает QR-коды")

    page.goto(server + "/")
    page.wait_for_selector("svg.chart")
    _shot(page, tmp_path, "overview")
    page.goto(server + "/calls")
    _shot(page, tmp_path, "calls")
    # The CSP lets nothing inline run; a violation would show up as a console error.
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
    context.close()
