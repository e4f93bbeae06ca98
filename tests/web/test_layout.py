"""In Chromium: numbers on one line, long words inside their column, a phone's first screen.

Set HOTLINE_TEST_SCREENSHOTS=/some/dir to keep the screenshots.
"""

from __future__ import annotations

import pytest

from hotline import calllog, registry
from tests.web.test_browser import WAIT_MS, _shot, browser, server  # noqa: F401 - fixtures
from tests.web.test_phone_and_live import PHONE, _login

pytestmark = pytest.mark.slow

DESKTOP = {"width": 1366, "height": 768}
LOG_LINE = "ERROR:reader.scan.decode:" + "0xDEADBEEF" * 28  # 305 characters, no space
URL = "https://psr-qr.example/support/logs?line=" + "a1b2c3d4" * 20

# The text of each element, as many line boxes as it takes.
LINES = """sel => Array.from(document.querySelectorAll(sel), el => {
  const range = document.createRange();
  range.selectNodeContents(el);
  return [el.textContent, new Set(Array.from(range.getClientRects(), r => Math.round(r.top))).size];
})"""


def _seed(app) -> str:
    """Requests as a busy list has them (long subjects, addresses), one with pasted log lines."""
    with app.extensions["hotline.db"].session() as s:
        for i in range(12):
            registry.open_request(
                s,
                kind="problem",
                channel="email",
                actor="email:x@y.ru",
                email=f"master.smeny.{i}.ochen.dlinnyi.adres@zavod-s-dlinnym-imenem.ru",
                name="Константин Константинопольский",
                organisation="Уральский завод упаковочного оборудования",
                subject="Сканер на линии упаковки номер четыре не распознаёт коды после обновления прошивки",
            )
        req = registry.open_request(
            s,
            kind="incident",
            channel="phone",
            actor="caller:+79001234567",
            phone="+79001234567",
            subject="Линия 3 стоит",
            description=f"Журнал считывателя:\n{LOG_LINE}",
            kind_confirmed=False,
        )
        registry.add_note(s, req, actor="engineer:ivanov", text=LOG_LINE)
        registry.add_note(s, req, actor="engineer:ivanov", text=f"Смотрите {URL}")
        calllog.start_call(s, backend="asterisk", backend_call_id="1700000000.7", from_number="+79001234567")
        return req.number


def _one_line(page, selector: str) -> None:
    found = page.evaluate(LINES, selector)
    assert found, selector
    for text, lines in found:
        assert lines == 1, (page.url, text, lines)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_numbers_never_wrap(server, browser, app, accounts, viewport, tmp_path):  # noqa: F811
    number = _seed(app)
    context = browser.new_context(locale="ru-RU", viewport=viewport, is_mobile=viewport is PHONE)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    _login(page, server, "ivanov")
    page.goto(server + "/requests")
    _one_line(page, "td[data-label='№'] a")
    _one_line(page, "a[href^='tel:']")
    _shot(page, tmp_path, f"numbers-{viewport['width']}")
    page.goto(f"{server}/requests/{number}")
    _one_line(page, "h1 .mono")
    _one_line(page, "a[href^='tel:']")
    context.close()


def test_a_long_word_stays_in_its_column(server, browser, app, accounts, tmp_path):  # noqa: F811
    number = _seed(app)
    context = browser.new_context(locale="ru-RU", viewport=PHONE, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    _login(page, server, "ivanov")
    page.goto(f"{server}/requests/{number}")
    # A phone browser widens its layout viewport to a wide page: compare with the screen too.
    wide = page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
    assert wide[0] <= wide[1] <= PHONE["width"], wide
    _shot(page, tmp_path, "long-word-phone")

    page.set_viewport_size(DESKTOP)
    page.goto(f"{server}/requests/{number}")
    aside = page.locator("aside").bounding_box()
    assert aside
    for text in page.locator(".timeline .pre, .card > .pre").all():
        box = text.bounding_box()
        assert box and box["x"] + box["width"] <= aside["x"], (box, aside)
    assert page.evaluate("() => document.scrollingElement.scrollWidth <= window.innerWidth")
    _shot(page, tmp_path, "long-word-desktop")
    context.close()


def test_a_phone_sees_requests_first_and_can_tap_them(server, browser, app, accounts, tmp_path):  # noqa: F811
    _seed(app)
    context = browser.new_context(locale="ru-RU", viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    _login(page, server, "ivanov")
    for path in ("/requests", "/calls"):
        page.goto(server + path)
        assert not page.is_visible("form.filters") and page.is_visible("summary >> text=Фильтры и поиск")
        first = page.locator("table.list tbody tr").first.bounding_box()
        assert first and first["y"] < PHONE["height"], (path, first)  # a row on the first screen
        page.click("summary >> text=Фильтры и поиск")
        assert page.is_visible("form.filters")
    page.goto(server + "/requests?kind=incident")
    assert page.is_visible("form.filters")  # a filter is set: it stays in view

    # Tap targets: at least 40 px tall.
    page.goto(server + "/requests")
    for link in page.locator("td[data-label='№'] a").all():
        box = link.bounding_box()
        assert box and box["height"] >= 40, box
    page.click("#menu-toggle")
    logout = page.locator("header.top").get_by_text("Выйти").bounding_box()
    assert logout and logout["height"] >= 40, logout
    # The kind's «not confirmed» is written out: a touch screen shows no title.
    assert page.is_visible("td[data-label='Вид'] >> text=не подтверждён")

    # A call card shows no empty fields.
    page.goto(server + "/calls")
    card = page.locator("table.list tbody tr").first
    assert not card.locator("td[data-label='Заявка']").is_visible()
    assert card.locator("td[data-label='Линия']").is_visible()
    _shot(page, tmp_path, "phone-calls")
    context.close()


def test_desktop_filters_are_unfolded(server, browser, app, accounts):  # noqa: F811
    context = browser.new_context(locale="ru-RU", viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    _login(page, server, "ivanov")
    for path in ("/requests", "/calls"):
        page.goto(server + path)
        assert page.is_visible("form.filters") and not page.is_visible("summary >> text=Фильтры и поиск")
    context.close()
