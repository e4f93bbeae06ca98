"""Finding calls and requests: filters, text search and pages, fast on large tables.

Case-insensitive search must work for Russian text, but SQLite's lower() and LIKE
fold only ASCII letters (and PostgreSQL's depend on the database's locale). So a
search word becomes a pattern with both cases of every letter (`[Лл][Ии]…`): GLOB on
SQLite, a regular expression on PostgreSQL. «е» and «ё» match each other.

Word forms («калибровка» finds «калибровки») come from a full-text index of each
request's text (subject, contact, transcripts, letters, notes) in `request_search`:
PostgreSQL searches it with its `russian` text-search configuration through a GIN
index, SQLite through an FTS5 table of Snowball stems (the `snowballstemmer` package,
the same Russian algorithm PostgreSQL's configuration uses). The index is brought up
to date in the same transaction by every flush that touches a request, its history,
files or transcripts (`_reindex_after_flush`), and built for existing rows by
migration 0004.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, TypeVar

import snowballstemmer
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    case,
    delete,
    event,
    false,
    func,
    insert,
    inspect,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session, selectinload

from hotline.models import (
    Attachment,
    Call,
    Channel,
    Request,
    RequestEvent,
    RequestSearch,
    RequestStatus,
    Transcript,
)
from hotline.numbers import MAX_LENGTH, MIN_LENGTH, is_valid
from hotline.phones import search_digits

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


# --- the call log ---


def _local_day(text_: str | None, tz: dt.tzinfo, *, next_day: bool = False) -> dt.datetime | None:
    """The start of a local date typed as YYYY-MM-DD (or of the day after); None if not a date."""
    try:
        day = dt.date.fromisoformat(text_ or "")
    except ValueError:
        return None
    return dt.datetime.combine(day + dt.timedelta(days=1 if next_day else 0), dt.time(), tz)


@dataclass(frozen=True)
class CallFilter:
    """What the engineer asked the call log for; every field optional."""

    date_from: dt.datetime | None = None  # inclusive, aware
    date_to: dt.datetime | None = None  # exclusive, aware
    number: str = ""
    outcome: str = ""
    backend: str = ""
    text: str = ""

    @classmethod
    def from_query(cls, args: Mapping[str, str], tz: dt.tzinfo) -> CallFilter:
        """The filter of the call log's query string (from, to, number, outcome, backend, q)."""
        return cls(
            date_from=_local_day(args.get("from"), tz),
            date_to=_local_day(args.get("to"), tz, next_day=True),
            number=args.get("number", "")[:40],
            outcome=args.get("outcome", "")[:40],
            backend=args.get("backend", "")[:20],
            text=args.get("q", "")[:100],
        )


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
    if f.number and (digits := search_digits(f.number)):
        cond.append(Call.from_number.like(f"%{digits}%"))
    if text := f.text.strip():
        options: list[ColumnElement[bool]] = [
            Call.backend_call_id == text,
            contains_ci(session, Call.caller_name, text),
        ]
        if (digits := search_digits(text)) and len(digits) >= 3:
            options.append(Call.from_number.like(f"%{digits}%"))
        if number := request_number_in(text):
            options.append(Call.request.has(Request.number == number))
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

    @classmethod
    def from_query(
        cls, args: Mapping[str, str], *, archived: bool = False, me: int | None = None
    ) -> RequestFilter:
        """The filter of the request list's query string (status, kind, channel, assignee,
        q, sort; `mine=1` means the engineer `me`, outside the archive)."""
        assignee = args.get("assignee", "")
        mine = bool(args.get("mine")) and not archived and me is not None
        return cls(
            status=args.get("status", "") if args.get("status") in set(RequestStatus) else "",
            kind=args.get("kind", "")[:20],
            channel=args.get("channel", "")[:10],
            assignee_id=me
            if mine
            else int(assignee)
            if assignee.isascii() and assignee.isdigit() and len(assignee) < 10
            else None,
            archived=archived,
            text=args.get("q", "")[:100],
            sort=args.get("sort", "") if args.get("sort", "") in REQUEST_ORDERS else "",
        )


