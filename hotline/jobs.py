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

A Redis queue that cannot be reached is one line, not a traceback: `hotline worker`
exits with status 3 (`QueueUnavailable`, as when the database is down); `hotline serve`
says so at start, keeps answering calls (recordings wait as pending and are queued by
the sweep once Redis answers) and `/healthz` reports it (`QueueWatch`, hotline.health).
A Redis that answers but refuses us (a wrong password or user, an ACL, a database
index it does not have) is `QueueMisconfigured`: `hotline worker` exits with status 78,
which systemd does not restart; `serve` says it the same way and goes on.

`run_worker` is `hotline worker`; `make_service` is the worker inside `hotline serve`
(entry point group `hotline.services`).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import redis
from huey import Huey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer
from sqlalchemy import update
from sqlalchemy.engine import make_url

from hotline import health
from hotline.db import Database, DatabaseUnavailable
from hotline.errors import EX_CONFIG, Unavailable
from hotline.models import Attachment, TranscriptionState
from hotline.settings import Settings

log = logging.getLogger("hotline.jobs")
#: An idle worker polls the embedded queue at most this far apart (huey's default, 10 s,
#: would add up to 10 s between a recording's arrival and its transcript).
MAX_POLL_SECONDS = 1.0
#: Seconds to wait for Redis to take a connection before the queue counts as unreachable.
CONNECT_SECONDS = 5.0
#: How often `hotline serve` checks that the Redis queue answers (for /healthz).
WATCH_SECONDS = 10.0
#: The `/healthz` problem (hotline.health) of a Redis queue that does not answer.
QUEUE_CHECK = "queue_unreachable"
#: What a Redis queue that cannot be reached raises.
QUEUE_ERRORS = (redis.ConnectionError, redis.TimeoutError)


class QueueUnavailable(Unavailable):
    """The Redis queue cannot be reached (down, restarting, wrong host): exit status 3,
    like a database that is down: systemd starts the worker again."""


class QueueMisconfigured(QueueUnavailable):
    """Redis answers but refuses us for good (wrong password or user, an ACL, no such
    database index): a person must fix HOTLINE_QUEUE_URL or the server. Still a
    QueueUnavailable, so a running `serve` reports it as when Redis is down."""

    exit_status = EX_CONFIG  # 78: systemd does not restart it (RestartPreventExitStatus)


#: What Redis says at connection time when it refuses us for good. AuthenticationError
#: and AuthorizationError are ConnectionErrors in redis-py, so they are told apart first;
#: ResponseError is e.g. "DB index is out of range" or an ACL's NOPERM.
QUEUE_REFUSALS = (redis.AuthenticationError, redis.exceptions.AuthorizationError, redis.ResponseError)


def _redis_huey(settings: Settings, name: str) -> Huey:
    assert settings.queue_url
    pool = redis.ConnectionPool.from_url(settings.queue_url, socket_connect_timeout=CONNECT_SECONDS)
    return RedisHuey(name, connection_pool=pool, results=False)


def queue_location(settings: Settings) -> str:
    """The queue's URL without its password, or the embedded queue's file."""
    if not settings.queue_url:
        return f"embedded ({settings.data_dir / 'queue.sqlite3'})"
    return make_url(settings.queue_url).render_as_string(hide_password=True)  # as `hotline db` shows its URL


