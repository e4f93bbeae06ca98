"""The background job queue (huey): embedded SQLite by default, Redis to scale out.

Jobs carry ids, never objects; each opens its own database session and is safe to
run twice. The database, not the queue, is the record of what is left to do: a
recording is committed with transcription_state='pending' before its job is queued.
Huey removes a message before running it, so a worker killed mid-job loses it; the
recovery sweep (at worker start, then every minute) queues again every recording
that is pending with no message in the queue, or running past its lease
(hotline.transcription.pipeline). A worker stopped by SIGTERM (or `hotline serve`
stopping) hands its running jobs back at once (`release_running`): the next worker
takes them without waiting for the lease. A job that finds the database down is dropped the same way
(one log line) and so is taken again by the first sweep after the database is back.

`run_worker` is `hotline worker`; `make_service` is the worker inside `hotline serve`
(entry point group `hotline.services`).
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
from functools import cache
from typing import Any

from huey import Huey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer
from sqlalchemy import update

from hotline.db import Database, DatabaseUnavailable
from hotline.models import Attachment, TranscriptionState
from hotline.settings import Settings

log = logging.getLogger("hotline.jobs")
#: An idle worker polls the embedded queue at most this far apart (huey's default, 10 s,
#: would add up to 10 s between a recording's arrival and its transcript).
MAX_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Queue:
    huey: Huey
    transcribe: Any  # huey TaskWrapper: transcribe(attachment_id)
    recover: Any  # huey periodic TaskWrapper


@cache
def queue_for(settings: Settings) -> Queue:
    """The queue of these settings, made once per process."""
    name = settings.queue_name
    if settings.queue_url:
        huey: Huey = RedisHuey(name, url=settings.queue_url, results=False)
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        huey = SqliteHuey(name, filename=str(settings.data_dir / "queue.sqlite3"), results=False)

    @huey.task(name="transcribe", retries=2, retry_delay=10)
    def transcribe(attachment_id: int) -> None:
        from hotline.transcription.pipeline import run_transcription_job

        _running.add(attachment_id)
        try:
            run_transcription_job(settings, attachment_id)
        except DatabaseUnavailable as exc:
            # The row still says pending (or running until its lease ends): the
            # recovery sweep queues it again once the database answers.
            log.warning("recording %s not transcribed now: %s", attachment_id, exc)
        finally:
            _running.discard(attachment_id)

    @huey.periodic_task(crontab(minute="*"), name="recover_transcriptions")
    def recover() -> None:
        try:
            recover_transcriptions(settings)
        except DatabaseUnavailable as exc:
            log.warning("transcription recovery sweep postponed: %s", exc)

    return Queue(huey=huey, transcribe=transcribe, recover=recover)


# Recordings whose job runs in this process now: handed back at once when it stops
# (systemd's SIGTERM), instead of waiting out the lease.
_running: set[int] = set()


def release_running(settings: Settings, db: Database | None = None) -> list[int]:
    """Hand back the jobs this process is running (at shutdown); their ids."""
    from hotline.transcription.pipeline import database_for

    ids = sorted(_running)
    if not ids:
        return []
    db = db or database_for(settings.database_url)
    try:
        with db.session() as session:
            session.execute(
                update(Attachment)
                .where(Attachment.id.in_(ids), Attachment.transcription_state == TranscriptionState.RUNNING)
                .values(transcription_state=TranscriptionState.PENDING, transcription_started_at=None)
            )
    except DatabaseUnavailable as exc:  # the lease covers them
        log.warning("could not hand back transcription jobs %s: %s", ids, exc)
        return []
    log.info("handed back transcription jobs %s at shutdown", ids)
    return ids


def enqueue_transcription(settings: Settings, attachment_id: int) -> None:
    """Queue the transcription of a stored recording (call after its commit)."""
    queue_for(settings).transcribe(attachment_id)


def queued_attachment_ids(queue: Queue) -> set[int]:
    """Recordings that have a message waiting in the queue (now or for a retry)."""
    ids: set[int] = set()
    for task in [*queue.huey.pending(), *queue.huey.scheduled()]:
        if task.name == "transcribe" and task.args:
            ids.add(int(task.args[0]))
    return ids


def recover_transcriptions(settings: Settings, db: Database | None = None) -> list[int]:
    """Queue again every recording whose job was lost; returns their ids."""
    from hotline.transcription.pipeline import database_for, stalled_recordings

    queue = queue_for(settings)
    db = db or database_for(settings.database_url)
    with db.session() as session:
        ids = stalled_recordings(session, settings.transcription_lease_seconds, queued_attachment_ids(queue))
    for attachment_id in ids:
        queue.transcribe(attachment_id)
    if ids:
        log.info("re-queued transcriptions of recordings %s", ids)
    return ids


class _QuietConsumer(Consumer):
    """A huey consumer that leaves signals alone, to run inside another program."""

    def _set_signal_handlers(self) -> None:
        pass


def run_worker(settings: Settings, workers: int = 1) -> None:
    """Run transcription workers in this process until SIGINT/SIGTERM (`hotline worker`)."""
    from hotline.transcription.recognizer import recognizer_for

    recognizer_for(settings)  # load the model once, before any job, and fail fast
    recover_transcriptions(settings)
    consumer = queue_for(settings).huey.create_consumer(
        workers=workers, worker_type="thread", periodic=True, max_delay=MAX_POLL_SECONDS
    )
    try:
        consumer.run()  # returns on SIGTERM (stop now) or SIGINT (after the running jobs)
    finally:
        release_running(settings)


class EmbeddedWorker:
    """The transcription worker of `hotline serve`: huey consumer threads in-process."""

    name = "transcription worker"

    def __init__(self, settings: Settings, db: Database, workers: int):
        self.settings, self.db, self.workers = settings, db, workers
        self._consumer: _QuietConsumer | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # Loading a model takes seconds: do it off the caller's thread.
        self._thread = threading.Thread(target=self._run, name="transcription-start", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from hotline.transcription.recognizer import ModelMissing, recognizer_for

        try:
            recognizer_for(self.settings)
        except ModelMissing as exc:
            # One write: print() writes the line and its end apart, and the services that
            # start meanwhile cut in between on the operator's console.
            sys.stderr.write(f"hotline: transcription disabled: {exc}\n")
            return
        if self._stopped.is_set():
            return
        try:
            recover_transcriptions(self.settings, self.db)
        except DatabaseUnavailable as exc:  # the periodic sweep does it later
            log.warning("transcription recovery sweep postponed: %s", exc)
        consumer = _QuietConsumer(
            queue_for(self.settings).huey,
            workers=self.workers,
            worker_type="thread",
            periodic=True,
            max_delay=MAX_POLL_SECONDS,
        )
        consumer.start()
        self._consumer = consumer
        if self._stopped.is_set():
            consumer.stop(graceful=False)

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._consumer is not None:
            self._consumer.shutdown_timeout = 10
            self._consumer.stop(graceful=True)
        release_running(self.settings, self.db)


def make_service(settings: Settings, db: Database) -> EmbeddedWorker | None:
    """`hotline serve`'s transcription worker; None with HOTLINE_TRANSCRIPTION_WORKERS=0."""
    if settings.transcription_workers == 0:
        return None
    return EmbeddedWorker(settings, db, settings.transcription_workers)


def huey_for(settings: Settings, name: str) -> Huey:
    """A queue named `name` on the configured storage (another area's queue, e.g. call-backs)."""
    if settings.queue_url:
        return RedisHuey(name, url=settings.queue_url, results=False)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(name, filename=str(settings.data_dir / "queue.sqlite3"), results=False)


def start_consumer(huey: Huey, workers: int) -> Consumer:
    """Consumer threads for `huey` inside this process (signals left to the program), started."""
    consumer = _QuietConsumer(
        huey, workers=workers, worker_type="thread", periodic=False, max_delay=MAX_POLL_SECONDS
    )
    consumer.start()
    return consumer
