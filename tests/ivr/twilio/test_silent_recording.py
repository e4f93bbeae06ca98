"""A Twilio recording that holds only silence makes no request (the rule of Asterisk's too)."""

# ruff: noqa: F811 - the fixtures of the Twilio webhook tests, imported, are parameters here

from __future__ import annotations

from pathlib import Path

from hotline.models import Attachment, Request
from ivr.asterisk.fake_agi import SILENCE_KEPT, write_wav
from ivr.twilio.client import TwilioCall
from tests.ivr.twilio.test_webhooks import (  # noqa: F401 - the fixtures of the Twilio tests
    api,
    app,
    call,
    calls,
    client,
    count,
    event_kinds,
    make_app,
)


def _silence(tmp_path: Path) -> bytes:
    path = tmp_path / "silence.wav"
    write_wav(path, 0.0, silence_after=SILENCE_KEPT + 1)  # about 2 s of a quiet phone line
    return path.read_bytes()


def test_a_silent_recording_left_by_a_hangup_makes_no_request(call: TwilioCall, api, db, tmp_path: Path):
    call.start()
    call.press("2")
    call.press("1")
    record = call.waiting.verb
    sid = "RE" + "5" * 32
    url = api.add(sid, _silence(tmp_path))
    call.hang_up(8)
    params = {
        "RecordingUrl": url,
        "RecordingSid": sid,
        "RecordingDuration": "2",
        "RecordingStatus": "completed",
    }
    assert call.post(record.get("recordingStatusCallback"), params).status_code == 204
    assert count(db, Request) == 0 and count(db, Attachment) == 0
    assert "recording_empty" in event_kinds(db)


def test_a_request_made_already_keeps_its_file_whatever_it_holds(call: TwilioCall, api, db, tmp_path: Path):
    call.start()
    call.press("2")
    call.press("1")
    record = call.waiting.verb
    sid = "RE" + "6" * 32
    url = api.add(sid, _silence(tmp_path))
    call.post(record.get("action"), {"RecordingUrl": url, "RecordingSid": sid, "RecordingDuration": "2"})
    assert count(db, Request) == 1  # Twilio heard something; the request exists
    params = {
        "RecordingUrl": url,
        "RecordingSid": sid,
        "RecordingDuration": "2",
        "RecordingStatus": "completed",
    }
    assert call.post(record.get("recordingStatusCallback"), params).status_code == 204
    assert count(db, Attachment) == 1  # nothing is thrown away from a request
