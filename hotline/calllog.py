"""The call log: one row per call, whichever backend carried it, and its events."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline import callrows
from hotline.models import Call, CallEvent, utcnow


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
    # The row is found or made by the one write path of `calls` (hotline.callrows), on
    # the session's connection; the session's own changes go first, then it reads the row.
    session.flush()
    values = callrows.start_call(
        callrows.call_rows(session.connection(), lock=False),
        backend,
        backend_call_id,
        from_number=from_number,
        to_number=to_number,
        caller_name=caller_name,
        started_at=started_at,
    )
    call = session.get(Call, values["id"], populate_existing=True)
    assert call is not None
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
    call.backend_status = backend_status or call.backend_status
    call.hangup_cause = hangup_cause or call.hangup_cause
    if outcome and not call.outcome:
        call.outcome = outcome
    return call
