"""The number of a new phone request by SMS: routed by the outbox, sent once, heard by the caller."""

from __future__ import annotations

import datetime as dt
import threading

import httpx
import pytest
from sqlalchemy import select

from hotline.db import Database
from hotline.models import Notification, Request, utcnow
from hotline.notify.outbox import _claim, drain, enqueue
from hotline.settings import load_settings
from ivr import flow
from ivr.livecalls import LiveCallStore
from ivr.speech import Prompt
from ivr.store import CallStore
from ivr.twilio.client import TwilioCall, make_wav
from tests.helpers import free_port
from tests.hotline.mail.conftest import twilio  # noqa: F401 - the fake Twilio Messages API
from tests.ivr.twilio.test_webhooks import PUBLIC, TOKEN, api, make_app  # noqa: F401 - fixtures
from voice_models.prompts import prompt_text

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
SMS = {"HOTLINE_SMS_FROM": "+73435674530", "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": "tok3n"}


@pytest.fixture
def sms_settings(make_settings, twilio):  # noqa: F811
    return make_settings(**SMS, HOTLINE_TWILIO_API_BASE=twilio.url)


def leave_request(settings, db, tmp_path, caller: str | None, call_id="1700000000.7", store_cls=CallStore):
    """An Asterisk caller leaves a voice request; the segments said at the last step."""
    store = store_cls(db, settings, "asterisk")
    store.handle(call_id, flow.CallStarted(caller or "unknown"), from_number=caller)
    store.handle(call_id, flow.DigitsEntered("2"))
    store.handle(call_id, flow.DigitsEntered("1"))
    wav = tmp_path / f"{call_id}-1.wav"
    wav.write_bytes(make_wav(3))
    recording = flow.Recording(f"{call_id}-1", 3.0, str(wav))
    step = store.handle(call_id, flow.RecordingFinished(recording))
    if isinstance(store, LiveCallStore):
        store.close()  # the call log written behind
    return [s for a in step.actions if isinstance(a, flow.Speak) for s in a.segments]


def notifications(db) -> list[Notification]:
    with db.session() as s:
        return list(s.scalars(select(Notification).order_by(Notification.id)))


def sms_out(db) -> list[str]:
    with db.session() as s:
        request = s.scalars(select(Request)).one()
        return [e.text for e in request.events if e.action == "sms_out"]


@pytest.mark.parametrize("store_cls", [CallStore, LiveCallStore])  # LiveCallStore: the FastAGI server's
def test_an_asterisk_caller_gets_the_number_by_sms_once(sms_settings, db, tmp_path, twilio, store_cls):  # noqa: F811
    said = leave_request(sms_settings, db, tmp_path, "89001234567", store_cls=store_cls)
    assert Prompt("sms_sent") in said
    result = drain(sms_settings, db)
    assert (result.queued, result.sent, result.failed) == (1, 1, 0)
    [sent] = twilio.requests
    [n] = notifications(db)
    assert (n.kind, n.channel, n.recipient, n.state) == ("created", "sms", "+79001234567", "sent")
    assert n.external_id.startswith("SM")
    with db.session() as s:
        number = s.scalars(select(Request.number)).one()
    assert sent["form"]["To"] == "+79001234567"
    assert f"номер {number}" in sent["form"]["Body"] and f"{number}#" in sent["form"]["Body"]
    assert sms_out(db) == ["автоответ с номером заявки: +79001234567"]
    assert drain(sms_settings, db).sent == 0 and len(twilio.requests) == 1


@pytest.mark.parametrize("caller", ["+73432000000", "101", "sip:alice@pbx.example", None])
def test_a_landline_an_extension_or_a_withheld_caller_gets_no_sms(
    sms_settings,
    db,
    tmp_path,
    twilio,  # noqa: F811
    caller,
):
    said = leave_request(sms_settings, db, tmp_path, caller)
    assert Prompt("request_created") in said and Prompt("sms_sent") not in said
    assert drain(sms_settings, db).queued == 0
    assert twilio.requests == [] and notifications(db) == []


def test_without_sms_settings_the_caller_hears_nothing_of_it_and_nothing_is_sent(
    make_settings,
    db,
    tmp_path,
    twilio,  # noqa: F811
):
    said = leave_request(make_settings(), db, tmp_path, "+79001234567")
    assert Prompt("request_created") in said and Prompt("sms_sent") not in said
    # An outbox running for e-mail only says in the history why the number went nowhere.
    mail_only = make_settings(HOTLINE_SMTP_URL=f"smtp://127.0.0.1:{free_port()}")
    assert drain(mail_only, db).sent == 0 and twilio.requests == []
    [n] = notifications(db)
    assert (n.kind, n.channel, n.state) == ("created", "none", "skipped")
    assert n.last_error == "SMS не отправляются — их отправку не настроил администратор"


