"""In Chromium: every page at 390 px without sideways scrolling, and pages that update by themselves.

Set HOTLINE_TEST_SCREENSHOTS=/some/dir to keep the screenshots.
"""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from hotline import registry
from tests.web.conftest import PASSWORD
from tests.web.test_browser import WAIT_MS, _shot, browser, server  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

PHONE = {"width": 390, "height": 844}


def _login(page, server_url: str, login: str) -> None:
    page.goto(server_url + "/login")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server_url + "/")


def _no_sideways_scroll(page) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} is {width} px wide"


def _archived(app) -> str:
    with app.extensions["hotline.db"].session() as s:
        req = registry.open_request(
            s,
            kind="problem",
            channel="email",
            actor="email:master@zavod.ru",
            email="master.of.a.very.long.address.nobody.types@zavod-s-ochen-dlinnym-imenem.ru",
            subject="Сканер на линии упаковки номер четыре не распознаёт коды после обновления прошивки",
        )
        registry.change_status(s, req, "in_progress", actor="engineer:admin")
        registry.change_status(s, req, "processed", actor="engineer:admin", note="Обновили прошивку")
        return req.number


def _flow_call(app, settings) -> int:
    """A call through the real flow: status lookup of an unknown number, then the menu."""
    from hotline.models import Call
    from ivr import flow
    from ivr.store import CallStore

    store = CallStore(app.extensions["hotline.db"], settings, "twilio")
    for event in (flow.CallStarted("+79001112233"), flow.DigitsEntered("1"), flow.DigitsEntered("10019#")):
        store.handle("CA" + "1" * 32, event, from_number="+79001112233", to_number="+73435674530")
    store.hang_up("CA" + "1" * 32, backend_status="completed", duration_seconds=41)
    with app.extensions["hotline.db"].session() as s:
        return s.query(Call).filter_by(backend="twilio").one().id


