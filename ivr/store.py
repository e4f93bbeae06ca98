"""The call flow against the database, shared by every telephony backend.

`DbCallPort` is the real `ivr.flow.CallPort`: requests through `hotline.registry`,
files through `hotline.storage`, lookups counted from the call log. `CallStore`
runs one event of a call in one transaction: it locks the call's row (webhooks of
one call may arrive together), runs the flow, writes the call log (events, outcome,
flow state, the end of the call) and, after the commit, queues the transcription of
the recordings it stored. Adapters (Twilio webhooks, FastAGI) only translate their
protocol into events and the returned actions into theirs.

Every webhook goes through here, so the call row and its events are read and
written with SQLAlchemy Core (one SELECT, one executemany of events, one UPDATE of
the changed columns); the ORM session is used only by the port's rare writes
(requests, attachments), on the same connection and transaction.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import mimetypes
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, func, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from hotline import calllog, registry, storage
from hotline.db import Database, translate_errors
from hotline.jobs import enqueue_transcription
from hotline.models import Attachment, Call, CallEvent, Request, RequestStatus, utcnow
from hotline.number_sms import queue_number_sms
from hotline.settings import BusinessHours, Settings
from hotline.transcription.live_store import apply_live
from hotline.vocabulary import CallEventKind, Channel, HistoryAction
from ivr import flow
from ivr.flow import CallState, Recording, RequestInfo
from ivr.speech import render_text

log = logging.getLogger(__name__)


class DbCallPort:
    """The data of one call, in one open session (the caller commits)."""

    def __init__(self, session: Session | Callable[[], Session], settings: Settings, call: Call):
        self._session = session  # or what makes it: most events need no session
        self.settings = settings
        self.call = call
        self.stored: list[int] = []  # attachment ids to transcribe after the commit
        self.sms_numbers: set[str] = set()  # new requests whose number goes to the caller by SMS

    @property
    def session(self) -> Session:
        if not isinstance(self._session, Session):
            self._session = self._session()
        return self._session

    @property
    def actor(self) -> str:
        return f"caller:{self.call.from_number or 'unknown'}"

    def today(self) -> dt.date:
        return utcnow().astimezone(self.settings.business_hours.timezone).date()

    def find_request(self, number: str) -> RequestInfo | None:
        request = self.session.scalars(select(Request).where(Request.number == number)).one_or_none()
        if request is None:
            return None
        changed = max(request.updated_at, request.status_changed_at)
        return RequestInfo(
            number=request.number,
            kind=request.kind,
            status=request.status,
            changed_on=changed.astimezone(self.settings.business_hours.timezone).date(),
            clarification_question=(
                request.clarification_question if request.status == RequestStatus.AWAITING_INFO else None
            ),
        )

    def recent_lookups(self) -> int:
        since = utcnow() - dt.timedelta(hours=1)
        query = select(func.count(CallEvent.id)).where(
            CallEvent.kind == CallEventKind.LOOKUP, CallEvent.at >= since
        )
        if self.call.from_number:
            query = query.join(Call).where(Call.from_number == self.call.from_number)
            return self.session.scalar(query) or 0
        # A withheld number: one caller cannot be told from another, so all of them
        # share HOTLINE_WITHHELD_LOOKUPS_PER_HOUR across calls; within it, each call
        # has the per-caller limit of its own lookups.
        withheld = self.session.scalar(query.join(Call).where(Call.from_number.is_(None))) or 0
        if withheld >= self.settings.withheld_lookups_per_hour:
            return max(withheld, self.settings.lookups_per_hour)
        return self.session.scalar(query.where(CallEvent.call_id == self.call.id)) or 0

    def open_voice_request(self, kind: str, recording: Recording) -> str:
        request = registry.open_request(
            self.session,
            kind=kind,
            channel=Channel.PHONE,
            actor=self.actor,
            subject=registry.VOICE_SUBJECT,
            phone=self.call.from_number,
            kind_confirmed=False,  # the caller's choice; an engineer confirms it
        )
        self.call.request_id = request.id
        self._store(request, recording)
        if queue_number_sms(self.session, self.settings, request):
            self.sms_numbers.add(request.number)
        return request.number

    def number_sms_queued(self, number: str) -> bool:
        return number in self.sms_numbers

    def add_information(self, number: str, recording: Recording) -> None:
        request = registry.get_request(self.session, number, for_update=True)
        registry.add_caller_information(
            self.session, request, caller=self.call.from_number, actor=self.actor, what="голосовое сообщение"
        )
        self.call.request_id = self.call.request_id or request.id
        self._store(request, recording)

    def attach_recording(self, number: str, recording: Recording) -> None:
        self._store(registry.get_request(self.session, number), recording)

    def duty_open(self) -> bool:
        return self.settings.business_hours.is_open(utcnow())

    def duty_target(self) -> str | None:
        return self.settings.duty_number

    def duty_hours(self) -> BusinessHours:
        return self.settings.business_hours

    def _store(self, request: Request, recording: Recording) -> None:
        """Store the recording's file with the request, once per recording."""
        if not recording.path:
            return  # the file comes later (Twilio's recording status callback)
        external_id = f"{self.call.backend}:{recording.ref}"
        exists = self.session.scalar(select(Attachment.id).where(Attachment.external_id == external_id))
        if exists is not None:
            return
        path = Path(recording.path)
        content_type = mimetypes.guess_type(path.name)[0] or "audio/wav"
        if content_type == "audio/x-wav":
            content_type = "audio/wav"
        with open(path, "rb") as source:
            attachment = storage.store_attachment(
                self.session,
                self.settings.data_dir,
                source=source,
                filename=_recording_filename(request.number, recording.ref, path.suffix or ".wav"),
                content_type=content_type,
                origin="phone",
                request_id=request.id,
                call_id=self.call.id,
                external_id=external_id,
            )
        seconds = attachment.duration_seconds or recording.duration_seconds
        registry.record(
            self.session,
            request,
            actor=self.actor,
            action=HistoryAction.ATTACHMENT,
            text=f"запись звонка{f', {seconds:.0f} с' if seconds else ''}",
        )
        self.stored.append(attachment.id)


