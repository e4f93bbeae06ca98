# ruff: noqa: F811 - the fixtures of test_webhooks, imported to run on both databases
"""Hostile and broken input on the Twilio webhooks, on SQLite and on PostgreSQL (issue 12).

Whatever arrives is stored cleaned with a note, refused with a clear status, or
recovered by a sweep; never a 500, never a "technical error" for a caller.
"""

from __future__ import annotations

import datetime as dt
import io
import os

import httpx
import pytest
from sqlalchemy import select

from hotline import calllog
from hotline.models import Attachment, Call, CallEvent, RecordingFetch, Request, RequestEvent
from ivr.store import CallStore
from ivr.twilio import recordings, webhooks
from ivr.twilio.client import TwilioCall, make_wav
from tests.ivr.twilio.test_webhooks import (  # noqa: F401 - fixtures
    PUBLIC,
    SID,
    TOKEN,
    api,
    app,
    call,
    calls,
    client,
    count,
    event_kinds,
    make_app,
    text,
)


@pytest.fixture
def db(any_db):
    """Every test of this module on SQLite and on PostgreSQL."""
    return any_db


def test_sip_uri_caller_longer_than_the_column_is_stored_cut_with_a_note(client, db):
    sip = "sip:" + "a" * 60 + "@pbx.customer.example"
    heard = text(TwilioCall(client, PUBLIC, TOKEN, account_sid=SID, caller=sip).start())
    assert "нажмите 1" in heard
    [c] = calls(db)
    assert c.from_number == sip[:40]
    with db.session() as s:
        note = s.scalars(select(CallEvent).where(CallEvent.kind == "caller_id_cleaned")).one()
        assert note.data["original"] == sip


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("8 (900) 123-45-67", "+79001234567"),
        ("+7900\x001234567", "+79001234567"),
        ("anonymous", None),
        ("sip:+79001234567@pbx.example", "+79001234567"),
    ],
)
def test_caller_number_is_parsed_once_at_the_boundary(client, db, raw, stored):
    assert "нажмите 1" in text(TwilioCall(client, PUBLIC, TOKEN, account_sid=SID, caller=raw).start())
    [c] = calls(db)
    assert c.from_number == stored


def test_nul_and_escapes_in_digits_are_cleaned_not_a_technical_error(call: TwilioCall, db):
    call.start()
    heard = text(call.send_digits("1\x00\x1b[31m"))
    assert "технической" not in heard.lower()
    with db.session() as s:
        details = s.scalars(select(CallEvent.detail)).all()
        assert not any("\x00" in d or "\x1b" in d for d in details)


def test_oversized_body_is_refused_before_it_is_read(call: TwilioCall, db):
    response = call.post(call.url("/twilio/voice"), {"From": "+79001234567", "Junk": "x" * 20_000})
    assert response.status_code == 413
    assert count(db, Call) == 0


class _Counted(io.BytesIO):
    """A request body that counts what the server read of it."""

    taken = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.taken += len(data)
        return data


def test_a_chunked_unsigned_body_is_read_no_further_than_the_webhook_limit(app, db):
    body = _Counted(b"From=%2B79001234567&Junk=" + b"x" * 100_000)
    response = app.test_client().post(
        "/twilio/voice",
        input_stream=body,
        content_type="application/x-www-form-urlencoded",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},  # as gunicorn and waitress say
    )
    assert response.status_code == 403 and count(db, Call) == 0
    assert body.taken <= webhooks.MAX_BODY + 1024  # not the dashboard's 256 KB


def test_unsigned_and_forged_posts_write_nothing(call: TwilioCall, client, db):
    assert client.post("/twilio/voice", data={"CallSid": call.call_sid}).status_code == 403
    assert call.post(call.url("/twilio/voice"), {"From": "+7900"}, signature="forged").status_code == 403
    assert count(db, Call) == 0


def test_overlong_call_sid_is_a_clean_400(call: TwilioCall, client, db):
    call.call_sid = "CA" + "f" * 5000
    assert call.post(call.url("/twilio/voice"), {"From": "+79001234567"}).status_code == 400
    assert count(db, Call) == 0


@pytest.mark.parametrize("bad", ["\t", "\r\n", "\n", " "])
def test_recording_url_with_whitespace_is_refused_cleanly(call: TwilioCall, api, db, settings, bad):
    call.start()
    call.press("2")
    call.press("1")
    record = call.waiting.verb
    url = api.add("RE" + "1" * 32, make_wav(2)) + bad + "x"
    params = {"RecordingUrl": url, "RecordingSid": "RE" + "1" * 32, "RecordingDuration": "2"}
    assert call.post(record.get("recordingStatusCallback"), params).status_code == 400
    assert count(db, Attachment) == 0 and not api.downloads
    tmp = settings.data_dir / "tmp"
    assert not tmp.exists() or not os.listdir(tmp)
    assert "recording_refused" in event_kinds(db)


