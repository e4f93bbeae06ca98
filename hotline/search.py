"""Finding calls and requests: filters, text search and pages, fast on large tables.

Case-insensitive search must work for Russian text, but SQLite's lower() and LIKE
fold only ASCII letters (and PostgreSQL's depend on the database's locale). So a
search word becomes a pattern with both cases of every letter (`[Лл][Ии]…`): GLOB on
SQLite, a regular expression on PostgreSQL. «е» and «ё» match each other.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, case, false, func, or_, select
from sqlalchemy.orm import Session, selectinload

from hotline.models import Attachment, Call, Channel, Request, RequestStatus, Transcript
from hotline.numbers import is_valid

T = TypeVar("T")
_SAME = {"е": "ЕеЁё", "ё": "ЕеЁё"}


def _variants(char: str) -> str:
    if char in _SAME:
        return _SAME[char]
    return "".join(dict.fromkeys(char.upper() + char.lower()))


def glob_pattern(text: str) -> str:
    """A SQLite GLOB pattern matching `text` anywhere, in any letter case."""
    out = []
    for char in text.lower():
        variants = _variants(char)
        if len(variants) > 1 or char in "*?[]":
            # ']' must come first inside a class to be literal.
            out.append("[" + "".join(sorted(variants, key=lambda c: c != "]")) + "]")
        else:
            out.append(char)
    return "*" + "".join(out) + "*"


def regex_pattern(text: str) -> str:
    """A POSIX regular expression matching `text` in any letter case."""
    out = []
    for char in text.lower():
        variants = _variants(char)
        if len(variants) > 1:
            out.append("[" + variants + "]")
        else:
            out.append(re.escape(char) if not char.isalnum() else char)
    return "".join(out)


def contains_ci(session: Session, column: ColumnElement[str] | object, text: str) -> ColumnElement[bool]:
    """`column` contains `text`, ignoring letter case (Cyrillic included)."""
    col: ColumnElement[str] = column  # type: ignore[assignment]
    if session.get_bind().dialect.name == "sqlite":
        return col.op("GLOB")(glob_pattern(text))  # type: ignore[return-value]
    return col.op("~")(regex_pattern(text))  # type: ignore[return-value]


_PHONE_LIKE = re.compile(r"^[\d\s+()\-.]+$")


def phone_digits(text: str) -> str:
    """The digits of a phone number as typed (8 900… and +7 900… both give 7900…); '' if not one."""
    if not _PHONE_LIKE.match(text):
        return ""
    digits = re.sub(r"\D", "", text)
    if len(digits) == 11 and digits.startswith("8"):
        digits = "7" + digits[1:]
    return digits


# --- the call log ---


@dataclass(frozen=True)
class CallFilter:
    """What the engineer asked the call log for; every field optional."""

    date_from: dt.datetime | None = None  # inclusive, aware
    date_to: dt.datetime | None = None  # exclusive, aware
    number: str = ""
    outcome: str = ""
    backend: str = ""
    text: str = ""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_cursor: int | None  # id of the last item when there is more
    prev_cursor: int | None  # id of the first item when there is something newer


def _call_conditions(session: Session, f: CallFilter) -> list[ColumnElement[bool]]:
    cond: list[ColumnElement[bool]] = []
    if f.date_from:
        cond.append(Call.started_at >= f.date_from)
    if f.date_to:
        cond.append(Call.started_at < f.date_to)
    if f.outcome:
        cond.append(Call.outcome.is_(None) if f.outcome == "-" else Call.outcome == f.outcome)
    if f.backend:
        cond.append(Call.backend == f.backend)
    if f.number and (digits := phone_digits(f.number)):
        cond.append(Call.from_number.like(f"%{digits}%"))
    if text := f.text.strip():
        options: list[ColumnElement[bool]] = [
            Call.backend_call_id == text,
            contains_ci(session, Call.caller_name, text),
        ]
        if (digits := phone_digits(text)) and len(digits) >= 3:
            options.append(Call.from_number.like(f"%{digits}%"))
        if text.isdigit() and is_valid(text):
            options.append(Call.request.has(Request.number == text))
        cond.append(or_(*options))
    return cond


def search_calls(
    session: Session,
    f: CallFilter,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = 50,
) -> Page[Call]:
    """A page of calls, newest first; keyset pagination on (started_at, id).

    `before` (a call id) gives the page of older calls after it, `after` the page of
    newer calls before it. Keyset pages cost the same on page 1 and page 2000.
    """
    cond = _call_conditions(session, f)
    query: Select[Call] = select(Call).options(selectinload(Call.request))
    newer_first = True
    if before is not None and (anchor := session.get(Call, before)) is not None:
        cond.append(
            or_(
                Call.started_at < anchor.started_at,
                and_(Call.started_at == anchor.started_at, Call.id < anchor.id),
            )
        )
    elif after is not None and (anchor := session.get(Call, after)) is not None:
        cond.append(
            or_(
                Call.started_at > anchor.started_at,
                and_(Call.started_at == anchor.started_at, Call.id > anchor.id),
            )
        )
        newer_first = False
    if newer_first:
        query = query.order_by(Call.started_at.desc(), Call.id.desc())
    else:
        query = query.order_by(Call.started_at.asc(), Call.id.asc())
    rows = list(session.scalars(query.where(*cond).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    if not newer_first:
        rows.reverse()
    paged_from_anchor = before is not None or after is not None
    if newer_first:
        next_cursor = rows[-1].id if rows and more else None
        prev_cursor = rows[0].id if rows and paged_from_anchor else None
    else:
        next_cursor = rows[-1].id if rows else None
        prev_cursor = rows[0].id if rows and more else None
    return Page(rows, next_cursor, prev_cursor)


# --- requests ---


@dataclass(frozen=True)
class RequestFilter:
    status: str = ""
    kind: str = ""
    channel: str = ""
    assignee_id: int | None = None  # 0: nobody
    archived: bool = False
    text: str = ""
    sort: str = ""  # a key of REQUEST_ORDERS; "" is newest first


def _request_conditions(session: Session, f: RequestFilter) -> list[ColumnElement[bool]]:
    cond: list[ColumnElement[bool]] = [
        Request.archived_at.is_not(None) if f.archived else Request.archived_at.is_(None)
    ]
    if f.status:
        cond.append(Request.status == f.status)
    if f.kind:
        cond.append(Request.kind == f.kind)
    if f.channel:
        cond.append(Request.channel == f.channel)
    if f.assignee_id is not None:
        cond.append(
            Request.assignee_id.is_(None) if f.assignee_id == 0 else Request.assignee_id == f.assignee_id
        )
    if text := f.text.strip():
        options: list[ColumnElement[bool]] = [
            contains_ci(session, Request.subject, text),
            contains_ci(session, Request.description, text),
            contains_ci(session, Request.contact_name, text),
            contains_ci(session, Request.contact_email, text),
            Request.attachments.any(
                Attachment.transcript.has(
                    or_(
                        contains_ci(session, Transcript.text, text),
                        contains_ci(session, Transcript.corrected_text, text),
                    )
                )
            ),
        ]
        if text.isdigit():
            options.append(Request.number == text)
        if (digits := phone_digits(text)) and len(digits) >= 3:
            options.append(Request.contact_phone.like(f"%{digits}%"))
        cond.append(or_(*options) if options else false())
    return cond


_STATUS_ORDER = case({s.value: i for i, s in enumerate(RequestStatus)}, value=Request.status, else_=99)
#: The dashboard's sort orders of the request list (webA): key → ORDER BY.
REQUEST_ORDERS: dict[str, tuple[ColumnElement[Any], ...]] = {
    "": (Request.created_at.desc(), Request.id.desc()),
    "age": (Request.created_at.asc(), Request.id.asc()),
    "activity": (Request.updated_at.desc(), Request.id.desc()),
    "status": (_STATUS_ORDER, Request.created_at.asc(), Request.id.asc()),
}


def search_requests(
    session: Session, f: RequestFilter, *, page: int = 1, per_page: int = 50
) -> tuple[Sequence[Request], bool]:
    """A page of requests (newest first, or as `f.sort` says) and whether there is a next page."""
    query = (
        select(Request)
        .options(selectinload(Request.assignee))
        .where(*_request_conditions(session, f))
        .order_by(*REQUEST_ORDERS.get(f.sort, REQUEST_ORDERS[""]))
        .limit(per_page + 1)
        .offset((max(page, 1) - 1) * per_page)
    )
    rows = list(session.scalars(query))
    return rows[:per_page], len(rows) > per_page


def review_queue(session: Session, limit: int = 100) -> Sequence[Request]:
    """Phone requests nobody has looked at yet (status new), the longest waiting first."""
    return session.scalars(
        select(Request)
        .options(selectinload(Request.attachments).selectinload(Attachment.transcript))
        .where(Request.channel == Channel.PHONE, Request.status == RequestStatus.NEW)
        .order_by(Request.created_at.asc(), Request.id.asc())
        .limit(limit)
    ).all()


def review_waiting(session: Session) -> int:
    """How many phone requests wait for review."""
    return (
        session.scalar(
            select(func.count(Request.id)).where(
                Request.channel == Channel.PHONE, Request.status == RequestStatus.NEW
            )
        )
        or 0
    )