_CALLS = cast(Table, Call.__table__)
_EVENTS = cast(Table, CallEvent.__table__)
_FIND_CALL = select(*_CALLS.c).where(
    _CALLS.c.backend == bindparam("backend"), _CALLS.c.backend_call_id == bindparam("call_id")
)
_FIND_ATTACHMENT = select(Attachment.id).where(Attachment.external_id == bindparam("external_id"))
_INSERT_CALL = insert(_CALLS)
_INSERT_EVENTS = insert(_EVENTS)
# The SET clause follows the parameters given (the columns a step changed).
_UPDATE_CALL = update(_CALLS).where(_CALLS.c.id == bindparam("call_id_"))
_EVENT_COLUMNS = ("call_id", "at", "kind", "detail", "data")


class _CallRow:
    """A call's values as attributes: what the port and the call log read and change.

    Cheaper than a transient `Call` (no ORM instrumentation), which is all they need.
    """

    def __init__(self, values: dict[str, Any]):
        self.__dict__.update(values)


class _CoreRows:
    """The call's row and events through SQLAlchemy Core (any database)."""

    def __init__(self, conn: Connection, find_call: Any):
        self.conn = conn
        self.find_call = find_call

    def find(self, backend: str, call_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(self.find_call, {"backend": backend, "call_id": call_id}).mappings().first()
        return dict(row) if row is not None else None

    def insert_call(self, values: dict[str, Any]) -> int:
        given = {k: v for k, v in values.items() if v is not None}  # the id comes from the database
        return cast(int, self.conn.execute(_INSERT_CALL, given).inserted_primary_key[0])  # type: ignore[index]

    def update_call(self, id_: int, changed: dict[str, Any]) -> None:
        self.conn.execute(_UPDATE_CALL, {**changed, "call_id_": id_})

    def insert_events(self, events: list[dict[str, Any]]) -> None:
        self.conn.execute(_INSERT_EVENTS, events)


class _SqliteStatements:
    """The call row's statements as SQL for the sqlite3 driver, with the columns' own
    conversions (SQLAlchemy's bind and result processors), made once per store."""

    def __init__(self, dialect: Any):
        quote = dialect.identifier_preparer.quote
        self.keys = [c.key for c in _CALLS.c]
        names = ", ".join(quote(c.name) for c in _CALLS.c)
        self.find = f"SELECT {names} FROM calls WHERE backend = ? AND backend_call_id = ?"
        self.insert_call = f"INSERT INTO calls ({names}) VALUES ({', '.join('?' for _ in _CALLS.c)})"
        event_names = ", ".join(quote(_EVENTS.c[k].name) for k in _EVENT_COLUMNS)
        self.insert_events = f"INSERT INTO call_events ({event_names}) VALUES (?, ?, ?, ?, ?)"
        self.quote = quote
        self.results = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in _CALLS.c]
        self.binds = {c.key: c.type.dialect_impl(dialect).bind_processor(dialect) for c in _CALLS.c}
        self.event_binds = [
            _EVENTS.c[k].type.dialect_impl(dialect).bind_processor(dialect) for k in _EVENT_COLUMNS
        ]
        self.names = {c.key: c.name for c in _CALLS.c}

    def bind(self, key: str, value: Any) -> Any:
        process = self.binds[key]
        return process(value) if process is not None and value is not None else value


