"""The hotline's records: requests and their history, files, calls, engineers.

Typed SQLAlchemy 2.x models. The schema itself is made by the Alembic migrations in
`hotline/migrations`; a test checks that the two agree.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The closed sets of values live in one place, with their Russian labels.
# Re-exported (`as`) so that `from hotline.models import RequestStatus` keeps working.
from hotline.vocabulary import Channel as Channel
from hotline.vocabulary import RequestKind as RequestKind
from hotline.vocabulary import RequestStatus as RequestStatus


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {dt.datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class TranscriptionState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Role(enum.StrEnum):
    ENGINEER = "engineer"
    ADMIN = "admin"


class Counter(Base):
    """A named, monotonically increasing counter (request numbers come from one)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class User(Base):
    """An engineer or admin of the support team."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(254))
    extension: Mapped[str | None] = mapped_column(String(80))  # phone for call-backs
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default=Role.ENGINEER)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Failed logins are counted per (login, address) in hotline.users.throttle, never on
    # the account itself: strangers must not be able to lock an engineer out.
    last_login_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Request(Base):
    """A support request (заявка): the unit of accounting of the support contract."""

    __tablename__ = "requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    kind_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    suggested_kind: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=RequestStatus.NEW, index=True)
    channel: Mapped[str] = mapped_column(String(10), index=True)
    contact_phone: Mapped[str | None] = mapped_column(String(40), index=True)
    contact_email: Mapped[str | None] = mapped_column(String(254))
    contact_name: Mapped[str | None] = mapped_column(String(200))
    organisation: Mapped[str | None] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(300), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    # The engineer's open question to the customer while the request is awaiting_info:
    # shown on the dashboard, sent by e-mail/SMS, read to the caller on the status line.
    clarification_question: Mapped[str | None] = mapped_column(Text)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    status_changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    first_response_at: Mapped[dt.datetime | None]
    archived_at: Mapped[dt.datetime | None] = mapped_column(index=True)

    assignee: Mapped[User | None] = relationship()
    events: Mapped[list[RequestEvent]] = relationship(
        back_populates="request", order_by="RequestEvent.id", cascade="all, delete-orphan"
    )
    attachments: Mapped[list[Attachment]] = relationship(back_populates="request", order_by="Attachment.id")

    @property
    def archived(self) -> bool:
        return self.archived_at is not None


class RequestEvent(Base):
    """One line of a request's history: who did what, when, and why."""

    __tablename__ = "request_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    # created, status, note, clarification_requested, information_added, attachment,
    # transcript, transcript_corrected, assigned, kind, email_in, email_out, call
    action: Mapped[str] = mapped_column(String(40))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text, default="")

    request: Mapped[Request] = relationship(back_populates="events")

    __table_args__ = (Index("ix_request_events_request_at", "request_id", "at"),)


