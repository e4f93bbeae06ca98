"""Transcription of recordings into their requests: the job, and its recovery.

The database is the record of the work. A job claims its recording with one
conditional UPDATE (pending → running, or running whose lease ran out → running
again; attempts + 1, started_at = now), decodes without holding a transaction, then
writes the transcript only if the claim is still its own. So a job that runs twice
does the work once, and a job lost with a killed worker is found by
`stalled_recordings` and queued again (hotline.jobs runs it at worker start and every
minute).

When the transcript is ready the request gets: the text as its description if it had
none, a suggested kind from Russian keywords (the engineer confirms it), and a
history entry (actor "system", action "transcript") that names the existing requests
the caller mentioned. Those links are recomputed by `linked_requests` from the
transcript's normalized text, which is what the dashboard calls; each request
mentioned gets a history entry pointing back (`mention_back`), so that the engineer
working on it sees the follow-up.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from hotline import registry
from hotline.db import Database, DatabaseUnavailable, database_for
from hotline.errors import StorageError
from hotline.models import Attachment, Request, RequestKind, Transcript, TranscriptionState, utcnow
from hotline.numbers import find_request_numbers
from hotline.registry import suggest_kind
from hotline.settings import Settings
from hotline.storage import resolve
from hotline.transcription.audio import AudioError, pcm16_chunks
from hotline.transcription.recognizer import Recognizer, recognizer_for
from hotline.transcription.russian_numbers import normalize_numbers
from hotline.vocabulary import HistoryAction

log = logging.getLogger("hotline.transcription.pipeline")

T = TranscriptionState
#: A recording that took this many claims without finishing (a worker crashed on it
#: each time) is marked failed instead of crashing workers for ever.
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Claim:
    attachment_id: int
    started_at: dt.datetime
    attempts: int


def linked_requests(session: Session, transcript: Transcript) -> list[Request]:
    """Existing requests whose valid numbers the caller said, in the order said."""
    # An engineer's correction is the better reading (a misheard number fixed by hand).
    text = (
        normalize_numbers(transcript.corrected_text)
        if transcript.corrected_text
        else transcript.normalized_text
    )
    numbers = find_request_numbers(text or "")
    if not numbers:
        return []
    found = {r.number: r for r in session.scalars(select(Request).where(Request.number.in_(numbers)))}
    own = transcript.attachment.request_id if transcript.attachment else None
    return [found[n] for n in numbers if n in found and found[n].id != own]


def run_transcription_job(
    settings: Settings,
    attachment_id: int,
    *,
    db: Database | None = None,
    recognizer: Recognizer | None = None,
) -> str:
    """Transcribe one stored recording into its request; safe to run twice.

    Returns what happened: "done", "failed" or "skipped" (someone else has it, or it
    is finished already).
    """
    db = db or database_for(settings.database_url)
    claim = _claim(db, attachment_id, settings.transcription_lease_seconds)
    if claim is None:
        return "skipped"
    if claim.attempts > MAX_ATTEMPTS:
        _fail(db, claim, f"расшифровка прервалась {MAX_ATTEMPTS} раза подряд; запись не обработана")
        return "failed"
    with db.session() as session:
        relative = session.get_one(Attachment, attachment_id).path
    try:
        recognizer = recognizer or recognizer_for(settings)
        path = resolve(settings.data_dir, relative)
        started = time.perf_counter()
        result = recognizer.recognize(pcm16_chunks(path))
        decode_seconds = time.perf_counter() - started
    except (AudioError, StorageError) as exc:
        _fail(db, claim, str(exc))
        log.warning("recording %s not transcribed: %s", attachment_id, exc)
        return "failed"
    except BaseException:
        # Not the recording's fault (database, model, a bug): hand it back so that a
        # retry or the recovery sweep takes it again, and let the queue see the error.
        _release(db, claim)
        raise
    with db.session() as session:
        attachment = _own(session, claim)
        if attachment is None:
            log.info("recording %s: lease lost to another worker; result dropped", attachment_id)
            return "skipped"
        _store(session, attachment, result, recognizer.name, decode_seconds)
    log.info("recording %s transcribed: %d words", attachment_id, len(result.words))
    return "done"


def _claim(db: Database, attachment_id: int, lease_seconds: int) -> Claim | None:
    now = utcnow()
    expired = now - dt.timedelta(seconds=lease_seconds)
    with db.session() as session:
        row = session.execute(
            update(Attachment)
            .where(
                Attachment.id == attachment_id,
                or_(
                    Attachment.transcription_state == T.PENDING,
                    and_(
                        Attachment.transcription_state == T.RUNNING,
                        or_(
                            Attachment.transcription_started_at.is_(None),
                            Attachment.transcription_started_at <= expired,
                        ),
                    ),
                ),
            )
            .values(
                transcription_state=T.RUNNING,
                transcription_started_at=now,
                transcription_attempts=Attachment.transcription_attempts + 1,
            )
            .returning(Attachment.transcription_attempts)
            .execution_options(synchronize_session=False)
        ).one_or_none()
    return Claim(attachment_id, now, row[0]) if row else None


def _own(session: Session, claim: Claim) -> Attachment | None:
    """The attachment, locked, if this claim still holds it."""
    attachment = session.scalars(
        select(Attachment).where(Attachment.id == claim.attachment_id).with_for_update()
    ).one_or_none()
    if (
        attachment is None
        or attachment.transcription_state != T.RUNNING
        or attachment.transcription_started_at != claim.started_at
    ):
        return None
    return attachment


def _fail(db: Database, claim: Claim, reason: str) -> None:
    with db.session() as session:
        attachment = _own(session, claim)
        if attachment is None:
            return
        attachment.transcription_state = T.FAILED
        attachment.transcription_error = reason
        if attachment.request is not None:
            registry.record(
                session,
                attachment.request,
                actor="system",
                action="transcript",
                text=f"Запись {attachment.filename} не расшифрована: {reason}. Запись сохранена.",
            )


def _release(db: Database, claim: Claim) -> None:
    try:
        with db.session() as session:
            attachment = _own(session, claim)
            if attachment is not None:
                attachment.transcription_state = T.PENDING
                attachment.transcription_started_at = None
    except DatabaseUnavailable as exc:  # the lease covers it
        log.warning("recording %s: could not hand the job back: %s", claim.attachment_id, exc)
    except Exception:  # the database may be the reason we are here; the lease covers it
        log.exception("recording %s: could not hand the job back", claim.attachment_id)


def _store(
    session: Session,
    attachment: Attachment,
    result,
    model: str,
    decode_seconds: float | None,
    source: str = "offline",
) -> None:
    normalized = normalize_numbers(result.text)
    transcript = attachment.transcript or Transcript(attachment=attachment)
    transcript.source = source
    transcript.text = result.text
    transcript.normalized_text = normalized
    transcript.words = [
        {"word": w.word, "start": w.start, "end": w.end, "conf": w.conf} for w in result.words
    ]
    transcript.mean_confidence = result.mean_confidence
    transcript.model = model
    transcript.audio_seconds = result.audio_seconds
    transcript.decode_seconds = decode_seconds
    transcript.created_at = utcnow()
    session.add(transcript)
    attachment.transcription_state = T.DONE
    attachment.transcription_error = None
    request = attachment.request
    if request is None:
        return
    session.flush()
    if result.text and not request.description.strip():
        request.description = result.text
    registry.follow_transcript(request, normalized)
    kind = suggest_kind(normalized)
    if kind is not None:
        request.suggested_kind = kind
    request.updated_at = utcnow()
    links = linked_requests(session, transcript)
    text = _history_text(transcript, kind, links)
    registry.record(session, request, actor="system", action="transcript", text=text)
    mention_back(session, transcript, links)


_READY = {
    "offline": "Расшифровка готова",
    "live": "Расшифровка готова по ходу звонка",
    "live_partial": (
        "Предварительная расшифровка по ходу звонка (звук пришёл не весь, запись расшифровывается заново)"
    ),
}


def _history_text(transcript: Transcript, kind: RequestKind | None, links: list[Request]) -> str:
    ready = _READY.get(transcript.source, _READY["offline"])
    if not transcript.text:
        return f"{ready}: речь в записи не распознана."
    conf = f", средняя уверенность {transcript.mean_confidence:.2f}" if transcript.mean_confidence else ""
    lines = [f"{ready} (модель {transcript.model}{conf}): «{transcript.normalized_text}»"]
    if kind is not None:
        lines.append(f"Предлагаемый вид: {registry.KIND_LABELS[kind]} (требует подтверждения инженером)")
    if links:
        lines.append("Упомянуты заявки: " + ", ".join(r.number for r in links))
    return "\n".join(lines)


def mention_back(session: Session, transcript: Transcript, links: Collection[Request]) -> None:
    """A history entry on each request the recording names, pointing at the recording's
    request; once per pair, however often the recording is transcribed or corrected."""
    request = transcript.attachment.request if transcript.attachment else None
    if request is None:
        return
    text = f"упомянута в голосовом сообщении заявки {request.number}"
    for linked in links:
        if not any(e.action == HistoryAction.MENTIONED and e.text == text for e in linked.events):
            registry.record(session, linked, actor="system", action=HistoryAction.MENTIONED, text=text)


def stalled_recordings(session: Session, lease_seconds: int, queued: Collection[int] = ()) -> list[int]:
    """Recordings whose job is lost: pending and not queued, or running past the lease."""
    expired = utcnow() - dt.timedelta(seconds=lease_seconds)
    pending = session.scalars(
        select(Attachment.id).where(Attachment.transcription_state == T.PENDING).order_by(Attachment.id)
    ).all()
    running = session.scalars(
        select(Attachment.id)
        .where(
            Attachment.transcription_state == T.RUNNING,
            or_(
                Attachment.transcription_started_at.is_(None), Attachment.transcription_started_at <= expired
            ),
        )
        .order_by(Attachment.id)
    ).all()
    skip = set(queued)
    return [i for i in pending if i not in skip] + [i for i in running if i not in skip]