class _SqliteRows:
    """The call's row and events on the sqlite3 connection under SQLAlchemy's transaction:
    every webhook runs these, and Core's per-statement overhead was most of their cost."""

    def __init__(self, conn: Connection, statements: _SqliteStatements):
        self.conn = conn
        self.cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        self.s = statements

    def _run(self, sql: str, params: Any, many: bool = False) -> Any:
        try:
            return (self.cursor.executemany if many else self.cursor.execute)(sql, params)
        except self.conn.dialect.loaded_dbapi.Error as exc:  # as Core would raise it
            raise _driver_error(self.conn, sql, params, exc) from exc

    def find(self, backend: str, call_id: str) -> dict[str, Any] | None:
        row = self._run(self.s.find, (backend, call_id)).fetchone()
        if row is None:
            return None
        return {
            key: process(value) if process is not None else value
            for key, process, value in zip(self.s.keys, self.s.results, row, strict=True)
        }

    def insert_call(self, values: dict[str, Any]) -> int:
        self._run(self.s.insert_call, [self.s.bind(k, values[k]) for k in self.s.keys])
        return cast(int, self.cursor.lastrowid)

    def update_call(self, id_: int, changed: dict[str, Any]) -> None:
        sets = ", ".join(f"{self.s.quote(self.s.names[k])} = ?" for k in changed)
        params = [self.s.bind(k, v) for k, v in changed.items()]
        self._run(f"UPDATE calls SET {sets} WHERE id = ?", [*params, id_])

    def insert_events(self, events: list[dict[str, Any]]) -> None:
        binds = self.s.event_binds
        rows = [
            [
                p(e[k]) if p is not None and e[k] is not None else e[k]
                for k, p in zip(_EVENT_COLUMNS, binds, strict=True)
            ]
            for e in events
        ]
        self._run(self.s.insert_events, rows, many=True)


@dataclass
class _OpenCall:
    """One call's row in one transaction: what to write back at the end."""

    conn: Connection
    rows: _CoreRows | _SqliteRows
    call: Call  # a _CallRow: a plain holder of the row's values, never added to a session
    loaded: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    _session: Session | None = None

    @property
    def session(self) -> Session:
        return self.get_session()

    def get_session(self) -> Session:
        """An ORM session on the same transaction, for the port's rare writes (made on first use)."""
        if self._session is None:
            if not self.conn.in_transaction():  # begun on SQLite's driver: SQLAlchemy joins it
                self.conn.begin()
            self._session = Session(bind=self.conn, expire_on_commit=False)
        return self._session

    def log(self, kind: str, detail: str = "", **data: Any) -> None:
        self.events.append(
            {"call_id": self.call.id, "at": utcnow(), "kind": kind, "detail": detail, "data": data}
        )

    def write(self) -> None:
        if self._session is not None:
            self._session.flush()  # the port's requests and files first: the call may point at them
        if self.events:
            self.rows.insert_events(self.events)
        changed = {k: new for k, old in self.loaded.items() if (new := getattr(self.call, k)) != old}
        if changed:
            self.rows.update_call(self.call.id, changed)


def _driver_error(conn: Connection, sql: str, params: Any, exc: Exception) -> DBAPIError:
    """A driver's error as SQLAlchemy would raise it."""
    return cast(DBAPIError, DBAPIError.instance(sql, params, exc, conn.dialect.loaded_dbapi.Error))