def test_callbacks_for_an_unknown_call_make_no_open_call_row(call: TwilioCall, api, db):
    for status in ("ringing", "in-progress"):
        assert call.post(call.url("/twilio/status"), {"CallStatus": status}).status_code == 204
    url = api.add("RE" + "2" * 32, make_wav(2))
    params = {"RecordingUrl": url, "RecordingSid": "RE" + "2" * 32, "RecordingDuration": "2"}
    assert call.post(call.url("/twilio/recording"), params).status_code == 204
    assert count(db, Call) == 0 and not api.downloads
    with db.session() as s:  # kept on record for the engineers, not fetched
        fetch = s.scalars(select(RecordingFetch)).one()
        assert fetch.state == "failed" and fetch.last_error == recordings.UNKNOWN_CALL
    call.hang_up(12)  # the final status of a call we never saw: logged, and closed
    [c] = calls(db)
    assert c.ended_at is not None and c.outcome is not None


@pytest.mark.parametrize(("raw", "stored"), [("9223372036854775808", None), ("-5", None), ("42", 42)])
def test_silly_call_durations_are_refused(call: TwilioCall, db, raw, stored):
    call.start()
    params = {"CallStatus": "completed", "CallDuration": raw, "From": call.caller}
    assert call.post(call.url("/twilio/status"), params).status_code == 204
    [c] = calls(db)
    assert c.ended_at is not None
    if stored is None:
        assert c.duration_seconds is not None and 0 <= c.duration_seconds < 3600
    else:
        assert c.duration_seconds == stored


def test_reused_call_sid_is_a_new_call(call: TwilioCall, client, db):
    call.start()
    call.press("9")  # whatever: the call goes on
    call.hang_up(20)
    again = TwilioCall(client, PUBLIC, TOKEN, account_sid=SID, call_sid=call.call_sid)
    assert "Здравствуйте" in text(again.start())
    rows = sorted(calls(db), key=lambda c: c.id)
    assert len(rows) == 2
    assert rows[0].ended_at is not None and rows[0].backend_call_id != call.call_sid
    assert rows[1].backend_call_id == call.call_sid and rows[1].ended_at is None


def test_calls_whose_end_never_came_are_closed_by_the_sweep(call: TwilioCall, db):
    call.start()
    with db.session() as s:
        assert calllog.close_stale_calls(s, dt.timedelta(minutes=30)) == 0  # still young
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    with db.session() as s:
        assert calllog.close_stale_calls(s, dt.timedelta(minutes=30), now=later) == 1
    [c] = calls(db)
    assert c.ended_at is not None and c.outcome == calllog.UNREPORTED_END
    assert "не сообщён за 30 мин" in (c.hangup_cause or "")
    assert "closed_unreported" in event_kinds(db)


def _record(call: TwilioCall, url: str, sid: str) -> tuple[dict[str, str], httpx.Response]:
    """A caller leaves a voice request; Twilio posts its action, then the recording
    status callback (its answer is returned)."""
    call.start()
    call.press("2")
    call.press("1")
    record = call.waiting.verb
    params = {"RecordingUrl": url, "RecordingSid": sid, "RecordingDuration": "3"}
    call.post(record.get("action"), params)
    done = call.post(record.get("recordingStatusCallback"), {**params, "RecordingStatus": "completed"})
    return params, done


def _record_with_api_down(call: TwilioCall, api) -> tuple[str, dict[str, str]]:
    sid = "RE" + "3" * 32
    url = api.add(sid, make_wav(3))
    api.files.pop(sid)  # Twilio's API does not serve it (yet)
    params, response = _record(call, url, sid)
    assert response.status_code == 502
    return sid, params


def test_a_recording_not_fetched_is_fetched_by_the_sweep_exactly_once(call: TwilioCall, api, app, db):
    sid, _ = _record_with_api_down(call, api)
    settings = app.extensions["hotline.settings"]
    store = CallStore(db, settings, "twilio")
    assert count(db, Attachment) == 0
    api.files[sid] = make_wav(3)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    assert recordings.sweep(settings, db, store, now=soon) == 1
    assert recordings.sweep(settings, db, store, now=soon + dt.timedelta(hours=1)) == 0
    assert count(db, Attachment) == 1 and api.downloads == [sid]
    with db.session() as s:
        assert s.scalars(select(RecordingFetch.state)).one() == "done"


