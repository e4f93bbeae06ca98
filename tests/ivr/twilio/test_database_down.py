"""Twilio webhooks while the database is down, and after it comes back (real PostgreSQL)."""

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from sqlalchemy import select

from hotline.db import Database
from hotline.models import Request
from hotline.settings import BusinessHours
from ivr.twilio.client import RecordingServer, TwilioCall, make_wav
from web import create_app

pytestmark = pytest.mark.postgres

PUBLIC = "https://hotline.example.com"
TOKEN = "test-auth-token"
SID = "AC" + "1" * 32
APOLOGY = "временно недоступна"


@pytest.fixture
def api() -> Iterator[RecordingServer]:
    with RecordingServer(SID, TOKEN) as server:
        yield server


@pytest.fixture
def db(proxied_db: Database) -> Database:
    return proxied_db  # and so `make_settings` and `settings` use it too


@pytest.fixture
def client(db, api, make_settings) -> Iterator[httpx.Client]:
    settings = make_settings(
        HOTLINE_PUBLIC_URL=PUBLIC,
        TWILIO_ACCOUNT_SID=SID,
        TWILIO_AUTH_TOKEN=TOKEN,
        HOTLINE_TWILIO_API_BASE=api.base_url,
    )
    tz = settings.business_hours.timezone
    settings = replace(
        settings, business_hours=BusinessHours(frozenset(range(7)), dt.time(0), dt.time(23, 59), tz)
    )
    app = create_app({"TESTING": True}, settings=settings, db=db)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver") as c:
        yield c


def new_call(client) -> TwilioCall:
    return TwilioCall(client, PUBLIC, TOKEN, account_sid=SID)


def test_caller_hears_an_apology_while_the_database_is_down(pg_via_proxy, client, caplog):
    call = new_call(client)
    call.start()
    pg_via_proxy.cut()
    with caplog.at_level(logging.ERROR):
        heard = " ".join(call.press("1"))  # the menu step
        late = new_call(client)
        heard_late = " ".join(late.start())  # the voice webhook
    assert call.responses[-2].status_code == 200  # the step; the last one is the status callback
    assert APOLOGY in heard and call.ended
    assert APOLOGY in heard_late and late.ended
    assert "<Hangup" in late.responses[0].text and late.responses[0].status_code == 200
    assert "Traceback" not in caplog.text and "database unavailable" in caplog.text

    pg_via_proxy.restore()
    again = new_call(client)
    assert "Здравствуйте" in " ".join(again.start())  # no restart needed
    assert "Введите номер заявки" in " ".join(again.press("1"))


def test_recording_callback_is_retried_until_the_database_is_back(pg_via_proxy, client, db, api):
    call = new_call(client)
    call.start()
    call.press("2")
    call.press("1")  # an incident; the caller is asked to speak
    record = call.waiting.verb
    sid = "RE" + "5" * 32
    params = {"RecordingUrl": api.add(sid, make_wav(4)), "RecordingSid": sid, "RecordingDuration": "4"}
    callback = {**params, "RecordingStatus": "completed", "RecordingChannels": "1"}

    pg_via_proxy.cut()
    action = call.post(record.get("action"), params)
    assert action.status_code == 200 and APOLOGY in action.text and "<Hangup" in action.text
    # Twilio retries a recording status callback that got a 5xx.
    assert call.post(record.get("recordingStatusCallback"), callback).status_code == 503

    pg_via_proxy.restore()
    assert call.post(record.get("recordingStatusCallback"), callback).status_code == 204
    with db.session() as s:
        request = s.scalars(select(Request)).one()
        assert request.kind == "incident" and request.contact_phone == call.caller
        [attachment] = request.attachments
        assert attachment.external_id == f"twilio:{sid}" and attachment.size > 4 * 8000
