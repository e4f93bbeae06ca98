"""The background job queue (huey): embedded SQLite by default, Redis to scale out.

Jobs carry ids, never objects; each opens its own database session and is safe to
run twice. The database, not the queue, is the record of what is left to do: a
recording is committed with transcription_state='pending' before its job is queued,
so a job lost with a killed worker is found again and queued again
(hotline.transcription).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from huey import Huey, RedisHuey, SqliteHuey

from hotline.settings import Settings


@dataclass(frozen=True)
class Queue:
    huey: Huey
    transcribe: Any  # huey TaskWrapper: transcribe(attachment_id)


@cache
def queue_for(settings: Settings) -> Queue:
    """The queue of these settings, made once per process."""
    if settings.queue_url:
        huey: Huey = RedisHuey("hotline", url=settings.queue_url, results=False)
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        huey = SqliteHuey("hotline", filename=str(settings.data_dir / "queue.sqlite3"), results=False)

    @huey.task(name="transcribe", retries=2, retry_delay=10)
    def transcribe(attachment_id: int) -> None:
        from hotline.transcription import run_transcription_job

        run_transcription_job(settings, attachment_id)

    return Queue(huey=huey, transcribe=transcribe)


def enqueue_transcription(settings: Settings, attachment_id: int) -> None:
    """Queue the transcription of a stored recording (call after its commit)."""
    queue_for(settings).transcribe(attachment_id)
