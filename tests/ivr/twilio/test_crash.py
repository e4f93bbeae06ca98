"""`kill -9` of the server while it downloads a Twilio recording: after a restart the
recording is there, exactly once (issue 12.3)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from hotline.db import Database
from hotline.models import Attachment, RecordingFetch, Request, utcnow
from ivr.twilio.client import RecordingServer, TwilioCall, make_wav
from tests.helpers import eventually, free_port
from tests.web.test_supervision import _health

pytestmark = pytest.mark.slow

PUBLIC = "https://hotline.example.com"
TOKEN = "crash-token"
SID = "AC" + "7" * 32


def _serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from hotline.cli import main; main()", "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    port = int(env["HOTLINE_HTTP_PORT"])
    assert eventually(lambda: _health(port) == 200 or proc.poll() is not None, 60), log.read_text()
    assert proc.poll() is None, log.read_text()
    return proc


def _count(db: Database, model) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_kill_9_mid_download_then_restart_stores_the_recording_once(tmp_path):
    data = tmp_path / "data"
    port = free_port()
    with RecordingServer(SID, TOKEN) as api:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
        env.update(
            HOTLINE_DATA_DIR=str(data),
            HOTLINE_HTTP_PORT=str(port),
            HOTLINE_AGI_PORT=str(free_port()),
            HOTLINE_PUBLIC_URL=PUBLIC,
            TWILIO_ACCOUNT_SID=SID,
            TWILIO_AUTH_TOKEN=TOKEN,
            HOTLINE_TWILIO_API_BASE=api.base_url,
            HOTLINE_TRANSCRIPTION_WORKERS="0",
        )
        log = tmp_path / "serve.log"
        server = _serve(env, log)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                call = TwilioCall(client, PUBLIC, TOKEN, account_sid=SID)
                call.start()
                call.press("2")
                call.press("1")
                record = call.waiting.verb
                sid = "RE" + "9" * 32
                url = api.add(sid, make_wav(4))
                api.stalled.add(sid)  # the download stops halfway: the server is killed there
                params = {"RecordingUrl": url, "RecordingSid": sid, "RecordingDuration": "4"}
                call.post(record.get("action"), params)
                callback = threading.Thread(
                    target=lambda: _post_quietly(call, record.get("recordingStatusCallback"), params),
                    daemon=True,
                )
                callback.start()
                assert eventually(lambda: sid in api.downloads, 20), "the download never started"
                server.kill()  # kill -9 while the file is half fetched
                server.wait(10)
                callback.join(30)
            db = Database(f"sqlite:///{data / 'hotline.sqlite3'}")
            assert _count(db, Attachment) == 0 and _count(db, RecordingFetch) == 1  # remembered
            with db.session() as s:  # the half download's claim (30 s) has run out, as it would
                s.execute(update(RecordingFetch).values(next_attempt_at=utcnow()))
            api.stalled.clear()
            api.resume.set()
            server = _serve(env, log)  # the restart: its sweep fetches what is missing
            assert not any((data / "tmp").iterdir())  # the half download is gone
            assert eventually(lambda: _state(db) == "done", 90), log.read_text()
            with db.session() as s:
                [request] = s.scalars(select(Request)).all()
                assert [a.external_id for a in request.attachments] == [f"twilio:{sid}"]
            db.dispose()
        finally:
            if server.poll() is None:
                server.terminate()
                server.wait(60)


def _state(db: Database) -> str:
    with db.session() as s:
        return s.scalars(select(RecordingFetch.state)).one()


def _post_quietly(call: TwilioCall, url: str, params: dict[str, str]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the server dies under it, as intended
        call.post(url, {**params, "RecordingStatus": "completed"})
