"""A Redis queue that cannot be reached: one line from `worker` and `serve`, not tracebacks."""

import os
import socket
import subprocess
import sys

import pytest

from hotline import health, jobs

HOTLINE = [sys.executable, "-c", "from hotline.cli import main; main()"]


def closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{s.getsockname()[1]}/0"


def test_the_worker_says_the_queue_is_down_and_exits_3(tmp_path):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env = {
        **clean,
        "HOTLINE_DATA_DIR": str(tmp_path / "data"),
        "HOTLINE_QUEUE_URL": closed_url(),
        "HOTLINE_SECRET_KEY": "k",
        "HOTLINE_ASR": "fake",
    }
    done = subprocess.run(HOTLINE + ["worker"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("error: queue unavailable: redis://127.0.0.1:"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize(
    "change, says",
    [
        # Redis without a password takes any password for its default user; a user it
        # does not have is refused (redis-py's AuthenticationError, a ConnectionError).
        ({"netloc": "no_such_user:wrong@"}, "invalid username-password pair"),
        ({"path": "/99"}, "DB index is out of range"),  # redis-py's ResponseError
    ],
)
def test_a_redis_that_refuses_the_worker_is_status_78_not_3(redis_url, tmp_path, change, says):
    # 3 is restarted by systemd (Redis comes back); a wrong password or database number
    # does not pass by itself: 78, EX_CONFIG, which the units do not restart.
    from urllib.parse import urlsplit

    parts = urlsplit(redis_url)
    if "netloc" in change:
        parts = parts._replace(netloc=change["netloc"] + (parts.hostname or "") + f":{parts.port or 6379}")
    else:
        parts = parts._replace(path=change["path"])
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env = {
        **clean,
        "HOTLINE_DATA_DIR": str(tmp_path / "data"),
        "HOTLINE_QUEUE_URL": parts.geturl(),
        "HOTLINE_SECRET_KEY": "k",
        "HOTLINE_ASR": "fake",
    }
    done = subprocess.run(HOTLINE + ["worker"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 78, done.stderr
    assert done.stderr.startswith("error: queue refused the connection: redis://"), done.stderr
    assert says in done.stderr and "HOTLINE_QUEUE_URL" in done.stderr and "wrong@" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_serve_says_it_once_and_healthz_reports_it(make_settings, db, capsys):
    settings = make_settings(HOTLINE_QUEUE_URL=closed_url(), HOTLINE_ASR="fake")
    worker = jobs.make_service(settings, db)
    assert worker is not None
    worker.start()
    try:
        err = capsys.readouterr().err
        assert err.count("queue unavailable") == 1 and "Traceback" not in err, err
        [problem] = health.problems(settings.data_dir).values()
        assert "Redis" in problem
    finally:
        worker.stop()
    assert not health.problems(settings.data_dir)


def test_a_recording_queued_while_redis_is_down_is_one_log_line(make_settings, caplog):
    settings = make_settings(HOTLINE_QUEUE_URL=closed_url())
    jobs.enqueue_transcription(settings, 12345)  # no exception: the sweep queues it later
    [record] = [r for r in caplog.records if r.name == "hotline.jobs"]
    assert "12345" in record.getMessage() and record.exc_info is None


@pytest.mark.parametrize("workers", ["0", "1"])
def test_the_watch_runs_without_workers_too(make_settings, db, workers):
    settings = make_settings(HOTLINE_QUEUE_URL=closed_url(), HOTLINE_TRANSCRIPTION_WORKERS=workers)
    service = jobs.make_service(settings, db)
    assert service is not None


def test_serve_says_one_thing_about_a_missing_model(make_settings, db, tmp_path):
    # Not "transcription worker started" and then "transcription disabled".
    settings = make_settings(HOTLINE_VOSK_MODEL=str(tmp_path / "vosk-model-small-ru-0.22"))
    worker = jobs.make_service(settings, db)
    assert isinstance(worker, jobs.EmbeddedWorker)
    worker.start()
    try:
        assert (worker.started_line or "").startswith("transcription disabled: Vosk model not found at ")
    finally:
        worker.stop()


def test_the_queue_is_named_without_its_password(tmp_path):
    from hotline.settings import load_settings

    settings = load_settings(
        {"HOTLINE_DATA_DIR": str(tmp_path), "HOTLINE_QUEUE_URL": "redis://hl:s3cret@h:6379/1"}
    )
    assert jobs.queue_location(settings) == "redis://hl:***@h:6379/1"
    assert jobs.queue_location(load_settings({"HOTLINE_DATA_DIR": str(tmp_path)})).startswith("embedded (")