@contextmanager
def _driver_transaction(conn: Connection) -> Iterator[None]:
    """One SQLite transaction begun and ended on the driver's connection.

    SQLAlchemy's begin and commit cost as much as the webhook's statements; a session
    made later in it joins it (see `hotline.db`) and then commits through SQLAlchemy.
    """
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        driver.execute("BEGIN IMMEDIATE")
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _driver_error(conn, "BEGIN IMMEDIATE", (), exc) from exc
    try:
        yield
    except BaseException:
        driver.rollback()
        raise
    try:
        if conn.in_transaction():
            conn.commit()
        else:
            driver.commit()
    except conn.dialect.loaded_dbapi.Error as exc:
        driver.rollback()
        raise _driver_error(conn, "COMMIT", (), exc) from exc


class _WriterLock:
    """One SQLite writer at a time among this process's threads and, for a database
    file, every process using it (an flock on a file beside it)."""

    def __init__(self, database: str | None):
        self._threads = threading.Lock()
        self._path = f"{database}.writer-lock" if database and database != ":memory:" else None
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._threads.acquire()
        if self._path is None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


class CallStore:
    """Runs the flow of one backend's calls against the database, one event per transaction."""

    def __init__(self, db: Database, settings: Settings, backend: str):
        self.db = db
        self.settings = settings
        self.backend = backend
        self.config = flow.FlowConfig.from_settings(settings)
        sqlite = db.engine.dialect.name == "sqlite"
        # SQLite has one writer at a time and makes the others sleep and poll
        # (busy_timeout), which turns contention into second-long stalls; queueing
        # the writers of every HTTP worker process on a lock is much fairer and faster.
        self._writing: AbstractContextManager[object] = (
            _WriterLock(db.engine.url.database) if sqlite else nullcontext()
        )
        # The row lock serialises the webhooks of one call on PostgreSQL; SQLite's
        # BEGIN IMMEDIATE already serialises every writer.
        self._find_call = _FIND_CALL if sqlite else _FIND_CALL.with_for_update()
        self._sqlite = _SqliteStatements(db.engine.dialect) if sqlite else None

    @contextmanager
    def _open(
        self,
        call_id: str,
        from_number: str | None = None,
        to_number: str | None = None,
        *,
        starts: bool = False,
    ) -> Iterator[_OpenCall]:
        """The call (made on first sight) in a transaction; its changes are written on success.

        `starts`: the backend says a call begins; a call with this id that has ended is
        an old one (a reused id), renamed out of the way so the new call starts afresh.
        """
        # The connection is taken from the pool before queueing for the writer lock,
        # which every webhook of every worker waits for: keep the work under it short.
        with (
            translate_errors(),
            self.db.engine.connect() as conn,
            self._writing,
            _driver_transaction(conn) if self._sqlite else conn.begin(),
        ):
            rows: _CoreRows | _SqliteRows = (
                _SqliteRows(conn, self._sqlite) if self._sqlite else _CoreRows(conn, self._find_call)
            )
            values = rows.find(self.backend, call_id)
            if values is not None and starts and values["ended_at"] is not None:
                rows.update_call(values["id"], {"backend_call_id": f"{call_id}#{values['id']}"[:120]})
                values = None
            if values is None:
                values = {c.key: None for c in _CALLS.c}
                values.update(
                    backend=self.backend,
                    backend_call_id=call_id,
                    from_number=from_number,
                    to_number=to_number,
                    started_at=utcnow(),
                    flow_state={},
                )
                values["id"] = rows.insert_call(values)
            elif from_number and not values["from_number"]:  # the number came late: fill the gaps
                values["to_number"] = values["to_number"] or to_number
                rows.update_call(values["id"], {"from_number": from_number, "to_number": values["to_number"]})
                values["from_number"] = from_number
            opened = _OpenCall(conn, rows, cast(Call, _CallRow(values)), dict(values))
            try:
                yield opened
                opened.write()
            finally:
                if opened._session is not None:
                    opened._session.close()

    def handle(
        self,
        call_id: str,
        event: flow.Event,
        *,
        from_number: str | None = None,
        to_number: str | None = None,
        seq: int | None = None,
    ) -> flow.Step:
        """Apply one event; with `seq`, an event for an older step only asks again."""
        starts = isinstance(event, flow.CallStarted)
        with self._open(call_id, from_number, to_number, starts=starts) as opened:
            call = opened.call
            state = CallState.from_json(call.flow_state)
            if seq is not None and seq != state.seq:
                opened.log(CallEventKind.STALE_WEBHOOK, f"{seq} != {state.seq}")
                return flow.Step(state, flow.reprompt(state, self.config))
            port = DbCallPort(opened.get_session, self.settings, call)
            if isinstance(event, flow.CallStarted):
                call.answered_at = call.answered_at or utcnow()
            step = flow.handle(state, event, port, self.config)
            self._apply(opened, step)
        self._after_commit(port)
        return step

    def save_recording(self, call_id: str, recording: Recording) -> flow.Step:
        """A recording's file arrived apart from the call (Twilio's status callback)."""
        with self._open(call_id) as opened:
            port = DbCallPort(opened.get_session, self.settings, opened.call)
            step = flow.save_recording(CallState.from_json(opened.call.flow_state), recording, port)
            self._apply(opened, step)
        self._after_commit(port)
        return step

    def known(self, call_id: str) -> bool:
        """True if a call with this id was ever seen (callbacks for others make no call row)."""
        with self.db.transaction() as conn:
            found = conn.execute(_FIND_CALL, {"backend": self.backend, "call_id": call_id}).first()
            return found is not None

    def has_recording(self, ref: str) -> bool:
        """True if the file of this recording is stored already."""
        with self.db.transaction() as conn:
            found = conn.execute(_FIND_ATTACHMENT, {"external_id": f"{self.backend}:{ref}"}).first()
            return found is not None

    def log(self, call_id: str, kind: str, detail: str = "", **data: object) -> None:
        """A call-log event the flow does not know of (a refused download, say)."""
        with self._open(call_id) as opened:
            opened.log(kind, detail, **data)

    def hang_up(
        self,
        call_id: str,
        *,
        backend_status: str | None = None,
        duration_seconds: int | None = None,
        hangup_cause: str | None = None,
        from_number: str | None = None,
        to_number: str | None = None,
        outcome: str | None = None,
    ) -> flow.Step:
        """The backend reports the end of the call: close its log entry.

        `outcome` names why the backend ended a call that achieved nothing (a service
        restart, a refused session) instead of `abandoned`; an achieved outcome stays.
        """
        with self._open(call_id, from_number, to_number) as opened:
            port = DbCallPort(opened.get_session, self.settings, opened.call)
            step = flow.handle(CallState.from_json(opened.call.flow_state), flow.Hangup(), port, self.config)
            if outcome and step.state.outcome in (None, "abandoned"):
                step.state.outcome = outcome
            self._apply(opened, step)
            calllog.end_call(
                opened.session,
                opened.call,
                backend_status=backend_status,
                duration_seconds=duration_seconds,
                hangup_cause=hangup_cause,
            )
        return step

    def _apply(self, opened: _OpenCall, step: flow.Step) -> None:
        call = opened.call
        for entry in step.log:
            opened.log(entry.kind, entry.detail, **entry.data)
        for action in step.actions:
            if isinstance(action, flow.Speak):
                # What the caller heard, word for word: the call's page tells it.
                opened.log(CallEventKind.SAID, render_text(action.segments))
        call.flow_state = step.state.to_json()
        if step.state.outcome:
            call.outcome = step.state.outcome
        if step.state.step == flow.StepName.ENDED and call.ended_at is None:
            calllog.end_call(opened.session, call)

    def _after_commit(self, port: DbCallPort) -> None:
        for attachment_id in port.stored:
            try:
                # A live transcript already made while the caller spoke is the transcript now;
                # the queued job then finds the recording done (or replaces a partial one).
                apply_live(self.db, attachment_id)
            except Exception:  # noqa: BLE001 - the offline job still transcribes it
                log.exception("could not apply the live transcript of attachment %s", attachment_id)
            try:
                enqueue_transcription(self.settings, attachment_id)
            except Exception:  # noqa: BLE001 - the row stays 'pending' and is found again
                log.exception("could not queue the transcription of attachment %s", attachment_id)


def _recording_filename(number: str, ref: str, suffix: str) -> str:
    """`10019-RE123.wav`: the request number, the peer's id of the recording, one suffix."""
    name = Path(ref).name
    return f"{number}-{name}" if name.lower().endswith(suffix.lower()) else f"{number}-{name}{suffix}"
