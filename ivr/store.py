"""The call flow against the database, shared by every telephony backend.

`DbCallPort` is the real `ivr.flow.CallPort`: requests through `hotline.registry`,
files through `hotline.storage`, lookups counted from the call log. `CallStore`
runs one event of a call: it reads the call's row, runs the flow, and writes the
call log (events, outcome, flow state, the end of the call) only if the row is still
as read (webhooks of one call may arrive together: the second finds the call moved
on and runs again on the new row); after the commit it queues the transcription of
the recordings it stored. Adapters (Twilio webhooks, FastAGI) only translate their
protocol into events and the returned actions into theirs.

Every webhook goes through here. Most steps change only the call's row: one read
outside a transaction, and one committed write (`CallRowStore.move`/`make`: on
PostgreSQL one statement, on SQLite one short transaction under the writer lock).
A step that reads or writes more (a status lookup, a request, a file, the end of
the call) runs in one transaction holding the row (`FOR UPDATE` on PostgreSQL), with
the ORM session only for the port's rare writes, on the same connection.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import mimetypes
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Select, bindparam, func, select
from sqlalchemy.orm import Session

from hotline import calllog, callrows, registry, storage
from hotline.db import Database, translate_errors
from hotline.jobs import enqueue_transcription
from hotline.models import Attachment, Call, CallEvent, Request, RequestStatus, utcnow
from hotline.notify.registry import route
from hotline.settings import BusinessHours, Settings
from hotline.transcription.live_store import apply_live
from hotline.vocabulary import CallEventKind, Channel, HistoryAction, NotificationKind, NotifyChannel
from ivr import flow
from ivr.flow import CallState, Recording, RequestInfo
from ivr.speech import render_text

log = logging.getLogger(__name__)
T = TypeVar("T")


# Every status lookup runs these two: Core statements made once (the ORM's per-query
# overhead was most of a lookup's cost under a burst of calls).
_FIND_REQUEST = select(
    Request.number,
    Request.kind,
    Request.status,
    Request.updated_at,
    Request.status_changed_at,
    Request.clarification_question,
).where(Request.number == bindparam("number"))
# `kind || ''` keeps SQLite off the (kind, at) index, which holds every caller's lookups
# of the hour (thousands in a burst): the caller's own calls, then their events, are a
# few rows (measured: 1.3 ms → 0.02 ms a query with 1,000 lookups in the hour).
_LOOKUPS = select(func.count(CallEvent.id)).where(
    CallEvent.kind.concat("") == CallEventKind.LOOKUP.value, CallEvent.at >= bindparam("since")
)
_LOOKUPS_BY_NUMBER = _LOOKUPS.join(Call).where(Call.from_number == bindparam("number"))
_LOOKUPS_OF_CALL = _LOOKUPS.where(CallEvent.call_id == bindparam("call_id"))
_LOOKUPS_WITHHELD = _LOOKUPS.join(Call).where(Call.from_number.is_(None))


class DbCallPort:
    """The data of one call, in one open session (the caller commits)."""

    def __init__(self, session: Session | Callable[[], Session], settings: Settings, call: Call):
        self._session = session  # or what makes it: most events need no session
        self.settings = settings
        self.call = call
        self.stored: list[int] = []  # attachment ids to transcribe after the commit

    @property
    def session(self) -> Session:
        if not isinstance(self._session, Session):
            self._session = self._session()
        return self._session

    @property
    def actor(self) -> str:
        return registry.caller_actor(self.call.from_number)

    def today(self) -> dt.date:
        return utcnow().astimezone(self.settings.business_hours.timezone).date()

    def _reads(self) -> Connection:
        """Where the port's reads run (the live store reads elsewhere)."""
        return self.session.connection()

    def find_request(self, number: str) -> RequestInfo | None:
        row = self._reads().execute(_FIND_REQUEST, {"number": number}).first()
        return None if row is None else self._request_info(*row)

    def _request_info(
        self,
        number: str,
        kind: str,
        status: str,
        updated_at: dt.datetime,
        status_changed_at: dt.datetime,
        clarification_question: str | None = None,
    ) -> RequestInfo:
        changed = max(updated_at, status_changed_at)
        timezone = self.settings.business_hours.timezone
        return RequestInfo(
            number=number,
            kind=kind,
            status=status,
            changed_on=changed.astimezone(timezone).date(),
            clarification_question=clarification_question if status == RequestStatus.AWAITING_INFO else None,
        )

    def recent_lookups(self) -> int:
        since = utcnow() - dt.timedelta(hours=1)
        if self.call.from_number:
            return self._count(_LOOKUPS_BY_NUMBER, since=since, number=self.call.from_number)
        # A withheld number: one caller cannot be told from another, so all of them
        # share HOTLINE_WITHHELD_LOOKUPS_PER_HOUR across calls; within it, each call
        # has the per-caller limit of its own lookups.
        withheld = self._count(_LOOKUPS_WITHHELD, since=since)
        if withheld >= self.settings.withheld_lookups_per_hour:
            return max(withheld, self.settings.lookups_per_hour)
        return self._count(_LOOKUPS_OF_CALL, since=since, call_id=self.call.id)

    def _count(self, query: Select[Any], **params: Any) -> int:
        """One of the lookup counts (the live store adds the lookups still queued)."""
        return self._reads().execute(query, params).scalar() or 0

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
        return request.number

    def number_sms_queued(self, number: str) -> bool:
        # The outbox sends the `created` notification by this same rule once the call's
        # transaction commits (one row per history entry: once, retried, in the history).
        request = registry.get_request(self.session, number)
        return route(self.settings, request, NotificationKind.CREATED).channel == NotifyChannel.SMS

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


