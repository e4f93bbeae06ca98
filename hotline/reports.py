"""Figures for the dashboard's overview: calls per day and hour, outcomes, backlog."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hotline.models import Attachment, Call, Request, RequestEvent, RequestStatus, TranscriptionState, utcnow


@dataclass
class Overview:
    days: list[tuple[dt.date, int]]  # calls per local day, oldest first
    hours: list[int]  # calls per local hour of the day (0–23) over the period
    outcomes: list[tuple[str | None, int]]  # most frequent first
    by_status: dict[str, int]
    median_first_response: dt.timedelta | None
    responded: int
    backlog: dict[str, int] = field(default_factory=dict)  # transcription state → count
    oldest_pending: dt.datetime | None = None
    review_waiting: int = 0


def overview(session: Session, tz: ZoneInfo, *, days: int = 30, now: dt.datetime | None = None) -> Overview:
    """The state of the hotline over the last `days` days, counted in the plant's time zone."""
    now = now or utcnow()
    today = now.astimezone(tz).date()
    first_day = today - dt.timedelta(days=days - 1)
    since = dt.datetime.combine(first_day, dt.time(), tz)
    # Bucketing by local day and hour in Python keeps it the same on SQLite and
    # PostgreSQL; a month of calls is a few thousand timestamps.
    per_day: Counter[dt.date] = Counter()
    per_hour = [0] * 24
    for (started,) in session.execute(select(Call.started_at).where(Call.started_at >= since)):
        local = started.astimezone(tz)
        per_day[local.date()] += 1
        per_hour[local.hour] += 1
    outcomes = session.execute(
        select(Call.outcome, func.count())
        .where(Call.started_at >= since)
        .group_by(Call.outcome)
        .order_by(func.count().desc())
    ).all()
    by_status = {s.value: 0 for s in RequestStatus}
    for status, count in session.execute(
        select(Request.status, func.count()).where(Request.archived_at.is_(None)).group_by(Request.status)
    ):
        by_status[status] = count
    waits = [
        (answered - created).total_seconds()  # type: ignore[operator] # not null by the query
        for created, answered in session.execute(
            select(Request.created_at, Request.first_response_at).where(
                Request.created_at >= since, Request.first_response_at.is_not(None)
            )
        )
    ]
    backlog = {
        str(state): count
        for state, count in session.execute(
            select(Attachment.transcription_state, func.count())
            .where(
                Attachment.transcription_state.in_(
                    [TranscriptionState.PENDING, TranscriptionState.RUNNING, TranscriptionState.FAILED]
                )
            )
            .group_by(Attachment.transcription_state)
        )
    }
    oldest = session.scalar(
        select(func.min(Attachment.created_at)).where(
            Attachment.transcription_state == TranscriptionState.PENDING
        )
    )
    waiting = session.scalar(
        select(func.count(Request.id)).where(Request.channel == "phone", Request.status == RequestStatus.NEW)
    )
    return Overview(
        days=[
            (first_day + dt.timedelta(days=i), per_day[first_day + dt.timedelta(days=i)]) for i in range(days)
        ],
        hours=per_hour,
        outcomes=[(o, c) for o, c in outcomes],
        by_status=by_status,
        median_first_response=dt.timedelta(seconds=statistics.median(waits)) if waits else None,
        responded=len(waits),
        backlog=backlog,
        oldest_pending=oldest.replace(tzinfo=dt.UTC) if oldest and oldest.tzinfo is None else oldest,
        review_waiting=waiting or 0,
    )


# --- the clock of each request (the request list's age and overdue marks) -----------


@dataclass(frozen=True)
class RequestClock:
    """How long a request has waited, and whether that is more than its kind allows."""

    age: dt.timedelta
    last_answer_at: dt.datetime | None  # the engineers' latest history entry
    waiting: dt.timedelta | None  # since that answer (or since it came) while it is theirs to act on
    target: dt.timedelta | None
    overdue: bool


#: Statuses in which the next move is the engineers' (awaiting_info waits on the customer).
ENGINEERS_MOVE = frozenset({RequestStatus.NEW, RequestStatus.IN_PROGRESS})


def request_clocks(
    session: Session,
    requests: list[Request],
    targets: dict[str, dt.timedelta],
    *,
    now: dt.datetime | None = None,
) -> dict[int, RequestClock]:
    """The clock of each request, by id (one query for the whole page)."""
    now = now or utcnow()
    ids = [r.id for r in requests]
    answered: dict[int, dt.datetime] = {}
    if ids:
        answered = {
            rid: at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at
            for rid, at in session.execute(
                select(RequestEvent.request_id, func.max(RequestEvent.at))
                .where(RequestEvent.request_id.in_(ids), RequestEvent.actor.like("engineer:%"))
                .group_by(RequestEvent.request_id)
            )
        }
    clocks = {}
    for r in requests:
        last = answered.get(r.id)
        target = targets.get(r.kind)
        waiting = now - (last or r.created_at) if r.status in ENGINEERS_MOVE and not r.archived else None
        clocks[r.id] = RequestClock(
            age=now - r.created_at,
            last_answer_at=last,
            waiting=waiting,
            target=target,
            overdue=bool(waiting is not None and target is not None and waiting > target),
        )
    return clocks
