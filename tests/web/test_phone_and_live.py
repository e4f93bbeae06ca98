"""In Chromium: every page at 390 px without sideways scrolling, and pages that update by themselves.

Set HOTLINE_TEST_SCREENSHOTS=/some/dir to keep the screenshots.
"""

from __future__ import annotations

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


def test_every_page_fits_a_phone(server, browser, app, accounts, voicemail, tmp_path):  # noqa: F811
    archived = _archived(app)
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