def test_every_page_fits_a_phone(server, browser, app, accounts, voicemail, settings, tmp_path):  # noqa: F811
    archived = _archived(app)
    story = _flow_call(app, settings)
    context = browser.new_context(locale="ru-RU", viewport=PHONE, device_scale_factor=1, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(server + "/login")
    _no_sideways_scroll(page)
    _shot(page, tmp_path, "phone-login")
    _login(page, server, "admin")
    pages = {
        "overview": "/",
        "review": "/review",
        "requests": "/requests",
        "mine": "/requests?mine=1",
        "archive": "/archive",
        "request": f"/requests/{voicemail.number}",
        "archived-request": f"/requests/{archived}",
        "calls": "/calls",
        "call": f"/calls/{voicemail.call_id}",
        "call-story": f"/calls/{story}",
        "users": "/users",
        "not-found": "/no-such-page",
    }
    for name, path in pages.items():
        page.goto(server + path)
        _no_sideways_scroll(page)
        # The menu is folded; unfolded, every item and «Выйти» are on screen.
        assert not page.is_visible("text=Выйти")
        page.click("#menu-toggle")
        for item in ("Обзор", "Голосовые", "Мои заявки", "Звонки", "Пользователи", "Выйти"):
            box = page.locator("header.top").get_by_text(item).first.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (name, item, box)
        _no_sideways_scroll(page)
        _shot(page, tmp_path, f"phone-{name}")
    # Tables are cards: each value has its column's name beside it.
    page.goto(server + "/requests")
    label = page.evaluate(
        "() => getComputedStyle(document.querySelector('td[data-label]'), '::before').content"
    )
    assert label == '"№"'
    page.click("#menu-toggle")
    page.click("text=Выйти")
    page.wait_for_url(server + "/login")
    context.close()


def test_a_voicemail_arriving_while_the_page_is_open(server, browser, app, accounts, tmp_path):  # noqa: F811
    app.config["LIVE_POLL_MS"] = 300
    context = browser.new_context(locale="ru-RU", viewport={"width": 1360, "height": 900})
    context.grant_permissions(["notifications"], origin=server)
    # Record browser notifications instead of showing them.
    context.add_init_script(
        "window.__notes = [];"
        "window.Notification = class {"
        " constructor(title, options) { window.__notes.push([title, options.body]); }"
        " addEventListener() {} static get permission() { return 'granted'; }"
        " static requestPermission() { return Promise.resolve('granted'); } };"
    )
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    _login(page, server, "ivanov")
    page.goto(server + "/review")
    page.wait_for_selector("text=Все голосовые заявки разобраны.")
    assert page.title().startswith("Голосовые заявки")
    page.evaluate("() => { window.__same_page = true; }")

    with app.extensions["hotline.db"].session() as s:
        req = registry.open_request(
            s,
            kind="incident",
            channel="phone",
            actor="caller:+79001234567",
            phone="+79001234567",
            subject="Линия 3 стоит",
            kind_confirmed=False,
        )
        number = req.number

    page.wait_for_selector(f"a:has-text('{number}')")
    page.wait_for_function("() => document.title.startsWith('(1) ')")
    assert page.evaluate("() => window.__same_page") is True  # no reload
    assert page.locator("[data-live-count]").first.inner_text() == "1"
    page.wait_for_function("() => window.__notes.length === 1")
    assert page.evaluate("() => window.__notes") == [
        ["Новая голосовая заявка", f"Заявка {number} ждёт разбора"]
    ]
    _shot(page, tmp_path, "live-review")

    # The request page follows its request: another engineer takes it into work.
    page.goto(f"{server}/requests/{number}")
    page.evaluate("() => { window.__same_page = true; }")
    with app.extensions["hotline.db"].session() as s:
        registry.change_status(s, registry.get_request(s, number), "in_progress", actor="engineer:admin")
    page.wait_for_selector("#live-head .badge.st-in_progress")
    page.wait_for_selector("#live-history >> text=смена статуса")
    assert page.evaluate("() => window.__same_page") is True
    page.wait_for_function("() => document.title.startsWith('Заявка')")  # nothing waits any more
    assert not [e for e in errors if "Content Security Policy" in e], errors
    context.close()


def test_review_keys_clarification_truth_and_reply(server, browser, app, accounts, voicemail, tmp_path):  # noqa: F811
    with app.extensions["hotline.db"].session() as s:
        second = registry.open_request(
            s, kind="problem", channel="phone", actor="caller:+79005550000", phone="+79005550000"
        ).number
    context = browser.new_context(locale="ru-RU", viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    _login(page, server, "ivanov")
    page.goto(server + "/review")
    page.keyboard.press("j")  # the first (oldest) voicemail
    page.wait_for_url(f"{server}/requests/{voicemail.number}")

    # K plays and pauses the recording.
    page.keyboard.press("k")
    page.wait_for_function("() => !document.querySelector('audio').paused")
    page.keyboard.press("k")
    page.wait_for_function("() => document.querySelector('audio').paused")
    # Ctrl+Enter in the transcript saves it.
    page.fill("form[data-save] textarea[name=text] >> nth=0", "Линия 3 не читает QR-коды")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=Исправленная расшифровка сохранена.")
    assert page.inner_text("p.lead") == "Линия 3 не читает QR-коды"  # the subject follows

    # Clarification without SMS: the page says so before anything is sent.
    warning = page.inner_text("#no-reach")
    assert "Заказчику вопрос тоже не отправить" in warning and "звонивший услышит его" in warning
    page.fill("textarea[name=question]", "Какая модель камеры на линии 3?")
    page.click("form[action$='/clarify'] button[type=submit]")
    page.wait_for_selector(".flash.warn >> text=заказчику не отправлен")
    assert "Какая модель камеры на линии 3?" in page.inner_text("#clarification")
    assert "не будет отправлено" in page.inner_text("#live-history")
    # The reply form is honest too: no way to write to this customer.
    assert "Ответить отсюда нельзя: SMS не отправляются — их отправку не настроил администратор" in (
        page.inner_text("#reply-impossible")
    )
    assert page.inner_text("main").count("не настроил администратор") == 1  # said once
    _shot(page, tmp_path, "clarification-truth")

    # J goes on to the next voicemail.
    page.keyboard.press("j")
    page.wait_for_url(f"{server}/requests/{second}")
    context.close()


def test_reply_form_in_the_browser(browser, make_settings, db, accounts, tmp_path):  # noqa: F811
    import threading

    from werkzeug.serving import make_server

    from hotline.models import utcnow
    from hotline.notify import outbox
    from web import create_app

    settings = make_settings(HOTLINE_SMTP_URL="smtp://127.0.0.1:2525")
    app = create_app({"TESTING": True, "LIVE_POLL_MS": 300}, settings=settings, db=db)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_port}"
    try:
        with db.session() as s:
            number = registry.open_request(
                s, kind="incident", channel="email", actor="email:master@zavod.ru", email="master@zavod.ru"
            ).number
        context = browser.new_context(locale="ru-RU", viewport=PHONE, is_mobile=True)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        _login(page, url, "ivanov")
        page.goto(f"{url}/requests/{number}")
        assert "Уйдёт по e-mail на master@zavod.ru" in page.inner_text("#reply")
        page.fill("#reply textarea[name=text]", "Перезагрузите камеру, пожалуйста.")
        page.click("text=Отправить ответ")
        page.wait_for_selector("text=будет отправлен заказчику по e-mail на master@zavod.ru")
        page.wait_for_selector("#live-history >> text=ждёт отправки")

        class Mailer:
            sent: list[EmailMessage] = []

            def send(self, message: EmailMessage) -> None:
                self.sent.append(message)

        outbox.drain(settings, db, mailer=Mailer(), now=utcnow())
        # The automatic reply with the number, then the engineer's own words.
        bodies = [m.get_body().get_content() for m in Mailer.sent]
        assert len(bodies) == 2 and "Перезагрузите камеру, пожалуйста." in bodies[1]
        # The page learns of the delivery by itself.
        page.wait_for_selector("#live-history >> text=отправлено")
        _no_sideways_scroll(page)
        _shot(page, tmp_path, "phone-reply")
        context.close()
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
