"""The call log: one row per call, whichever backend carried it, and its events."""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.cleaning import clean_line
from hotline.db import Database
from hotline.models import Call, CallEvent, utcnow
from hotline.phones import stored_phone
from hotline.settings import Settings
from hotline.sweeper import Sweeper
from hotline.vocabulary import Outcome

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
    # What backends report is cleaned to its column (an AGI error text is long and odd),
    # then settled with what the other writer said (AMI and FastAGI, in either order).
    line = settle_line(
        LineStatus(call.backend_status, call.hangup_cause),
        LineStatus(
            clean_line(backend_status, STATUS_LENGTH) or None, clean_line(hangup_cause, CAUSE_LENGTH) or None
        ),
    )
    call.backend_status, call.hangup_cause = line.status, line.cause
    if outcome and not call.outcome:
        call.outcome = outcome
    return call


# --- the final status and cause of a call's line -------------------------------------------
#
# Two writers report the end of an Asterisk call, in either order (docs/ami.md): the
# FastAGI session (`completed`, or `failed` with why) and AMI (the Cdr's disposition,
# the Hangup's Q.850 cause). Whoever writes last, the row ends the same: each field
# keeps the value that says more, and between two that say as much, the greater one.

FAILED = "failed"  # the hotline's own failure (the FastAGI session's, Twilio's "failed")
SESSION_ENDED = "completed"  # a session ended normally: says nothing of the line
# `16 Normal Clearing`: a Q.850 cause (0-127) the PBX gave; AGI's `511 ...` is not one.
_Q850 = re.compile(r"^(?:\d{1,2}|1[01]\d|12[0-7])(?:\s|$)")
STATUS_LENGTH, CAUSE_LENGTH = 40, 80  # the columns' sizes


@dataclass(frozen=True)
class LineStatus:
    """What one report says of how a call's line ended (a `Call`'s two columns)."""

    status: str | None = None
    cause: str | None = None


def status_rank(status: str | None) -> int:
    """How much a status says: a failure > what the line reports > a session's plain end."""
    if not status:
        return 0
    if status == FAILED:
        return 3
    return 1 if status == SESSION_ENDED else 2


def cause_rank(status: str | None, cause: str | None) -> int:
    """How much a cause says, read with the status it came with: why the hotline failed >
    the PBX's Q.850 cause > a session's own account of the end."""
    if not cause:
        return 0
    if status == FAILED and not _Q850.match(cause):
        return 3
    return 2 if _Q850.match(cause) else 1


def settle_line(current: LineStatus, report: LineStatus) -> LineStatus:
    """The line's status and cause after `report`; the same whichever report comes last."""
    status = max(current.status, report.status, key=lambda s: (status_rank(s), s or ""))
    cause = max(
        (current.status, current.cause),
        (report.status, report.cause),
        key=lambda p: (cause_rank(*p), p[1] or ""),
    )[1]
    return LineStatus(status[:STATUS_LENGTH] if status else None, cause[:CAUSE_LENGTH] if cause else None)


#: The outcome of a call whose end the backend never reported (closed by the sweep).
UNREPORTED_END = Outcome.UNREPORTED_END


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
