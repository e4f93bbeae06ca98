"""FastAGI input the columns cannot take as it is, on SQLite and PostgreSQL (issue 12)."""

# ruff: noqa: F811 - the settings fixture of test_fastagi, imported to run on both databases

from __future__ import annotations

import pytest

from hotline.db import Database
from hotline.settings import Settings
from ivr.asterisk.fake_agi import HANGUP, REPLY_520
from tests.ivr.asterisk.test_fastagi import call_row, serve, settings  # noqa: F401


@pytest.fixture
def db(any_db):
    return any_db


def test_a_caller_id_of_45_characters_is_stored_cut_and_the_call_goes_on(settings: Settings, db: Database):
    caller = "sip:" + "x" * 41  # 45 characters: wider than calls.from_number
    [trace] = serve(settings, db, {"script": ["1", HANGUP], "callerid": caller})
    assert not any("technical_error" in p for p in trace.heard)
    call = call_row(db)
    assert call.from_number == caller[:40] and call.ended_at is not None


def test_a_national_caller_id_is_stored_in_e164(settings: Settings, db: Database):
    serve(settings, db, {"script": ["1", HANGUP], "callerid": "83435674530"})
    assert call_row(db).from_number == "+73435674530"


def test_a_520_ending_closes_the_call_log_entry(settings: Settings, db: Database):
    serve(settings, db, {"script": ["1", REPLY_520]})
    call = call_row(db)
    assert call.ended_at is not None and call.backend_status == "failed"
    assert call.hangup_cause is not None and len(call.hangup_cause) <= 80 and "\n" not in call.hangup_cause
