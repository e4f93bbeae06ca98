"""The transcription worker while the database is down (real PostgreSQL via a proxy)."""

from __future__ import annotations

import threading
import time

import pytest
from huey.signals import SIGNAL_COMPLETE, SIGNAL_ERROR

from hotline.db import Database, DatabaseUnavailable
from hotline.jobs import EmbeddedWorker, enqueue_transcription, queue_for, recover_transcriptions
from hotline.models import Attachment
from hotline.settings import Settings
from tests.hotline.transcription.conftest import add_recording, tone, write_wav

pytestmark = pytest.mark.postgres


@pytest.fixture
def db(proxied_db: Database) -> Database:
    return proxied_db  # and so `make_settings` and `settings` use it too


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings(HOTLINE_ASR="fake")


class Finished:
    """Counts the transcribe jobs the consumer finished (well or not)."""

    def __init__(self, settings: Settings):
        self.events: list[str] = []
        self.changed = threading.Condition()
        queue_for(settings).huey.signal(SIGNAL_COMPLETE, SIGNAL_ERROR)(self._seen)

    def _seen(self, signal: str, task: object, *args: object) -> None:
        if getattr(task, "name", "") == "transcribe":
            with self.changed:
                self.events.append(signal)
                self.changed.notify_all()

    def wait(self, count: int, timeout: float = 15) -> list[str]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.events) >= count, timeout), self.events
            return list(self.events)


def state(db: Database, attachment_id: int) -> str:
    with db.session() as session:
        return session.get_one(Attachment, attachment_id).transcription_state


def test_a_job_that_finds_the_database_down_is_recovered_and_the_worker_lives(
    pg_via_proxy, settings: Settings, db: Database, tmp_path, caplog
) -> None:
    wav = write_wav(tmp_path / "speech.wav", tone(1.5, 8000), 8000)
    finished = Finished(settings)
    worker = EmbeddedWorker(settings, db, 1)
    worker.start()
    try:
        deadline = time.monotonic() + 15
        while worker._consumer is None:
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.05)
        # Stored after the worker's start sweep, so that only our message carries it.
        _, attachment_id = add_recording(settings, db, wav)
        pg_via_proxy.cut()
        enqueue_transcription(settings, attachment_id)
        assert finished.wait(1) == [SIGNAL_COMPLETE]  # handled: no huey retry storm, no traceback
        with pytest.raises(DatabaseUnavailable):
            recover_transcriptions(settings, db)
        queue_for(settings).recover.call_local()  # the periodic sweep: one log line, no error
        assert "not transcribed now: database unavailable" in caplog.text
        assert "recovery sweep postponed" in caplog.text

        pg_via_proxy.restore()
        assert state(db, attachment_id) == "pending"  # nothing was lost
        # What the periodic sweep does (unless its minute came first and queued it already).
        recover_transcriptions(settings, db)
        assert finished.wait(2)[1] == SIGNAL_COMPLETE  # the same worker takes the job again
        assert state(db, attachment_id) == "done"
    finally:
        worker.stop()
    assert "Traceback" not in caplog.text
