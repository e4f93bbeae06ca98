import datetime as dt

from hotline.calllog import end_call, find_call, log_event, start_call


def test_a_call_is_made_once_and_closed_once(any_db):
    t0 = dt.datetime(2026, 11, 24, 6, 0, tzinfo=dt.UTC)
    with any_db.session() as s:
        call = start_call(
            s, backend="twilio", backend_call_id="CA1", from_number="+79001234567", started_at=t0
        )
        log_event(s, call, "menu", "1", choice="1")
    with any_db.session() as s:
        # A repeated webhook finds the same call and fills what was missing.
        again = start_call(s, backend="twilio", backend_call_id="CA1", to_number="+73435674530")
        assert again.id == call.id and again.from_number == "+79001234567"
        assert again.to_number == "+73435674530"
        end_call(s, again, outcome="abandoned", ended_at=t0 + dt.timedelta(seconds=42))
        # A later, better-informed report (the status callback) keeps the first outcome
        # but fills the backend's own facts.
        end_call(s, again, backend_status="completed", duration_seconds=43, outcome="status_heard")
    with any_db.session() as s:
        call = find_call(s, "twilio", "CA1")
        assert (call.outcome, call.backend_status, call.duration_seconds) == ("abandoned", "completed", 43)
        assert call.ended_at == t0 + dt.timedelta(seconds=42)
        assert [(e.kind, e.data) for e in call.events] == [("menu", {"choice": "1"})]
        assert find_call(s, "asterisk", "CA1") is None


def test_duration_defaults_to_the_wall_clock(any_db):
    t0 = dt.datetime(2026, 11, 24, 6, 0, tzinfo=dt.UTC)
    with any_db.session() as s:
        call = start_call(s, backend="asterisk", backend_call_id="1700000000.1", started_at=t0)
        end_call(s, call, ended_at=t0 + dt.timedelta(seconds=7, milliseconds=600))
        assert call.duration_seconds == 7