_FIND_ATTACHMENT = select(Attachment.id).where(Attachment.external_id == bindparam("external_id"))


class _CallRow:
    """A call's values as attributes: what the port and the call log read and change.

    Cheaper than a transient `Call` (no ORM instrumentation), which is all they need.
    """

    def __init__(self, values: dict[str, Any]):
        self.__dict__.update(values)


@dataclass
class _OpenCall:
    """One call's row in one transaction: what to write back at the end."""

    conn: Connection | None  # None: a step run ahead of its transaction (CallStore._ahead)
    rows: callrows.CallRows
    call: Call  # a _CallRow: a plain holder of the row's values, never added to a session
    loaded: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    _session: Session | None = None

    @property
    def session(self) -> Session:
        return self.get_session()

    def get_session(self) -> Session:
        """An ORM session on the same transaction, for the port's rare writes (made on first use)."""
        if self.conn is None:
            raise _NeedsLock
        if self._session is None:
            if not self.conn.in_transaction():  # begun on SQLite's driver: SQLAlchemy joins it
                self.conn.begin()
            self._session = Session(bind=self.conn, expire_on_commit=False)
        return self._session

    def log(self, kind: str, detail: str = "", **data: Any) -> None:
        self.events.append(
            {"call_id": self.call.id, "at": utcnow(), "kind": kind, "detail": detail, "data": data}
        )

    def changed(self) -> dict[str, Any]:
        """The columns the step changed, with their new values."""
        return {k: new for k, old in self.loaded.items() if (new := getattr(self.call, k)) != old}

    def write(self) -> None:
        if self._session is not None:
            self._session.flush()  # the port's requests and files first: the call may point at them
        if self.events:
            self.rows.insert_events(self.events)
        changed = self.changed()
        if changed:
            self.rows.update_call(self.call.id, changed)


class _NeedsLock(Exception):
    """A step run ahead needs the transaction (a session for reads or writes)."""


