"""The call log: filters, search, keyset pages, one call's timeline."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from hotline import calllog
from hotline.models import Call

YEKT = dt.timezone(dt.timedelta(hours=5))


def _seed(app, n: int = 120) -> None:
    start = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)
    with app.extensions["hotline.db"].session() as s:
        for i in range(n):
            call = calllog.start_call(
                s,
                backend="twilio" if i % 2 else "asterisk",
                backend_call_id=f"CA{i:04d}",
                from_number=f"+7900000{i:04d}",
                caller_name="Пётр Сидоров" if i == 7 else None,
                started_at=start + dt.timedelta(hours=i),
            )
            calllog.end_call(
                s,
                call,
                outcome="abandoned" if i % 3 == 0 else "status_heard",
                ended_at=call.started_at + dt.timedelta(seconds=65),
            )


def _ids(html: str) -> list[int]:
    return [int(m) for m in re.findall(r'href="/calls/(\d+)"', html)]


def test_newest_first_and_keyset_pages(engineer, app):
    _seed(app)
    first = engineer.get("/calls").get_data(as_text=True)
    ids = _ids(first)
    assert len(ids) == 50 and ids == sorted(ids, reverse=True) and ids[0] == 120
    older = re.search(r'href="\?before=(\d+)"', first)
    assert older and int(older.group(1)) == ids[-1]
    second = engineer.get(f"/calls?before={ids[-1]}").get_data(as_text=True)
    assert _ids(second)[0] == ids[-1] - 1 and len(_ids(second)) == 50
    newer = re.search(r'href="\?after=(\d+)"', second)
    assert newer
    assert _ids(engineer.get(f"/calls?after={newer.group(1)}").get_data(as_text=True)) == ids
    last = engineer.get("/calls?before=21").get_data(as_text=True)
    assert _ids(last) == list(range(20, 0, -1)) and "Более ранние" not in last
    # A cursor that names no call starts from the top; garbage is ignored.
    assert _ids(engineer.get("/calls?before=999999").get_data(as_text=True)) == ids
    assert _ids(engineer.get("/calls?before=abc").get_data(as_text=True)) == ids


def test_filters(engineer, app):
    _seed(app)

    def ids(**args: str) -> list[int]:
        return _ids(engineer.get("/calls", query_string=args).get_data(as_text=True))

    assert all(i % 2 == 0 for i in ids(backend="twilio"))  # id = i + 1: odd i are twilio
    assert set(ids(outcome="abandoned")) == {i + 1 for i in range(120) if i % 3 == 0}
    assert ids(number="+7 900 000 0042") == [43]
    assert ids(q="сидоров") == [8]
    assert ids(q="CA0010") == [11]
    # Dates are the plant's days: 1 Nov 2026 local is 08:00 UTC (13:00 local) … 18:59 UTC.
    first_day = ids(**{"from": "2026-11-01", "to": "2026-11-01"})
    assert first_day == list(range(11, 0, -1))
    starts = [dt.datetime(2026, 11, 1, 8, tzinfo=dt.UTC) + dt.timedelta(hours=i - 1) for i in first_day]
    assert all(s.astimezone(YEKT).date() == dt.date(2026, 11, 1) for s in starts)
    assert ids(**{"from": "not a date"}) == ids()
    page = engineer.get("/calls?outcome=abandoned").get_data(as_text=True)
    assert "положил трубку" in page and "01.11.2026 13:00" in page  # local time, Russian label


def test_call_page_timeline_request_and_recording(engineer, voicemail):
    page = engineer.get(f"/calls/{voicemail.call_id}").get_data(as_text=True)
    assert "Нажал 2." in page and "Выбрал: оставить новую заявку." in page
    assert "Выбрал вид заявки: инцидент." in page
    assert "new_request" not in page and "incident" not in page  # no codes on screen
    assert f'href="/requests/{voicemail.number}"' in page
    assert f'src="/files/{voicemail.attachment_id}"' in page
    assert "оставил заявку" in page and "0:40" in page
    assert engineer.get("/calls/999").status_code == 404


def test_search_by_request_number_finds_its_call(engineer, voicemail):
    assert _ids(engineer.get("/calls", query_string={"q": voicemail.number}).get_data(as_text=True)) == [
        voicemail.call_id
    ]


def test_ongoing_calls(engineer, app):
    with app.extensions["hotline.db"].session() as s:
        calllog.start_call(s, backend="asterisk", backend_call_id="live", from_number="+79005550000")
        assert s.query(Call).count() == 1
    page = engineer.get("/calls?outcome=-").get_data(as_text=True)
    assert '<a href="tel:+79005550000">8 (900) 555-00-00</a>' in page and "идёт" in page


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        # A telephone number as people read it, and a link that dials it from a phone.
        ("+73435674530", '<a href="tel:+73435674530">8 (343) 567-45-30</a>'),
        ("+447911123456", '<a href="tel:+447911123456">+44 7911 123456</a>'),
        # What no phone dials is shown as it came, without a link.
        ("101", "101"),
        ("sip:alice@pbx.example", "sip:alice@pbx.example"),
        (None, "номер скрыт"),
    ],
)
def test_the_call_log_shows_numbers_as_people_read_them(engineer, app, stored, shown):
    with app.extensions["hotline.db"].session() as s:
        calllog.start_call(s, backend="asterisk", backend_call_id="c1", from_number=stored)
        call_id = s.query(Call).one().id
    cell = engineer.get("/calls").get_data(as_text=True).split('data-label="Звонивший">')[1].split("</td>")[0]
    assert cell == shown
    page = engineer.get(f"/calls/{call_id}").get_data(as_text=True)
    assert f"<dt>Звонивший</dt><dd>{shown}</dd>" in page


def test_call_page_tells_the_call_as_a_story(engineer, app, settings):
    """A call through the real flow: the page says what the caller heard and did, in Russian."""
    from ivr import flow
    from ivr.store import CallStore
    from voice_models.prompts import prompt_text

    store = CallStore(app.extensions["hotline.db"], settings, "console")
    for event in (flow.CallStarted("+79001112233"), flow.DigitsEntered("1"), flow.DigitsEntered("12345#")):
        store.handle("console-story", event, from_number="+79001112233", to_number="console")
    store.hang_up("console-story")
    with app.extensions["hotline.db"].session() as s:
        call = s.query(Call).one()
    page = engineer.get(f"/calls/{call.id}").get_data(as_text=True)
    assert "Звонивший услышал:" in page
    assert prompt_text("greeting").split("!")[0] in page  # the greeting's own words
    assert prompt_text("enter_number").split(".")[0] in page
    assert "Выбрал: узнать статус заявки." in page and "Набрал 12345." in page
    assert "Номер 12345 введён с ошибкой" in page
    assert "Звонивший положил трубку при вводе номера заявки." in page
    assert "проверка из терминала" in page
    for code in ("console", "call_started", "lookup", "number_invalid", "hangup", "digits"):
        assert code not in re.sub(r"<[^>]+>", " ", page), code  # no codes in the text


def test_every_outcome_can_be_named_and_picked(engineer, app):
    from hotline.vocabulary import Outcome

    with app.extensions["hotline.db"].session() as s:
        for i, outcome in enumerate(Outcome):
            call = calllog.start_call(
                s, backend="asterisk", backend_call_id=f"oc{i}", from_number=f"+7900{i:07d}"
            )
            calllog.end_call(s, call, outcome=outcome)
    page = engineer.get("/calls").get_data(as_text=True)
    for outcome in Outcome:
        assert f'<option value="{outcome.value}"' in page, outcome  # in the filter
        assert f">{outcome.label}</span>" in page, outcome  # named in the list
        assert _ids(engineer.get("/calls", query_string={"outcome": outcome.value}).get_data(as_text=True))
    text = re.sub(r"<[^>]+>", " ", page)
    for code in ("too_many_attempts", "duty_unavailable", "service_restart", "callback_failed"):
        assert code not in text