class Attachment(Base):
    """A file of a request in the data dir: a recording, screenshot, log or HTML packet."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id", ondelete="SET NULL"), index=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"), index=True)
    path: Mapped[str] = mapped_column(String(500))  # relative to the data dir
    filename: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(120))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(20))  # phone, email, web
    # The peer's id of the file (Twilio RecordingSid, Asterisk file name, e-mail part):
    # the same recording reported twice is stored once.
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Audio only.
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    transcription_state: Mapped[str | None] = mapped_column(String(20), index=True)
    transcription_error: Mapped[str | None] = mapped_column(Text)
    transcription_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Set when a worker takes the job; a 'running' job whose worker died is taken
    # again once this is old (the queue itself does not survive a SIGKILL mid-job).
    transcription_started_at: Mapped[dt.datetime | None]

    request: Mapped[Request | None] = relationship(back_populates="attachments")
    transcript: Mapped[Transcript | None] = relationship(back_populates="attachment", uselist=False)

    @property
    def is_audio(self) -> bool:
        return self.content_type.startswith("audio/")


class Transcript(Base):
    """What Vosk heard in a recording, and the engineer's correction of it."""

    __tablename__ = "transcripts"

    id: Mapped[int] = mapped_column(primary_key=True)
    attachment_id: Mapped[int] = mapped_column(ForeignKey("attachments.id", ondelete="CASCADE"), unique=True)
    text: Mapped[str] = mapped_column(Text, default="")
    normalized_text: Mapped[str] = mapped_column(Text, default="")
    # [{"word": str, "start": float, "end": float, "conf": float}, ...]
    words: Mapped[list[Any]] = mapped_column(default=list)
    mean_confidence: Mapped[float | None] = mapped_column(Float)
    model: Mapped[str] = mapped_column(String(120), default="")
    audio_seconds: Mapped[float | None] = mapped_column(Float)
    decode_seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    corrected_text: Mapped[str | None] = mapped_column(Text)
    corrected_by: Mapped[str | None] = mapped_column(String(80))
    corrected_at: Mapped[dt.datetime | None]
    # Where the text comes from: offline (the job decoded the file), live (decoded while
    # the caller spoke, stream complete), live_partial (the stream broke: the job replaces it).
    source: Mapped[str] = mapped_column(String(20), default="offline", server_default="offline")

    attachment: Mapped[Attachment] = relationship(back_populates="transcript")


class Call(Base):
    """One phone call to the hotline, whichever backend carried it."""

    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    backend: Mapped[str] = mapped_column(String(20), index=True)  # twilio, asterisk
    backend_call_id: Mapped[str] = mapped_column(String(120))  # CallSid or uniqueid
    from_number: Mapped[str | None] = mapped_column(String(40), index=True)
    to_number: Mapped[str | None] = mapped_column(String(40))
    caller_name: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    answered_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    # What the call achieved: status_heard, request_created, info_added, transferred,
    # abandoned, no_input, failed, ... (set by the flow); None while it goes on.
    outcome: Mapped[str | None] = mapped_column(String(40), index=True)
    backend_status: Mapped[str | None] = mapped_column(String(40))  # completed, busy, ...
    hangup_cause: Mapped[str | None] = mapped_column(String(80))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id", ondelete="SET NULL"), index=True)
    # The call flow's state between two webhooks (Twilio is stateless between them).
    flow_state: Mapped[dict[str, Any]] = mapped_column(default=dict)

    request: Mapped[Request | None] = relationship()
    events: Mapped[list[CallEvent]] = relationship(
        back_populates="call", order_by="CallEvent.id", cascade="all, delete-orphan"
    )

    __table_args__ = (UniqueConstraint("backend", "backend_call_id", name="uq_calls_backend_id"),)


class CallEvent(Base):
    """One step of a call: a menu choice, digits typed, a prompt, a transfer, a hangup."""

    __tablename__ = "call_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    call: Mapped[Call] = relationship(back_populates="events")

    __table_args__ = (
        Index("ix_call_events_call_id", "call_id", "id"),
        Index("ix_call_events_kind_at", "kind", "at"),
    )


