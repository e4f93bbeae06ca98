"""Engineers' corrections of transcripts: the original stays, the correction is kept beside it.

Keeping both lets the team measure the recogniser's accuracy (word error rate of
`text` against `corrected_text`) on their own callers' speech.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from hotline import registry
from hotline.errors import UserError
from hotline.models import Transcript, utcnow
from hotline.transcription.pipeline import linked_requests, mention_back


def correct_transcript(session: Session, transcript: Transcript, text: str, *, login: str) -> None:
    """Store an engineer's corrected text of a transcript and note it in the request's history."""
    text = text.strip()
    if not text:
        raise UserError("исправленный текст пуст")
    if text == (transcript.corrected_text or transcript.text).strip():
        return
    previous = (transcript.corrected_text or transcript.text).strip()
    transcript.corrected_text = text
    transcript.corrected_by = login
    transcript.corrected_at = utcnow()
    request = transcript.attachment.request
    if request is not None:
        # A voicemail's description is its transcript: follow the correction, unless an
        # engineer has written the description themselves.
        if request.description.strip() == previous:
            request.description = text
        registry.follow_transcript(
            request, text, previous=(previous, transcript.text, transcript.normalized_text)
        )
        registry.record(
            session,
            request,
            actor=f"engineer:{login}",
            action="transcript_corrected",
            text=f"исправлена расшифровка записи {transcript.attachment.filename}",
        )
        # A number heard wrong and corrected now points at the request it names.
        mention_back(session, transcript, linked_requests(session, transcript))