def queue_problem(settings: Settings) -> QueueUnavailable | None:
    """None if the queue answers; else why not, in one line: QueueMisconfigured if Redis
    refuses us, QueueUnavailable if it cannot be reached (Redis only: the embedded queue
    is a file in the data dir)."""
    if not settings.queue_url:
        return None
    client = redis.Redis.from_url(
        settings.queue_url, socket_connect_timeout=CONNECT_SECONDS, socket_timeout=CONNECT_SECONDS
    )
    try:
        client.ping()
    except QUEUE_REFUSALS as exc:
        return QueueMisconfigured(
            f"queue refused the connection: {queue_location(settings)}: {_first_line(exc)}; "
            "fix the password, user or database number in HOTLINE_QUEUE_URL, or the server's ACL"
        )
    except redis.RedisError as exc:
        return QueueUnavailable(f"queue unavailable: {queue_location(settings)}: {_first_line(exc)}")
    finally:
        client.close()
    return None


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
        huey: Huey = _redis_huey(settings, name)
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
        except (DatabaseUnavailable, *QUEUE_ERRORS) as exc:
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
    """Queue the transcription of a stored recording (call after its commit).

    A Redis queue that does not answer is one log line: the recording stays pending and
    the recovery sweep queues it once Redis is back."""
    try:
        queue_for(settings).transcribe(attachment_id)
    except QUEUE_ERRORS as exc:
        log.warning(
            "recording %s waits for transcription: queue unavailable: %s", attachment_id, _first_line(exc)
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


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


class _QueueErrorsInOneLine(logging.Filter):
    """huey's consumer logs a traceback each time it cannot reach Redis (every second or
    so while it is down): one line instead, at most once a minute."""

    def __init__(self) -> None:
        super().__init__()
        self._last = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, QUEUE_ERRORS):
            return True
        now = time.monotonic()
        if now - self._last < 60:
            return False
        self._last = now
        record.msg, record.args, record.exc_info, record.exc_text = (
            f"{record.getMessage()} queue unavailable: {_first_line(exc)}",
            (),
            None,
            None,
        )
        return True


_queue_errors_filter = _QueueErrorsInOneLine()


def _quiet_queue_errors() -> None:
    """Install the filter on huey's loggers (a logger's filter does not reach its children)."""
    for name in ("huey", "huey.consumer", "huey.consumer.Worker", "huey.consumer.Scheduler"):
        logger = logging.getLogger(name)
        if _queue_errors_filter not in logger.filters:
            logger.addFilter(_queue_errors_filter)


class _QuietConsumer(Consumer):
    """A huey consumer that leaves signals alone, to run inside another program."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _quiet_queue_errors()
        super().__init__(*args, **kwargs)

    def _set_signal_handlers(self) -> None:
        pass


def run_worker(settings: Settings, workers: int = 1) -> None:
    """Run transcription workers in this process until SIGINT/SIGTERM (`hotline worker`)."""
    from hotline.transcription.recognizer import ModelMissing, recognizer_for

    if problem := queue_problem(settings):
        raise problem
    if missing := _model_missing(settings):
        raise ModelMissing(missing)
    recognizer_for(settings)  # load the model once, before any job, and fail fast
    recover_transcriptions(settings)
    _quiet_queue_errors()
    consumer = queue_for(settings).huey.create_consumer(
        workers=workers, worker_type="thread", periodic=True, max_delay=MAX_POLL_SECONDS
    )
    try:
        consumer.run()  # returns on SIGTERM (stop now) or SIGINT (after the running jobs)
    finally:
        release_running(settings)


class QueueWatch:
    """Checks every WATCH_SECONDS that the Redis queue answers; `/healthz` reports it
    while it does not (a `hotline serve` service, started with the transcription one)."""

    name = "queue watch"
    started_line = ""  # `serve` prints nothing for it: a problem is its own line

    def __init__(self, settings: Settings):
        self.settings = settings
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="queue-watch", daemon=True)
        self._down = False

    def check(self, *, quiet: bool = False) -> str | None:
        """Check once, report or clear the health problem; the problem's line, if any."""
        error = queue_problem(self.settings)
        problem = None if error is None else str(error)
        if problem and not self._down:
            if not quiet:
                log.warning("transcription %s", problem)
            health.report(
                self.settings.data_dir,
                QUEUE_CHECK,
                f"очередь расшифровки (Redis) недоступна / transcription {problem}",
            )
        elif not problem and self._down:
            log.warning("transcription queue answers again: %s", queue_location(self.settings))
            health.clear(self.settings.data_dir, QUEUE_CHECK)
        self._down = problem is not None
        return problem

    def start(self) -> None:
        health.clear(self.settings.data_dir, QUEUE_CHECK)  # an earlier run's word
        if problem := self.check(quiet=True):
            sys.stderr.write(
                f"hotline: warning: transcription {problem}; calls and the dashboard work, "
                "recordings wait as pending until it answers\n"
            )
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_SECONDS):
            self.check()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=CONNECT_SECONDS * 2 + 1)
        health.clear(self.settings.data_dir, QUEUE_CHECK)