class EmailMessage(Base):
    """A message in or out of the support mailbox, tied to its request."""

    __tablename__ = "email_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    direction: Mapped[str] = mapped_column(String(3))  # in, out
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id", ondelete="SET NULL"), index=True)
    from_addr: Mapped[str] = mapped_column(String(254), default="")
    to_addr: Mapped[str] = mapped_column(String(998), default="")
    subject: Mapped[str] = mapped_column(String(998), default="")
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Notification(Base):
    """A message owed to the customer about a history entry (the outbox of hotline.mail).

    One row per history entry, whatever the channel, sent by a background loop that
    claims it first (state 'sending'): a crash or a mail server that is down delays a
    notification but neither loses nor repeats it.
    """

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("request_events.id", ondelete="CASCADE"), unique=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # created, clarification, processed
    channel: Mapped[str] = mapped_column(String(10))  # email, sms, none
    recipient: Mapped[str] = mapped_column(String(254), default="")
    # pending → sending → sent; failed (refused for good); skipped (no way to reach them)
    state: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[dt.datetime | None]
    sent_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # E-mail: the Message-ID, fixed before the first try so a repeat is recognisably the same
    # message; SMS: Twilio's Message SID once sent.
    external_id: Mapped[str | None] = mapped_column(String(998))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LiveTranscript(Base):
    """A call's audio decoded while it streams in (AudioSocket, Twilio Media Streams).

    One row per stretch of audio that becomes a transcript (a voicemail being
    recorded): its partial text while the caller speaks (the dashboard's call page
    reads it), then the final words. `recording_ref` is the peer's id of the
    recording it belongs to (Attachment.external_id = backend:ref), so the stored
    recording takes this transcript at once instead of waiting for the offline job.
    """

    __tablename__ = "live_transcripts"

    id: Mapped[int] = mapped_column(primary_key=True)
    stream_key: Mapped[str] = mapped_column(String(200), unique=True)
    backend: Mapped[str] = mapped_column(String(20))
    backend_call_id: Mapped[str] = mapped_column(String(120), index=True)
    recording_ref: Mapped[str | None] = mapped_column(String(200), index=True)
    # open (audio coming), complete (the stream covered the whole recording), broken
    state: Mapped[str] = mapped_column(String(10), default="open")
    text: Mapped[str] = mapped_column(Text, default="")
    words: Mapped[list[Any]] = mapped_column(default=list)
    audio_seconds: Mapped[float | None] = mapped_column(Float)
    model: Mapped[str] = mapped_column(String(120), default="")
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[dt.datetime | None]


# --- auth sessions, login attempts, Russian search (migration 0004) ---


class UserSession(Base):
    """A logged-in browser: the cookie holds the token, the table its hash (logout deletes it)."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the token, hex
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class LoginAttempts(Base):
    """Failed logins counted under one key: a (login, address) pair, an address, a login."""

    __tablename__ = "login_attempts"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    login: Mapped[str | None] = mapped_column(String(200), index=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class RequestSearch(Base):
    """The searchable text of a request (subject, contact, transcripts, letters, notes).

    Kept in step by hotline.search on every commit. PostgreSQL searches it through a GIN
    index on to_tsvector('russian', body); SQLite through the FTS5 table request_search_fts
    holding the Snowball stems. Both indexes are made by migration 0004, not by the models.
    """

    __tablename__ = "request_search"

    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True)
    body: Mapped[str] = mapped_column(Text, default="")


class RecordingFetch(Base):
    """A recording the hotline was told about, until its file is stored (migration 0005).

    Written before the download starts, so a crash mid-download leaves a row that the
    sweep (ivr.twilio.recordings) finds and fetches again, with backoff; after the last
    try it is 'failed' and shown to the engineers.
    """

    __tablename__ = "recording_fetches"

    id: Mapped[int] = mapped_column(primary_key=True)
    backend: Mapped[str] = mapped_column(String(20))
    backend_call_id: Mapped[str] = mapped_column(String(120))
    # The peer's id of the recording (Twilio RecordingSid): one row per recording.
    recording_ref: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str] = mapped_column(Text)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    # pending → done; failed after the last try
    state: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    done_at: Mapped[dt.datetime | None]


class DeadLetter(Base):
    """An input that could not be taken in even after cleaning (migration 0005).

    Its raw bytes are kept in the data dir; it is tried a few times and then left for
    an engineer (the dashboard lists it), never retried for ever.
    """

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(20))  # email
    # The input's identity (sha256 of the raw message): one row per input.
    ref: Mapped[str] = mapped_column(String(200), unique=True)
    summary: Mapped[str] = mapped_column(String(300), default="")
    path: Mapped[str | None] = mapped_column(String(500))  # the raw input, relative to the data dir
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # retrying → dead (left for an engineer) or done (taken in on a later try)
    state: Mapped[str] = mapped_column(String(10), default="retrying", index=True)
    first_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
