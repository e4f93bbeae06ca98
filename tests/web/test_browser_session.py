"""In a real browser: a session that ends while the engineer types, a recording opened by itself."""

from __future__ import annotations

import pytest

from tests.web.conftest import PASSWORD
from tests.web.test_browser import WAIT_MS, browser, server  # noqa: F401 - fixtures
from tests.web.test_errors import _end_sessions
from tests.web.test_phone_and_live import PHONE

pytestmark = pytest.mark.slow

NOTE = "Линия 3 снова не читает коды после замены сканера"


def _page(browser, app, console: list[str]):  # noqa: F811 - the fixture
    app.config["LIVE_POLL_MS"] = 300
    context = browser.new_context(locale="ru-RU", viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    return context, page


def _log_in(page) -> None:
    page.fill("input[name=login]", "ivanov")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def _notes(app, voicemail) -> list[str]:
    from hotline import registry

    with app.extensions["hotline.db"].session() as s:
        req = registry.get_request(s, voicemail.number)
        return [e.text for e in req.events if e.action == "note"]


def _typing_when_the_session_ends(server, browser, app, voicemail, console: list[str]):  # noqa: F811
    """An engineer logged in on a request's page, a note typed: then the session ends."""
    context, page = _page(browser, app, console)
    request_page = f"{server}/requests/{voicemail.number}"
    page.goto(request_page)
    _log_in(page)
    page.wait_for_url(request_page)
    note = page.locator(f"form[action$='/{voicemail.number}/note'] textarea[name=text]")
    note.fill(NOTE)
    _end_sessions(app)
    return context, page, note


def test_text_sent_after_the_session_ended_comes_back_after_login(
    server,  # noqa: F811
    browser,  # noqa: F811
    app,
    accounts,
    voicemail,
):
    console: list[str] = []
    context, page, note = _typing_when_the_session_ends(server, browser, app, voicemail, console)
    request_page = f"{server}/requests/{voicemail.number}"
    page.click("text=Добавить заметку")
    page.wait_for_url(f"{server}/login?**")
    assert page.locator(".flash", has_text="Войдите, чтобы продолжить.").count() == 1
    _log_in(page)
    page.wait_for_url(request_page)  # the note's page, not a 405 of the form's address
    assert note.input_value() == NOTE
    page.wait_for_selector("text=Текст, который не удалось отправить, восстановлен.")
    assert _notes(app, voicemail) == []
    page.click("text=Добавить заметку")
    page.wait_for_selector("text=Заметка добавлена.")
    assert _notes(app, voicemail) == [NOTE]
    page.reload()
    assert note.input_value() == ""  # sent: not restored again
    assert not page.locator("text=восстановлен").count()
    assert not [e for e in console if "Content Security Policy" in e], console
    context.close()


def test_the_page_says_the_session_ended_and_keeps_the_text_while_logging_in_elsewhere(
    server,  # noqa: F811
    browser,  # noqa: F811
    app,
    accounts,
    voicemail,
):
    console: list[str] = []
    context, page, note = _typing_when_the_session_ends(server, browser, app, voicemail, console)
    request_page = f"{server}/requests/{voicemail.number}"
    banner = page.locator("#session-ended")
    banner.wait_for()
    assert banner.inner_text().startswith("Сеанс завершён. Войдите снова, чтобы не потерять введённый текст.")
    with context.expect_page() as opened:
        banner.locator("a").click()
    login_tab = opened.value
    login_tab.wait_for_load_state()
    _log_in(login_tab)
    login_tab.wait_for_url(request_page)
    login_tab.close()
    banner.wait_for(state="detached")  # the next poll finds the session again
    assert note.input_value() == NOTE
    page.click("text=Добавить заметку")  # with the new session's CSRF token
    page.wait_for_selector("text=Заметка добавлена.")
    assert _notes(app, voicemail) == [NOTE]
    assert not [e for e in console if "Content Security Policy" in e], console
    context.close()


def test_a_recording_opened_by_itself_plays(server, browser, app, accounts, voicemail):  # noqa: F811
    console: list[str] = []
    context, page = _page(browser, app, console)
    page.goto(f"{server}/login")
    _log_in(page)
    page.wait_for_url(f"{server}/")
    page.goto(f"{server}/files/{voicemail.attachment_id}")
    page.wait_for_function(
        "() => { const m = document.querySelector('video, audio'); return m && m.duration > 0; }"
    )
    duration = page.evaluate("() => document.querySelector('video, audio').duration")
    assert abs(duration - 3.0) < 0.1
    assert not [e for e in console if "Content Security Policy" in e], console
    context.close()