def _request_conditions(
    session: Session, f: RequestFilter, *, substrings: bool | None = None
) -> list[ColumnElement[bool]]:
    """The filter as SQL conditions.

    Text is matched by words through the index; the substring scan (any letter case,
    a piece of a word) reads every row, so it runs only when the words find nothing
    (`substrings=None` decides that with one indexed query) or when asked to.
    """
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
        options: list[ColumnElement[bool]] = []
        if number := request_number_in(text):
            options.append(Request.number == number)
        elif text.isdigit():
            options.append(Request.number == text)
        if (digits := search_digits(text)) and len(digits) >= 3:
            options.append(Request.contact_phone.like(f"%{digits}%"))
        words = word_match(session, text)
        if words is not None:
            options.append(words)
        if substrings is None:
            substrings = (
                words is None
                or session.scalar(select(Request.id).where(*cond, or_(*options)).limit(1)) is None
            )
        if substrings:
            options += [
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


def count_requests(session: Session, f: RequestFilter) -> int:
    """How many requests the filter matches (one COUNT, the pages' own conditions)."""
    return session.scalar(select(func.count(Request.id)).where(*_request_conditions(session, f))) or 0


def count_calls(session: Session, f: CallFilter) -> int:
    """How many calls the filter matches (one COUNT, the pages' own conditions)."""
    return session.scalar(select(func.count(Call.id)).where(*_call_conditions(session, f))) or 0


def matching_request_ids(session: Session, f: RequestFilter, limit: int) -> list[int]:
    """Ids of every request the filter matches, newest first, at most `limit` (exports)."""
    query = (
        select(Request.id)
        .where(*_request_conditions(session, f))
        .order_by(Request.created_at.desc(), Request.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def matching_call_ids(session: Session, f: CallFilter, limit: int) -> list[int]:
    """Ids of every call the filter matches, newest first, at most `limit` (exports)."""
    query = (
        select(Call.id)
        .where(*_call_conditions(session, f))
        .order_by(Call.started_at.desc(), Call.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


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


# --- request numbers typed into a search box ---

_NUMBER_TYPED = re.compile(r"^\s*(?:№|#|N|No\.?)?\s*([\d\s-]+?)\s*#?\s*$", re.IGNORECASE)


def typed_number(text: str) -> str:
    """The digits of what looks like a request number («№ 10035», «10 035», «#10035»); '' if not."""
    match = _NUMBER_TYPED.match(text)
    if not match:
        return ""
    digits = re.sub(r"[\s-]", "", match.group(1))
    return digits if digits.isascii() and MIN_LENGTH <= len(digits) <= MAX_LENGTH else ""


def request_number_in(text: str) -> str:
    """The valid request number typed as the whole query, or ''."""
    digits = typed_number(text)
    return digits if digits and is_valid(digits) else ""


def near_numbers(digits: str) -> list[str]:
    """Valid numbers one keypad slip away: one digit changed or two neighbours swapped.

    The Damm check digit catches exactly these slips, so a number that fails its check
    has few valid neighbours, and the one the person meant is among them.
    """
    found: set[str] = set()
    for i, old in enumerate(digits):
        for new in "0123456789":
            if new != old:
                found.add(digits[:i] + new + digits[i + 1 :])
    for i in range(len(digits) - 1):
        found.add(digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :])
    return sorted(n for n in found if is_valid(n) and n[0] != "0")


def suggest_numbers(session: Session, query: str, limit: int = 3) -> list[str]:
    """Existing requests the person probably meant when the number typed fails its check."""
    digits = typed_number(query)
    if not digits or is_valid(digits):
        return []
    candidates = near_numbers(digits)
    if not candidates:
        return []
    rows = session.scalars(
        select(Request.number).where(Request.number.in_(candidates)).order_by(Request.number)
    )
    return list(rows)[:limit]


# --- the word-form index of requests ---

FTS_TABLE = "request_search_fts"
PG_INDEX = "ix_request_search_body_russian"
#: Database objects of the index made by migration 0004 outside the models (see hotline.db).
PG_VECTOR = "body_russian"  # PostgreSQL only: the stored tsvector of `body`
INDEX_OBJECTS = frozenset({FTS_TABLE, PG_INDEX, PG_VECTOR})
_WORD = re.compile(r"[^\W_]+")
_CYRILLIC = re.compile(r"[а-я]")
MIN_PREFIX = 3  # a query word this long also matches longer words beginning with its stem
MAX_QUERY_WORDS = 12


def index_ddl(dialect: str) -> list[str]:
    """Statements that make the word-form index on `dialect`."""
    if dialect == "sqlite":
        return [
            # The rowid is the request's id; the one column holds the stems of its text.
            f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(stems, tokenize = 'unicode61 remove_diacritics 0')",
            f"CREATE TRIGGER {FTS_TABLE}_delete AFTER DELETE ON request_search BEGIN "
            f"DELETE FROM {FTS_TABLE} WHERE rowid = old.request_id; END",
        ]
    if dialect == "postgresql":
        # Stored, so that checking a row costs no parsing: a common word matches most
        # rows, and the planner then checks them one by one in date order.
        return [
            f"ALTER TABLE request_search ADD COLUMN {PG_VECTOR} tsvector "
            "GENERATED ALWAYS AS (to_tsvector('russian'::regconfig, body)) STORED",
            f"CREATE INDEX {PG_INDEX} ON request_search USING gin ({PG_VECTOR})",
        ]
    return []


def drop_index_ddl(dialect: str) -> list[str]:
    """Statements that remove the word-form index on `dialect`."""
    if dialect == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {FTS_TABLE}_delete", f"DROP TABLE IF EXISTS {FTS_TABLE}"]
    if dialect == "postgresql":
        return [
            f"DROP INDEX IF EXISTS {PG_INDEX}",
            f"ALTER TABLE request_search DROP COLUMN IF EXISTS {PG_VECTOR}",
        ]
    return []


def is_index_object(name: str | None) -> bool:
    """True for the index's own tables and indexes (FTS5 shadow tables included)."""
    return bool(name) and (name in INDEX_OBJECTS or str(name).startswith(FTS_TABLE + "_"))


def normalise(text_: str) -> str:
    """ё as е, as people type it."""
    return text_.replace("ё", "е").replace("Ё", "Е")


@lru_cache(maxsize=1)
def _stemmers() -> tuple[Any, Any]:
    return snowballstemmer.stemmer("russian"), snowballstemmer.stemmer("english")


def words(text_: str) -> list[str]:
    """The words and numbers of `text_`, lower-case, ё as е."""
    return _WORD.findall(normalise(text_).lower())


def stems(text_: str) -> list[str]:
    """The Snowball stems of the words of `text_` (Russian or English by the letters)."""
    russian, english = _stemmers()
    return [
        (russian if _CYRILLIC.search(word) else english).stemWord(word) if not word.isdigit() else word
        for word in words(text_)
    ]


def word_match(session: Session, query: str) -> ColumnElement[bool] | None:
    """Requests whose indexed text has every word of `query` in any form; None if no words."""
    query_words = words(query)[:MAX_QUERY_WORDS]
    if not query_words:
        return None
    if session.get_bind().dialect.name == "sqlite":
        terms = []
        for stem in stems(" ".join(query_words)):
            terms.append(f'"{stem}"*' if len(stem) >= MIN_PREFIX and not stem.isdigit() else f'"{stem}"')
        match = text(f"{FTS_TABLE} MATCH :fts_query").bindparams(fts_query=" AND ".join(terms))
        return Request.id.in_(select(literal_column("rowid")).select_from(text(FTS_TABLE)).where(match))
    tsquery = " & ".join(
        f"{word}:*" if len(word) >= MIN_PREFIX and not word.isdigit() else word for word in query_words
    )
    vector: ColumnElement[Any] = literal_column(f"request_search.{PG_VECTOR}")
    matches = vector.op("@@")(func.to_tsquery(literal_column("'russian'::regconfig"), tsquery))
    return Request.id.in_(select(RequestSearch.request_id).where(matches))


def request_texts(conn: Connection, request_ids: Sequence[int]) -> dict[int, str]:
    """Everything searchable said in and about each request (requests that are gone: absent)."""
    parts: dict[int, list[str]] = {}
    rows = conn.execute(
        select(
            Request.id,
            Request.subject,
            Request.description,
            Request.contact_name,
            Request.organisation,
            Request.contact_email,
            Request.clarification_question,
        ).where(Request.id.in_(request_ids))
    )
    for request_id, *fields in rows:
        parts[request_id] = [f for f in fields if f]
    if not parts:
        return {}
    files = conn.execute(
        select(Attachment.request_id, Attachment.filename, Transcript.text, Transcript.corrected_text)
        .select_from(Attachment)
        .outerjoin(Transcript, Transcript.attachment_id == Attachment.id)
        .where(Attachment.request_id.in_(list(parts)))
        .order_by(Attachment.id)
    )
    for file_of, filename, heard, corrected in files:
        if file_of is not None:  # never: the query asks for files of these requests
            parts[file_of].extend(p for p in (filename, corrected, heard) if p)
    history = conn.execute(
        select(RequestEvent.request_id, RequestEvent.text)
        .where(RequestEvent.request_id.in_(list(parts)), RequestEvent.text != "")
        .order_by(RequestEvent.id)
    )
    for entry_of, said in history:
        parts[entry_of].append(said)
    return {request_id: normalise("\n".join(texts)) for request_id, texts in parts.items()}


def reindex(conn: Connection, request_ids: Iterable[int]) -> None:
    """Bring the index of these requests up to date (in the caller's transaction)."""
    ids = sorted(set(request_ids))
    if not ids:
        return
    bodies = request_texts(conn, ids)
    conn.execute(delete(RequestSearch).where(RequestSearch.request_id.in_(ids)))
    if bodies:
        conn.execute(insert(RequestSearch), [{"request_id": i, "body": b} for i, b in bodies.items()])
    if conn.dialect.name == "sqlite":
        conn.execute(text(f"DELETE FROM {FTS_TABLE} WHERE rowid IN ({', '.join(map(str, ids))})"))
        if bodies:
            conn.execute(
                text(f"INSERT INTO {FTS_TABLE} (rowid, stems) VALUES (:id, :stems)"),
                [{"id": i, "stems": " ".join(stems(b))} for i, b in bodies.items()],
            )


def rebuild_index(conn: Connection, batch: int = 500) -> int:
    """Index every request (migration 0004, `hotline` repairs); the number indexed."""
    done = 0
    last = 0
    while True:
        ids = list(
            conn.scalars(select(Request.id).where(Request.id > last).order_by(Request.id).limit(batch))
        )
        if not ids:
            return done
        reindex(conn, ids)
        done += len(ids)
        last = ids[-1]


def _touched_requests(session: Session) -> set[int]:
    request_ids: set[int] = set()
    attachment_ids: set[int] = set()
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Request):
            request_ids.add(obj.id)
        elif isinstance(obj, RequestEvent | Attachment):
            # The request it belongs to now, and the one it left (a file moved to another request).
            history = inspect(obj).attrs.request_id.history  # type: ignore[attr-defined]
            request_ids.update(rid for rid in (obj.request_id, *history.deleted) if rid is not None)
        elif isinstance(obj, Transcript):
            attachment_ids.add(obj.attachment_id)
    if attachment_ids:
        request_ids.update(
            rid
            for rid in session.connection().scalars(
                select(Attachment.request_id).where(Attachment.id.in_(attachment_ids))
            )
            if rid is not None
        )
    return {rid for rid in request_ids if rid is not None}


@event.listens_for(Session, "after_flush")
def _reindex_after_flush(session: Session, _context: Any) -> None:
    """Every flush that touches a request's text updates its index in the same transaction.

    Core statements on the flush's connection: the ORM must not be used inside a flush
    event, and the index must commit or roll back with the change it describes.
    """
    if touched := _touched_requests(session):
        reindex(session.connection(), touched)