class _ReadOnlyRows:
    """CallRows that read and write nothing: `start_call` as it would go, ahead of the lock."""

    NEW_ID = 0  # the id of a call not inserted yet

    def __init__(self, rows: callrows.CallRows):
        self.rows = rows

    def find(self, backend: str, backend_call_id: str) -> dict[str, Any] | None:
        return self.rows.find(backend, backend_call_id)

    def insert_call(self, values: dict[str, Any]) -> int:
        return self.NEW_ID

    def update_call(self, id_: int, changed: dict[str, Any]) -> None:
        pass

    def insert_events(self, events: list[dict[str, Any]]) -> None:
        pass

    def move(self, loaded: dict[str, Any], changed: dict[str, Any], events: list[dict[str, Any]]) -> bool:
        return False

    def make(self, values: dict[str, Any], events: list[dict[str, Any]]) -> int | None:
        return None


@dataclass
class _Ahead:
    """A step run on the call's row before the transaction, and what it would write."""

    read: dict[str, Any]  # the row it ran on (id 0: a call not made yet)
    opened: _OpenCall
    step: flow.Step

    def move(self, rows: callrows.CallRowStore, conn: Connection) -> bool:
        """Write the step now, committed, if its row is still the one it ran on (one
        statement on PostgreSQL, a short write transaction on SQLite): a new call is
        made if no call has its id yet, a call's row moved on if it is still as read."""
        if self.read["id"] != _ReadOnlyRows.NEW_ID:
            return rows.move(conn, self.read, self.opened.changed(), self.opened.events)
        values = {k: getattr(self.opened.call, k) for k in self.read}
        return rows.make(conn, {**values, "id": None}, self.opened.events) is not None


