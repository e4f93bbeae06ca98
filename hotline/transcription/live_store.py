"""Live transcripts in the database: the partial text while a call goes on, the final words after.

A voicemail decoded live (hotline.transcription.live) is kept in a `LiveTranscript`
row keyed by its stream; `recording_ref` ties it to the recording (Attachment
.external_id is `backend:ref`). Whichever comes second, the end of the stream or the
stored recording, puts the live text on the recording (`apply_live`):

- a complete stream gives the transcript (source `live`) and the recording is done:
  the offline job finds nothing to do;
- a broken stream gives a provisional transcript (source `live_partial`) and the
  recording stays pending: the offline job decodes the file and replaces it;
- an offline transcript already there is kept (it read the whole file).

The rows live in the database, not in memory, because the stream and the call's
webhooks may reach different processes (gunicorn workers, FastAGI hosts).
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hotline.db import Database
from hotline.models import Attachment, LiveTranscript, TranscriptionState, utcnow
from hotline.transcription.recognizer import Recognition

log = logging.getLogger(__name__)

OPEN, COMPLETE, BROKEN = "open", "complete", "broken"
PARTIAL_MAX = 20_000  # characters of partial text kept for the dashboard


def open_live(
    db: Database,
    *,
    stream_key: str,
    backend: str,
    call_id: str,
    recording_ref: str | None = None,
    model: str = "",
) -> None:
    """Note a live stream that is starting (once per key: a repeated start is ignored)."""
    with db.session() as session:
        if session.scalar(select(LiveTranscript.id).where(LiveTranscript.stream_key == stream_key)):
            return
        session.add(
            LiveTranscript(
                stream_key=stream_key,
                backend=backend,
                backend_call_id=call_id,
                recording_ref=recording_ref,
                model=model,
            )
        )


def update_partial(db: Database, stream_key: str, text: str) -> None:
    """The text heard so far, for the dashboard's call page."""
    with db.session() as session:
        session.execute(
            update(LiveTranscript)
            .where(LiveTranscript.stream_key == stream_key, LiveTranscript.state == OPEN)
            .values(text=text[-PARTIAL_MAX:], updated_at=utcnow())
        )


def set_recording_ref(db: Database, backend: str, call_id: str, ref: str) -> None:
    """Tie the call's latest live stream without a recording to it (Twilio learns the ref late)."""
    with db.session() as session:
        row = session.scalars(
            select(LiveTranscript)
            .where(
                LiveTranscript.backend == backend,
                LiveTranscript.backend_call_id == call_id,
                LiveTranscript.recording_ref.is_(None),
            )
            .order_by(LiveTranscript.id.desc())
            .limit(1)
        ).first()
        if row is not None:
            row.recording_ref = ref
    _apply_to_recording(db, backend, ref)


def finish_live(db: Database, stream_key: str, recognition: Recognition, *, complete: bool) -> None:
    """The stream ended: keep its words and give them to its recording if it is stored already."""
    with db.session() as session:
        row = session.scalars(select(LiveTranscript).where(LiveTranscript.stream_key == stream_key)).first()
        if row is None or row.state != OPEN:
            return
        row.state = COMPLETE if complete else BROKEN
        row.text = recognition.text
        row.words = [
            {"word": w.word, "start": w.start, "end": w.end, "conf": w.conf} for w in recognition.words
        ]
        row.audio_seconds = recognition.audio_seconds
        row.updated_at = row.ended_at = utcnow()
        backend, ref = row.backend, row.recording_ref
    if ref:
        _apply_to_recording(db, backend, ref)


def _apply_to_recording(db: Database, backend: str, ref: str) -> None:
    with db.session() as session:
        attachment_id = session.scalar(
            select(Attachment.id).where(Attachment.external_id == f"{backend}:{ref}")
        )
    if attachment_id is not None:
        apply_live(db, attachment_id)


def apply_live(db: Database, attachment_id: int) -> str | None:
    """Give a stored recording its live transcript; the source stored ('live', 'live_partial') or None."""
    from hotline.transcription.pipeline import _store

    with db.session() as session:
        attachment = session.scalars(
            select(Attachment).where(Attachment.id == attachment_id).with_for_update()
        ).one_or_none()
        if attachment is None or not attachment.external_id or ":" not in attachment.external_id:
            return None
        backend, ref = attachment.external_id.split(":", 1)
        row = _finished_row(session, backend, ref)
        if row is None:
            return None
        current = attachment.transcript.source if attachment.transcript else None
        if current == "offline" or current == "live" or (current == "live_partial" and row.state == BROKEN):
            return None  # the better one is there already
        source = "live" if row.state == COMPLETE else "live_partial"
        state = attachment.transcription_state
        _store(session, attachment, _recognition(row), row.model or "live", None, source=source)
        if source == "live_partial":
            attachment.transcription_state = state  # still pending: the offline job reads the file
        else:
            attachment.transcription_error = None
            attachment.transcription_state = TranscriptionState.DONE
        log.info("recording %s: live transcript (%s) stored", attachment_id, source)
        return source


def _finished_row(session: Session, backend: str, ref: str) -> LiveTranscript | None:
    return session.scalars(
        select(LiveTranscript)
        .where(
            LiveTranscript.backend == backend,
            LiveTranscript.recording_ref == ref,
            LiveTranscript.state.in_((COMPLETE, BROKEN)),
        )
        .order_by(LiveTranscript.id.desc())
        .limit(1)
    ).first()


def _recognition(row: LiveTranscript) -> Recognition:
    from hotline.transcription.recognizer import Word

    words = [
        Word(str(w["word"]), float(w["start"]), float(w["end"]), float(w.get("conf", 1.0))) for w in row.words
    ]
    return Recognition(text=row.text, words=words, audio_seconds=row.audio_seconds or 0.0)


def call_live_text(session: Session, backend: str, call_id: str) -> list[LiveTranscript]:
    """The live transcripts of a call, oldest first (the dashboard's call page)."""
    return list(
        session.scalars(
            select(LiveTranscript)
            .where(LiveTranscript.backend == backend, LiveTranscript.backend_call_id == call_id)
            .order_by(LiveTranscript.id)
        )
    )