def test_twilio_down_is_retried_with_backoff_and_sent_once(make_settings, db, tmp_path, twilio):  # noqa: F811
    down = make_settings(**SMS, HOTLINE_TWILIO_API_BASE=f"http://127.0.0.1:{free_port()}")
    up = make_settings(**SMS, HOTLINE_TWILIO_API_BASE=twilio.url)
    assert Prompt("sms_sent") in leave_request(down, db, tmp_path, "+79001234567")
    t0 = utcnow()
    assert (drain(down, db, now=t0).retry, drain(down, db, now=t0 + dt.timedelta(seconds=31)).retry) == (1, 1)
    [n] = notifications(db)
    assert (n.state, n.attempts) == ("pending", 2) and n.last_error.startswith("Twilio")
    assert n.next_attempt_at >= t0 + dt.timedelta(seconds=31 + 60)  # 30 s, then 60 s, ...
    assert drain(up, db, now=t0 + dt.timedelta(seconds=60)).sent == 0  # not due yet
    assert drain(up, db, now=t0 + dt.timedelta(minutes=5)).sent == 1
    assert drain(up, db, now=t0 + dt.timedelta(minutes=10)).sent == 0
    assert len(twilio.requests) == 1 and len(sms_out(db)) == 1
    [n] = notifications(db)
    assert (n.state, n.attempts, n.last_error) == ("sent", 3, None)


def test_a_worker_killed_while_sending_leaves_it_to_another_after_the_lease(
    sms_settings,
    db,
    tmp_path,
    twilio,  # noqa: F811
):
    leave_request(sms_settings, db, tmp_path, "+79001234567")
    with db.session() as s:
        assert enqueue(s, sms_settings, utcnow()) == 1
    assert _claim(db, {"sms"}, utcnow()) is not None  # a worker claims it and dies
    assert drain(sms_settings, db).sent == 0  # still that worker's
    assert drain(sms_settings, db, now=utcnow() + dt.timedelta(minutes=11)).sent == 1
    assert len(twilio.requests) == 1 and len(sms_out(db)) == 1


def test_two_workers_send_the_number_once(any_db: Database, tmp_path, twilio):  # noqa: F811
    settings = load_settings(
        {
            "HOTLINE_DATA_DIR": str(tmp_path / "data"),
            "HOTLINE_DATABASE_URL": any_db.url,
            "HOTLINE_SECRET_KEY": "k",
            "HOTLINE_TWILIO_API_BASE": twilio.url,
            **SMS,
        }
    )
    for i in range(5):
        leave_request(settings, any_db, tmp_path, f"+7900123456{i}", call_id=f"1700000000.{i}")
    start = threading.Barrier(2)
    results = []

    def worker() -> None:
        start.wait()
        results.append(drain(settings, any_db))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(r.sent for r in results) == 5
    assert sorted(r["form"]["To"] for r in twilio.requests) == [f"+7900123456{i}" for i in range(5)]
    assert [(n.kind, n.state) for n in notifications(any_db)] == [("created", "sent")] * 5


def test_a_row_of_the_old_path_is_sent_and_not_doubled(sms_settings, db, tmp_path, twilio):  # noqa: F811
    """Before the outbox routed `created` to SMS, the call queued its own row; such rows stay good."""
    leave_request(sms_settings, db, tmp_path, "+79001234567")
    with db.session() as s:
        request = s.scalars(select(Request)).one()
        now = utcnow()
        s.add(
            Notification(
                event_id=request.events[0].id,
                request_id=request.id,
                kind="created",
                channel="sms",
                recipient="+79001234567",
                next_attempt_at=now,
                created_at=now,
            )
        )
    result = drain(sms_settings, db)
    assert (result.queued, result.sent) == (0, 1) and len(twilio.requests) == 1


def test_a_twilio_caller_hears_that_the_sms_was_sent(make_app, api, make_settings, db, twilio):  # noqa: F811
    app = make_app(HOTLINE_SMS_FROM="+73435674530")
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver") as client:
        call = TwilioCall(client, PUBLIC, TOKEN, caller="+79001234567")
        call.start()
        call.press("2")
        call.press("1")
        heard = call.record(api, seconds=4)
    assert any(prompt_text("sms_sent") in h for h in heard)
    # The outbox of the same service (its Messages API here is the Messages fake).
    sender = make_settings(**SMS, HOTLINE_TWILIO_API_BASE=twilio.url)
    assert drain(sender, db).sent == 1
    [sent] = twilio.requests
    assert sent["form"]["To"] == "+79001234567" and "ваша заявка принята" in sent["form"]["Body"]
    [n] = notifications(db)
    assert (n.kind, n.channel, n.recipient, n.state) == ("created", "sms", "+79001234567", "sent")
