"""The call flow against the database, shared by every telephony backend.

`DbCallPort` is the real `ivr.flow.CallPort`: requests through `hotline.registry`,
files through `hotline.storage`, lookups counted from the call log. `CallStore`
runs one event of a call in one transaction: it locks the call's row (webhooks of
one call may arrive together), runs the flow, writes the call log (events, outcome,
flow state, the end of the call) and, after the commit, queues the transcription of
the recordings it stored. Adapters (Twilio webhooks, FastAGI) only translate their
protocol into events and the returned actions into theirs.
"""

from __future__ import annotations

import datetime as dt
import logging
import mimetypes
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hotline import calllog, registry, storage
from hotline.db import Database
from hotline.jobs import enqueue_transcription
from hotline.models import Attachment, Call, CallEvent, Request, utcnow
from hotline.settings import Settings
from ivr import flow
from ivr.flow import CallState, Recording, RequestInfo

log = logging.getLogger(__name__)


class DbCallPort:
    """The data of one call, in one open session (the caller commits)."""

    def __init__(self, session: Session, settings: Settings, call: Call):
        self.session = session
        self.settings = settings
        self.call = call
        self.stored: list[int] = []  # attachment ids to transcribe after the commit

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
        )

    def recent_lookups(self) -> int:
        since = utcnow() - dt.timedelta(hours=1)
        query = select(func.count(CallEvent.id)).where(CallEvent.kind == "lookup", CallEvent.at >= since)
        if self.call.from_number:
            query = query.join(Call).where(Call.from_number == self.call.from_number)
        else:  # a withheld number: only this call's own lookups can be told apart
            query = query.where(CallEvent.call_id == self.call.id)
        return self.session.scalar(query) or 0

    def open_voice_request(self, kind: str, recording: Recording) -> str:
        request = registry.open_request(
            self.session,
            kind=kind,
            channel="phone",
            actor=self.actor,
            subject="Голосовое сообщение",
            phone=self.call.from_number,
            kind_confirmed=False,  # the caller's choice; an engineer confirms it
        )
        self.call.request_id = request.id
        self._store(request, recording)
        return request.number

    def add_information(self, number: str, recording: Recording) -> None:
        request = registry.get_request(self.session, number, for_update=True)
        registry.add_information(
            self.session, request, actor=self.actor, text="голосовое сообщение с недостающей информацией"
        )
        self.call.request_id = self.call.request_id or request.id
        self._store(request, recording)

    def attach_recording(self, number: str, recording: Recording) -> None:
        self._store(registry.get_request(self.session, number), recording)

    def duty_open(self) -> bool:
        return self.settings.business_hours.is_open(utcnow())

    def duty_target(self) -> str | None:
        return self.settings.duty_number

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
                filename=f"{request.number}-{Path(recording.ref).name}{path.suffix or '.wav'}",
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
            action="attachment",
            text=f"запись звонка{f', {seconds:.0f} с' if seconds else ''}",
        )
        self.stored.append(attachment.id)


class CallStore:
    """Runs the flow of one backend's calls against the database, one event per transaction."""

    def __init__(self, db: Database, settings: Settings, backend: str):
        self.db = db
        self.settings = settings
        self.backend = backend
        self.config = flow.FlowConfig.from_settings(settings)
        # SQLite has one writer at a time and makes the others sleep and poll
        # (busy_timeout), which turns contention into second-long stalls; queueing
        # this process's writers on a lock is much fairer and faster.
        self._writing: AbstractContextManager[object] = (
            threading.Lock() if db.engine.dialect.name == "sqlite" else nullcontext()
        )

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._writing, self.db.session() as session:
            yield session

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
        with self._session() as session:
            call = self._lock_call(session, call_id, from_number, to_number)
            state = CallState.from_json(call.flow_state)
            if seq is not None and seq != state.seq:
                calllog.log_event(session, call, "stale_webhook", f"{seq} != {state.seq}")
                return flow.Step(state, flow.reprompt(state, self.config))
            port = DbCallPort(session, self.settings, call)
            if isinstance(event, flow.CallStarted):
                call.answered_at = call.answered_at or utcnow()
            step = flow.handle(state, event, port, self.config)
            self._apply(session, call, step)
        self._after_commit(port)
        return step

    def save_recording(self, call_id: str, recording: Recording) -> flow.Step:
        """A recording's file arrived apart from the call (Twilio's status callback)."""
        with self._session() as session:
            call = self._lock_call(session, call_id, None, None)
            port = DbCallPort(session, self.settings, call)
            step = flow.save_recording(CallState.from_json(call.flow_state), recording, port)
            self._apply(session, call, step)
        self._after_commit(port)
        return step

    def has_recording(self, ref: str) -> bool:
        """True if the file of this recording is stored already."""
        with self._session() as session:
            external_id = f"{self.backend}:{ref}"
            return (
                session.scalar(select(Attachment.id).where(Attachment.external_id == external_id)) is not None
            )

    def log(self, call_id: str, kind: str, detail: str = "", **data: object) -> None:
        """A call-log event the flow does not know of (a refused download, say)."""
        with self._session() as session:
            call = self._lock_call(session, call_id, None, None)
            calllog.log_event(session, call, kind, detail, **data)

    def hang_up(
        self,
        call_id: str,
        *,
        backend_status: str | None = None,
        duration_seconds: int | None = None,
        hangup_cause: str | None = None,
        from_number: str | None = None,
        to_number: str | None = None,
    ) -> flow.Step:
        """The backend reports the end of the call: close its log entry."""
        with self._session() as session:
            call = self._lock_call(session, call_id, from_number, to_number)
            port = DbCallPort(session, self.settings, call)
            step = flow.handle(CallState.from_json(call.flow_state), flow.Hangup(), port, self.config)
            self._apply(session, call, step)
            calllog.end_call(
                session,
                call,
                backend_status=backend_status,
                duration_seconds=duration_seconds,
                hangup_cause=hangup_cause,
            )
        return step

    def _lock_call(
        self, session: Session, call_id: str, from_number: str | None, to_number: str | None
    ) -> Call:
        # The row lock serialises the webhooks of one call on PostgreSQL (SQLite
        # serialises every writer anyway), so a retried callback sees the first one's work.
        call = session.scalars(
            select(Call)
            .where(Call.backend == self.backend, Call.backend_call_id == call_id)
            .with_for_update()
        ).one_or_none()
        if call is None or (from_number and not call.from_number):
            call = calllog.start_call(
                session,
                backend=self.backend,
                backend_call_id=call_id,
                from_number=from_number,
                to_number=to_number,
            )
        return call

    def _apply(self, session: Session, call: Call, step: flow.Step) -> None:
        for entry in step.log:
            calllog.log_event(session, call, entry.kind, entry.detail, **entry.data)
        call.flow_state = step.state.to_json()
        if step.state.outcome:
            call.outcome = step.state.outcome
        if step.state.step == flow.StepName.ENDED and call.ended_at is None:
            calllog.end_call(session, call)

    def _after_commit(self, port: DbCallPort) -> None:
        for attachment_id in port.stored:
            try:
                enqueue_transcription(self.settings, attachment_id)
            except Exception:  # noqa: BLE001 - the row stays 'pending' and is found again
                log.exception("could not queue the transcription of attachment %s", attachment_id)
