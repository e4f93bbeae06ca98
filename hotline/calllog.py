"""The call log: one row per call, whichever backend carried it, and its events."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.cleaning import clean_line
from hotline.db import Database
from hotline.models import Call, CallEvent, utcnow
from hotline.phones import stored_phone
from hotline.settings import Settings
from hotline.sweeper import Sweeper

log = logging.getLogger(__name__)


def start_call(
    session: Session,
    *,
    backend: str,
    backend_call_id: str,
    from_number: str | None = None,
    to_number: str | None = None,
    caller_name: str | None = None,
    started_at: dt.datetime | None = None,
) -> Call:
    """The call with this backend id, made on first sight (webhooks and AMI repeat themselves)."""
    call = find_call(session, backend, backend_call_id)
    from_number, to_number = stored_phone(from_number), stored_phone(to_number)
    caller_name = clean_line(caller_name, 200) or None
    if call is None:
        call = Call(
            backend=backend,
            backend_call_id=backend_call_id,
            from_number=from_number,
            to_number=to_number,
            caller_name=caller_name,
            started_at=started_at or utcnow(),
            flow_state={},
        )
        session.add(call)
        session.flush()
    else:
        call.from_number = call.from_number or from_number
        call.to_number = call.to_number or to_number
        call.caller_name = call.caller_name or caller_name
    return call


def find_call(session: Session, backend: str, backend_call_id: str) -> Call | None:
    return session.scalars(
        select(Call).where(Call.backend == backend, Call.backend_call_id == backend_call_id)
    ).one_or_none()


def log_event(session: Session, call: Call, kind: str, detail: str = "", **data: Any) -> CallEvent:
    """Add a step to the call's timeline."""
    event = CallEvent(call=call, kind=kind, detail=detail, data=data, at=utcnow())
    session.add(event)
    return event


def end_call(
    session: Session,
    call: Call,
    *,
    backend_status: str | None = None,
    duration_seconds: int | None = None,
    hangup_cause: str | None = None,
    outcome: str | None = None,
    ended_at: dt.datetime | None = None,
) -> Call:
    """Close the call; safe to call again (a later, better-informed report fills gaps)."""
    call.ended_at = call.ended_at or ended_at or utcnow()
    if duration_seconds is None and call.duration_seconds is None:
        duration_seconds = max(0, int((call.ended_at - call.started_at).total_seconds()))
    if duration_seconds is not None:
        call.duration_seconds = duration_seconds
    # What backends report is cleaned to its column (an AGI error text is long and odd).
    call.backend_status = clean_line(backend_status, 40) or call.backend_status
    call.hangup_cause = clean_line(hangup_cause, 80) or call.hangup_cause
    if outcome and not call.outcome:
        call.outcome = outcome
    return call


#: The outcome of a call whose end the backend never reported (closed by the sweep).
UNREPORTED_END = "unreported_end"


def close_stale_calls(session: Session, older_than: dt.timedelta, *, now: dt.datetime | None = None) -> int:
    """Close the calls still open `older_than` after they started; how many.

    A call's end may never come: the database was down when the status callback or
    the AGI hangup arrived, or the callback was lost. Such a call would show as going
    on for ever; it is closed with the reason in its hang-up cause and its timeline.
    """
    now = now or utcnow()
    stale = session.scalars(
        select(Call).where(Call.ended_at.is_(None), Call.started_at < now - older_than).limit(500)
    ).all()
    minutes = int(older_than.total_seconds() // 60)
    reason = f"конец звонка не сообщён за {minutes} мин; закрыт автоматически"
    for call in stale:
        end_call(
            session, call, hangup_cause=reason, outcome=UNREPORTED_END, ended_at=now, duration_seconds=None
        )
        call.duration_seconds = None  # not known: the time since the start says nothing
        log_event(session, call, "closed_unreported", reason)
    return len(stale)


def make_sweeper(settings: Settings, db: Database) -> Sweeper:
    """`hotline serve`'s sweep that closes calls whose end never came."""
    after = dt.timedelta(minutes=settings.call_close_after_minutes)

    def sweep() -> None:
        with db.session() as session:
            closed = close_stale_calls(session, after)
        if closed:
            log.info("closed %s calls whose end was never reported", closed)

    return Sweeper("call-log sweep", 60.0, sweep)