class EmbeddedWorker:
    """The transcription worker of `hotline serve`: huey consumer threads in-process."""

    name = "transcription worker"

    def __init__(self, settings: Settings, db: Database, workers: int):
        self.settings, self.db, self.workers = settings, db, workers
        self._consumer: _QuietConsumer | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch = QueueWatch(settings) if settings.queue_url else None
        self.started_line: str | None = None  # `serve` prints "<name> started"

    def start(self) -> None:
        if self._watch is not None:
            self._watch.start()
        # A missing model is told at once, in the one line `serve` prints for this service
        # (one that is there but does not load is told by the thread below).
        if missing := _model_missing(self.settings):
            self.started_line = f"transcription disabled: {missing}"
            return
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
        # A Redis queue that does not answer: wait for it (QueueWatch has said so) rather
        # than have huey's loops log a traceback a second.
        while queue_problem(self.settings) is not None:
            if self._stopped.wait(WATCH_SECONDS):
                return
        if self._stopped.is_set():
            return
        try:
            recover_transcriptions(self.settings, self.db)
        except (DatabaseUnavailable, *QUEUE_ERRORS) as exc:  # the periodic sweep does it later
            log.warning("transcription recovery sweep postponed: %s", _first_line(exc))
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
        if self._watch is not None:
            self._watch.stop()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._consumer is not None:
            self._consumer.shutdown_timeout = 10
            self._consumer.stop(graceful=True)
        release_running(self.settings, self.db)


#: What a Vosk model folder holds (the layout of the official models, e.g. the small
#: Russian one): the acoustic model, its features' config, and a decoding graph.
MODEL_FILES = ("am/final.mdl", "conf/mfcc.conf")
MODEL_GRAPHS = (("graph/HCLG.fst",), ("graph/HCLr.fst", "graph/Gr.fst"))


def model_folder_problem(path: Path) -> str | None:
    """Why `path` is not a Vosk model folder, at a glance (nothing loaded); None if it is one."""
    from hotline.transcription.recognizer import model_hint

    if not path.exists():
        return model_hint(path)
    if not path.is_dir():
        return f"HOTLINE_VOSK_MODEL {path} is not a folder: give the folder of a Vosk model"
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if not any(all((path / f).is_file() for f in graph) for graph in MODEL_GRAPHS):
        missing.append(" or ".join("+".join(graph) for graph in MODEL_GRAPHS))
    if not missing:
        return None
    name = path.name if path.name.startswith("vosk-model") else "NAME"
    return (
        f"{path} is not a valid Vosk model folder: {', '.join(missing)} missing (an unfinished copy?); "
        f"fetch it again with `hotline models fetch {name} --force` or copy the whole model folder"
    )


def _model_missing(settings: Settings) -> str | None:
    """Why the configured model cannot be used, at a glance; None if it may be (or no model is needed)."""
    from hotline.transcription import recognizer

    # A recognizer put in place for this process (tests, demos) needs no model folder.
    if settings.asr_engine != "vosk" or getattr(recognizer, "_override", None) is not None:
        return None
    return model_folder_problem(settings.vosk_model)


def make_service(settings: Settings, db: Database) -> EmbeddedWorker | QueueWatch | None:
    """`hotline serve`'s transcription worker; with HOTLINE_TRANSCRIPTION_WORKERS=0 only
    the watch of a Redis queue (this process still queues recordings), or nothing."""
    if settings.transcription_workers == 0:
        return QueueWatch(settings) if settings.queue_url else None
    return EmbeddedWorker(settings, db, settings.transcription_workers)


def huey_for(settings: Settings, name: str) -> Huey:
    """A queue named `name` on the configured storage (another area's queue, e.g. call-backs)."""
    if settings.queue_url:
        return _redis_huey(settings, name)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(name, filename=str(settings.data_dir / "queue.sqlite3"), results=False)


def start_consumer(huey: Huey, workers: int) -> Consumer:
    """Consumer threads for `huey` inside this process (signals left to the program), started."""
    consumer = _QuietConsumer(
        huey, workers=workers, worker_type="thread", periodic=False, max_delay=MAX_POLL_SECONDS
    )
    consumer.start()
    return consumer