class CallStore:
    """Runs the flow of one backend's calls against the database, one event per transaction."""

    def __init__(self, db: Database, settings: Settings, backend: str):
        self.db = db
        self.settings = settings
        self.backend = backend
        self.config = flow.FlowConfig.from_settings(settings)
        self.rows = callrows.CallRowStore(db.engine)

    @contextmanager
    def _open(
        self,
        call_id: str,
        from_number: str | None = None,
        to_number: str | None = None,
        *,
        starts: bool = False,
        conn: Connection | None = None,
    ) -> Iterator[_OpenCall]:
        """The call (made on first sight) in a transaction; its changes are written on success.

        `starts`: the backend says a call begins; a call with this id that has ended is
        an old one (a reused id), renamed out of the way so the new call starts afresh.
        `conn`: a connection to run it on (otherwise one from the pool).
        """
        with translate_errors(), self.rows.transaction(conn=conn) as (conn, rows):
            values = callrows.start_call(
                rows, self.backend, call_id, from_number=from_number, to_number=to_number, starts=starts
            )
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
        with translate_errors(), self.db.engine.connect() as conn:  # one connection for all
            with self.rows.autocommit(conn):
                ahead = self._ahead(conn, call_id, event, from_number, to_number, starts, seq)
                if ahead is not None and ahead.move(self.rows, conn):
                    return ahead.step
            with self._open(call_id, from_number, to_number, starts=starts, conn=conn) as opened:
                step, port = self._step(opened, event, seq, starts)
        if port is not None:
            self._after_commit(port)
        return step

    def step(
        self,
        call_id: str,
        event: flow.Event,
        state: CallState | None,
        *,
        from_number: str | None = None,
        to_number: str | None = None,
        seq: int | None = None,
    ) -> flow.Step:
        """`handle`, for a webhook that carries the call's state (`state`, from its URL):
        here the row is read anyway (`ivr.twilio.behind.QueuedCallStore` runs on it)."""
        return self.handle(call_id, event, from_number=from_number, to_number=to_number, seq=seq)

    def _step(
        self, opened: _OpenCall, event: flow.Event, seq: int | None, starts: bool
    ) -> tuple[flow.Step, DbCallPort | None]:
        """Run the event on the opened call; the port, if the flow ran."""
        call = opened.call
        state = CallState.from_json(call.flow_state)
        if seq is not None and seq != state.seq:
            opened.log(CallEventKind.STALE_WEBHOOK, f"{seq} != {state.seq}")
            return flow.Step(state, flow.reprompt(state, self.config)), None
        port = DbCallPort(opened.get_session, self.settings, call)
        if starts:
            call.answered_at = call.answered_at or utcnow()
        step = flow.handle(state, event, port, self.config)
        self._apply(opened, step)
        return step, port

    def _ahead(
        self,
        conn: Connection,
        call_id: str,
        event: flow.Event,
        from_number: str | None,
        to_number: str | None,
        starts: bool,
        seq: int | None,
    ) -> _Ahead | None:
        """The step run before any transaction, on the call's row as it is now.

        Most steps change only the call's row, so they are run first on a read (outside
        a transaction: on SQLite it waits for no writer, on PostgreSQL it is one round
        trip); `_Ahead.move` then writes it if the row is still the same: on SQLite
        the one writer's time under the lock, which every webhook queues for, is one
        UPDATE and one INSERT; on PostgreSQL it is one statement, two round trips a
        step in all. A step that reads or writes more (a status lookup, a request, the
        end of the call) returns None here and runs in the transaction, as does any
        step whose row changed in between.
        """
        # Autocommit (`CallRowStore.autocommit`): a read, no BEGIN.
        rows = callrows.call_rows(conn, lock=False)
        values = callrows.start_call(
            _ReadOnlyRows(rows),
            self.backend,
            call_id,
            from_number=from_number,
            to_number=to_number,
            starts=starts,
        )
        opened = _OpenCall(None, rows, cast(Call, _CallRow(values)), dict(values))
        try:
            step, _ = self._step(opened, event, seq, starts)
        except _NeedsLock:
            return None
        return _Ahead(values, opened, step)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` (a store method, or other blocking work) for an event loop: in a thread."""
        return await asyncio.to_thread(fn, *args, **kwargs)

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
            found = conn.execute(callrows.FIND_CALL, {"backend": self.backend, "call_id": call_id}).first()
            return found is not None

    def step_of(self, call_id: str) -> int | None:
        """The call's step counter (`CallState.seq`); None for a call never seen or ended."""
        with self.db.transaction() as conn:
            found = conn.execute(callrows.FIND_CALL, {"backend": self.backend, "call_id": call_id}).first()
        if found is None or found.ended_at is not None:
            return None
        state = CallState.from_json(found.flow_state)
        return None if state.ended else state.seq

    def claim(self, call_id: str, seq: int) -> bool:
        """Take step `seq` for an input that came from outside its webhooks (a number said
        on a media stream): True if the call was still at that step, which then counts as
        moved on, so a webhook of that step (keys typed at the same moment) only asks again."""
        with translate_errors(), self.rows.transaction() as (_, rows):
            values = rows.find(self.backend, call_id)
            if values is None or values["ended_at"] is not None:
                return False
            state = CallState.from_json(values["flow_state"])
            if state.seq != seq or state.ended:
                return False
            state.seq += 1
            rows.update_call(values["id"], {"flow_state": state.to_json()})
            return True

    def release(self, call_id: str, seq: int, why: str, **data: object) -> None:
        """Give back step `seq` taken by `claim` (the input could not reach the call), with
        an event saying why; the keypad goes on. Nothing is given back if the call moved on."""
        with translate_errors(), self.rows.transaction() as (_, rows):
            values = rows.find(self.backend, call_id)
            if values is None:
                return
            state = CallState.from_json(values["flow_state"])
            if state.seq == seq + 1:
                state.seq = seq
                rows.update_call(values["id"], {"flow_state": state.to_json()})
            event = {"call_id": values["id"], "at": utcnow(), "kind": CallEventKind.SPEECH_NOT_PASSED}
            rows.insert_events([{**event, "detail": why, "data": data}])

    def has_recording(self, ref: str) -> bool:
        """True if the file of this recording is stored already."""
        with self.db.transaction() as conn:
            found = conn.execute(_FIND_ATTACHMENT, {"external_id": f"{self.backend}:{ref}"}).first()
            return found is not None

    def read_ahead(self, call_id: str, event: flow.Event) -> None:
        """`event` may be the call's next (the digits typed so far): a store that can read
        a status lookup ahead of its step does (ivr.livecalls); this one reads in the step."""

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
