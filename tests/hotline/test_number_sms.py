"""The number of a new phone request by SMS: queued once, sent by the outbox, heard by the caller."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from hotline.models import Notification, Request
from hotline.notify.outbox import drain
from hotline.number_sms import russian_mobile
from ivr import flow
from ivr.speech import Prompt
from ivr.store import CallStore
from ivr.twilio.client import TwilioCall, make_wav
from tests.hotline.mail.conftest import twilio  # noqa: F401 - the fake Twilio Messages API
from tests.ivr.twilio.test_webhooks import PUBLIC, TOKEN, api, make_app  # noqa: F401 - fixtures
from voice_models.prompts import prompt_text

ACCOUNT = "AC0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("phone", "mobile"),
    [
        ("+79001234567", "+79001234567"),
        ("79001234567", "+79001234567"),
        ("89001234567", "+79001234567"),
        ("+7 (900) 123-45-67", "+79001234567"),
        ("+73435674530", None),  # a landline in Yekaterinburg
        ("+380501234567", None),
        ("unknown", None),
        (None, None),
        ("+7900123456", None),
    ],
)
def test_russian_mobiles(phone, mobile):
    assert russian_mobile(phone) == mobile


@pytest.fixture
def sms_settings(make_settings, twilio):  # noqa: F811
    return make_settings(
        HOTLINE_SMS_FROM="+73435674530",
        TWILIO_ACCOUNT_SID=ACCOUNT,
        TWILIO_AUTH_TOKEN="tok3n",
        HOTLINE_TWILIO_API_BASE=twilio.url,
    )


def leave_request(settings, db, tmp_path, caller: str, call_id: str = "1700000000.7"):
    """An Asterisk caller leaves a voice request; the actions of the last step."""
    store = CallStore(db, settings, "asterisk")
    store.handle(call_id, flow.CallStarted(caller), from_number=caller)
    store.handle(call_id, flow.DigitsEntered("2"))
    store.handle(call_id, flow.DigitsEntered("1"))
    wav = tmp_path / f"{call_id}-1.wav"
    wav.write_bytes(make_wav(3))
    step = store.handle(call_id, flow.RecordingFinished(flow.Recording(f"{call_id}-1", 3.0, str(wav))))
    return step, [s for a in step.actions if isinstance(a, flow.Speak) for s in a.segments]


def test_an_asterisk_caller_gets_the_number_by_sms_once(sms_settings, db, tmp_path, twilio):  # noqa: F811
    step, said = leave_request(sms_settings, db, tmp_path, "89001234567")
    assert Prompt("sms_sent") in said
    with db.session() as s:
        n = s.scalars(select(Notification)).one()
        assert (n.kind, n.channel, n.recipient, n.state) == ("created", "sms", "+79001234567", "pending")
    result = drain(sms_settings, db)
    assert (result.sent, result.failed) == (1, 0)
    [sent] = twilio.requests
    with db.session() as s:
        request = s.scalars(select(Request)).one()
        number = request.number
        assert [e.action for e in request.events].count("sms_out") == 1
    assert sent["form"]["To"] == "+79001234567"
    assert f"номер {number}" in sent["form"]["Body"] and f"{number}#" in sent["form"]["Body"]
    assert drain(sms_settings, db).sent == 0 and len(twilio.requests) == 1


def test_a_landline_caller_gets_no_sms(sms_settings, db, tmp_path, twilio):  # noqa: F811
    _, said = leave_request(sms_settings, db, tmp_path, "+73432000000")
    assert Prompt("sms_sent") not in said
    assert drain(sms_settings, db).sent == 0 and twilio.requests == []


def test_no_sms_without_twilio_credentials(settings, db, tmp_path):
    _, said = leave_request(settings, db, tmp_path, "+79001234567")
    assert Prompt("sms_sent") not in said
    with db.session() as s:
        assert s.scalars(select(Notification)).all() == []


def test_a_twilio_caller_hears_that_the_sms_was_sent(make_app, api):  # noqa: F811
    app = make_app(HOTLINE_SMS_FROM="+73435674530")
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver") as client:
        call = TwilioCall(client, PUBLIC, TOKEN, caller="+79001234567")
        call.start()
        call.press("2")
        call.press("1")
        heard = call.record(api, seconds=4)
    assert any(prompt_text("sms_sent") in h for h in heard)
    with app.extensions["hotline.db"].session() as s:
        assert s.scalars(select(Notification.recipient)).all() == ["+79001234567"]
