"""Worker processes: one killed with SIGKILL mid-decode, two sharing a Redis queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hotline.jobs import enqueue_transcription, make_service
from hotline.models import Attachment, RequestEvent, Transcript
from tests.hotline.transcription.conftest import add_recording, tone, write_wav

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
HOTLINE = str(Path(sys.executable).parent / "hotline")


def wait_for(condition: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def states(db) -> dict[str, int]:
    with db.session() as s:
        rows = s.execute(
            select(Attachment.transcription_state, func.count()).group_by(Attachment.transcription_state)
        )
        return dict(rows.all())


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in started:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def worker_env(settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(
        HOTLINE_DATA_DIR=str(settings.data_dir),
        HOTLINE_DATABASE_URL=settings.database_url,
        HOTLINE_SECRET_KEY="test",
        HOTLINE_QUEUE_NAME=settings.queue_name,
        HOTLINE_ASR="fake",
        PYTHONPATH=str(ROOT),
    )
    if settings.queue_url:
        env["HOTLINE_QUEUE_URL"] = settings.queue_url
    env.update(extra)
    return env


def test_a_job_killed_mid_decode_is_finished_by_another_worker(make_settings, db, tmp_path, procs):
    settings = make_settings(HOTLINE_QUEUE_NAME=f"kill-{uuid.uuid4().hex[:8]}")
    wav = write_wav(tmp_path / "call.wav", tone(2.0, 8000), 8000, "ULAW")
    number, att = add_recording(settings, db, wav)
    enqueue_transcription(settings, att)
    started, release = tmp_path / "started", tmp_path / "release"

    first = subprocess.Popen(
        [sys.executable, "-m", "tests.hotline.transcription.gated_worker", str(started), str(release)],
        cwd=ROOT,
        env=worker_env(settings),
    )
    procs.append(first)
    wait_for(started.exists, what="the first worker to hold the recording")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    with db.session() as s:
        a = s.get_one(Attachment, att)
        assert (a.transcription_state, a.transcription_attempts, a.transcript) == ("running", 1, None)

    # The lease of 0 s makes the dead worker's claim stale at once (in production:
    # HOTLINE_TRANSCRIPTION_LEASE_SECONDS, 15 minutes by default).
    second = subprocess.Popen(
        [HOTLINE, "worker"], cwd=tmp_path, env=worker_env(settings, HOTLINE_TRANSCRIPTION_LEASE_SECONDS="0")
    )
    procs.append(second)
    wait_for(lambda: states(db) == {"done": 1}, what="the second worker to finish the job")
    with db.session() as s:
        a = s.get_one(Attachment, att)
        assert a.transcription_attempts == 2
        assert a.transcript.text == "демонстрационная расшифровка модель распознавания не подключена"
        assert s.scalar(select(func.count()).select_from(Transcript)) == 1
        assert s.scalar(select(func.count()).where(RequestEvent.action == "transcript")) == 1


def test_two_workers_on_redis_share_a_batch_with_none_lost_or_done_twice(
    make_settings, db, redis_url, tmp_path, procs
):
    settings = make_settings(HOTLINE_QUEUE_URL=redis_url, HOTLINE_QUEUE_NAME=f"share-{uuid.uuid4().hex[:8]}")
    wav = write_wav(tmp_path / "call.wav", tone(1.0, 8000), 8000, "ULAW")
    ids = [add_recording(settings, db, wav)[1] for _ in range(24)]
    for i in ids:
        enqueue_transcription(settings, i)
    # A duplicate message for every fourth recording: must not give a second transcript.
    for i in ids[::4]:
        enqueue_transcription(settings, i)
    for _ in range(2):
        procs.append(
            subprocess.Popen([HOTLINE, "worker", "--workers", "2"], cwd=tmp_path, env=worker_env(settings))
        )
    try:
        wait_for(lambda: states(db) == {"done": len(ids)}, timeout=120, what="all recordings done")
        with db.session() as s:
            per_attachment = dict(
                s.execute(
                    select(Transcript.attachment_id, func.count()).group_by(Transcript.attachment_id)
                ).all()
            )
            assert per_attachment == {i: 1 for i in ids}
            attempts = s.scalars(select(Attachment.transcription_attempts)).all()
            assert attempts == [1] * len(ids)
            assert s.scalar(select(func.count()).where(RequestEvent.action == "transcript")) == len(ids)
    finally:
        import redis

        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"huey.*{settings.queue_name}*"):
            client.delete(key)


def test_serve_runs_an_embedded_worker(make_settings, db, tmp_path):
    settings = make_settings(HOTLINE_ASR="fake", HOTLINE_QUEUE_NAME=f"serve-{uuid.uuid4().hex[:8]}")
    wav = write_wav(tmp_path / "call.wav", tone(1.0, 8000), 8000)
    _, before = add_recording(settings, db, wav)  # stored while nothing ran, never queued
    service = make_service(settings, db)
    assert service is not None
    service.start()
    try:
        _, after = add_recording(settings, db, wav)
        enqueue_transcription(settings, after)
        wait_for(lambda: states(db) == {"done": 2}, what="both recordings done")
    finally:
        service.stop()
    assert make_service(make_settings(HOTLINE_TRANSCRIPTION_WORKERS="0"), db) is None


def test_sigterm_hands_the_running_job_back_at_once(make_settings, db, tmp_path, procs):
    settings = make_settings(HOTLINE_QUEUE_NAME=f"term-{uuid.uuid4().hex[:8]}")
    wav = write_wav(tmp_path / "call.wav", tone(2.0, 8000), 8000, "ULAW")
    _, att = add_recording(settings, db, wav)
    enqueue_transcription(settings, att)
    started, release = tmp_path / "started", tmp_path / "release"
    first = subprocess.Popen(
        [sys.executable, "-m", "tests.hotline.transcription.gated_worker", str(started), str(release)],
        cwd=ROOT,
        env=worker_env(settings),
    )
    procs.append(first)
    wait_for(started.exists, what="the worker to hold the recording")
    first.send_signal(signal.SIGTERM)  # what systemd sends on stop
    first.wait(timeout=30)
    with db.session() as s:
        a = s.get_one(Attachment, att)
        assert (a.transcription_state, a.transcription_started_at) == ("pending", None)
    # The default lease (15 minutes) applies: only a handed-back job is taken at once.
    second = subprocess.Popen([HOTLINE, "worker"], cwd=tmp_path, env=worker_env(settings))
    procs.append(second)
    wait_for(lambda: states(db) == {"done": 1}, what="the next worker to finish the job")
    with db.session() as s:
        assert s.get_one(Attachment, att).transcription_attempts == 2
        assert s.scalar(select(func.count()).select_from(Transcript)) == 1