def test_a_recording_that_never_comes_is_shown_as_lost(call: TwilioCall, api, make_app, db):
    app = make_app(HOTLINE_RECORDING_FETCH_TRIES="3")
    settings = app.extensions["hotline.settings"]
    sid, _ = _record_with_api_down(call, api)
    store = CallStore(db, settings, "twilio")
    moment = dt.datetime.now(dt.UTC)
    for _ in range(4):
        moment += dt.timedelta(hours=2)
        recordings.sweep(settings, db, store, now=moment)
    with db.session() as s:
        fetch = s.scalars(select(RecordingFetch)).one()
        assert (fetch.state, fetch.attempts) == ("failed", 3) and "404" in (fetch.last_error or "")
        history = s.scalars(select(RequestEvent.text).join(Request)).all()
        assert any("запись звонка не получена" in h for h in history)
    assert "recording_lost" in event_kinds(db)


def _record_with_wrong_credentials(call: TwilioCall, api) -> str:
    """A recording made while Twilio knows other credentials than ours (a token rotation)."""
    api.credentials = "Basic bm90OnRoaXM="
    sid = "RE" + "4" * 32
    url = api.add(sid, make_wav(3))
    _record(call, url, sid)
    return url


def test_a_recording_refused_for_its_credentials_is_fetched_once_they_are_fixed(
    call: TwilioCall, api, app, db, caplog
):
    settings = app.extensions["hotline.settings"]
    store = CallStore(db, settings, "twilio")
    ours = api.credentials
    url = _record_with_wrong_credentials(call, api)  # 401 on the status callback itself
    start = dt.datetime.now(dt.UTC)
    for hours in (2, 4, 30):  # hours of refusals: more than HOTLINE_RECORDING_FETCH_TRIES (8) would allow
        assert recordings.sweep(settings, db, store, now=start + dt.timedelta(hours=hours)) == 0
    with db.session() as s:
        fetch = s.scalars(select(RecordingFetch)).one()
        assert (fetch.state, fetch.attempts, fetch.url) == ("pending", 0, url)  # kept, not lost
        assert "TWILIO_AUTH_TOKEN" in (fetch.last_error or "")
        assert fetch.next_attempt_at > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=50)  # an hour apart
    assert count(db, Attachment) == 0 and api.downloads == []
    refused = [r for r in caplog.records if "refused the credentials" in r.getMessage()]
    assert len(refused) == 4  # the callback's try and one a sweep, each an hour after the last
    assert all(r.levelname == "ERROR" and "\n" not in r.getMessage() for r in refused)
    assert "TWILIO_ACCOUNT_SID" in refused[0].getMessage() and TOKEN not in caplog.text

    api.credentials = ours  # the token is fixed
    assert recordings.sweep(settings, db, store, now=start + dt.timedelta(minutes=30)) == 0  # not due yet
    assert recordings.sweep(settings, db, store, now=start + dt.timedelta(hours=3)) == 1
    assert count(db, Attachment) == 1 and len(api.downloads) == 1
    with db.session() as s:
        fetch = s.scalars(select(RecordingFetch)).one()
        assert (fetch.state, fetch.last_error) == ("done", None)
        history = s.scalars(select(RequestEvent.text).join(Request)).all()
        assert not any("запись звонка не получена" in h for h in history)


def test_a_refusal_that_outlasts_the_wait_is_shown_as_failed(call: TwilioCall, api, app, db):
    settings = app.extensions["hotline.settings"]
    store = CallStore(db, settings, "twilio")
    url = _record_with_wrong_credentials(call, api)
    with db.session() as s:  # made longer ago than the wait for fixed credentials
        fetch = s.scalars(select(RecordingFetch)).one()
        fetch.created_at -= recordings.REFUSED_FOR + dt.timedelta(minutes=1)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    assert recordings.sweep(settings, db, store, now=later) == 0
    with db.session() as s:
        fetch = s.scalars(select(RecordingFetch)).one()
        assert (fetch.state, fetch.url) == ("failed", url) and "TWILIO_AUTH_TOKEN" in (fetch.last_error or "")
        history = s.scalars(select(RequestEvent.text).join(Request)).all()
        assert any("запись звонка не получена" in h and "TWILIO_AUTH_TOKEN" in h for h in history)
    assert "recording_lost" in event_kinds(db)


def test_a_wrong_signature_names_the_url_and_the_settings_never_the_token(call: TwilioCall, caplog):
    assert call.post(call.url("/twilio/voice"), {"CallSid": "CA9"}, signature="forged").status_code == 403
    [line] = [r.getMessage() for r in caplog.records if "signature" in r.getMessage()]
    assert "https://hotline.example.com/twilio/voice" in line
    assert "TWILIO_AUTH_TOKEN" in line and "HOTLINE_PUBLIC_URL" in line and TOKEN not in line
