"""Fixtures of the dashboard: an app on a fresh database, accounts, a voicemail request."""

from __future__ import annotations

import datetime as dt
import io
import math
import re
import struct
import wave
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient

from hotline import calllog, registry, storage, users
from hotline.db import Database
from hotline.models import Transcript, TranscriptionState, utcnow
from hotline.settings import Settings
from web import create_app

PASSWORD = "верный-пароль-1"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 at its cheapest: the tests make many accounts; production keeps the defaults."""
    monkeypatch.setattr(users, "hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    monkeypatch.setattr(users, "_DUMMY_HASH", None)


def tone_wav(seconds: float = 3.0, rate: int = 8000) -> bytes:
    """A 16-bit PCM WAV with a quiet 440 Hz tone (playable by every browser)."""
    frames = b"".join(
        struct.pack("<h", int(3000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(seconds * rate))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


@pytest.fixture
def app(settings: Settings, db: Database) -> Iterator[Flask]:
    app = create_app({"TESTING": True}, settings=settings, db=db)
    yield app


@pytest.fixture
def accounts(db: Database) -> dict[str, int]:
    with db.session() as s:
        eng = users.create_user(s, "ivanov", password=PASSWORD, name="Иван Иванов", role="engineer")
        adm = users.create_user(s, "admin", password=PASSWORD, name="Анна Админова", role="admin")
        return {"engineer": eng.id, "admin": adm.id}


def csrf_token(client: FlaskClient, page: str = "/login") -> str:
    html = client.get(page, follow_redirects=True).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def login(client: FlaskClient, name: str, password: str = PASSWORD) -> object:
    return client.post("/login", data={"login": name, "password": password, "csrf_token": csrf_token(client)})


def post(client: FlaskClient, url: str, data: dict[str, str] | None = None, **kw: object) -> object:
    """A form POST with the session's CSRF token, as the browser sends it."""
    return client.post(url, data={**(data or {}), "csrf_token": csrf_token(client, "/")}, **kw)


@pytest.fixture
def engineer(app: Flask, accounts: dict[str, int]) -> FlaskClient:
    client = app.test_client()
    assert login(client, "ivanov").status_code == 302
    return client


@pytest.fixture
def admin(app: Flask, accounts: dict[str, int]) -> FlaskClient:
    client = app.test_client()
    assert login(client, "admin").status_code == 302
    return client


@dataclass
class Voicemail:
    number: str
    request_id: int
    attachment_id: int
    call_id: int
    audio: bytes


WORDS = [
    {"word": "линия", "start": 0.2, "end": 0.6, "conf": 0.95},
    {"word": "три", "start": 0.7, "end": 0.9, "conf": 0.41},
    {"word": "не", "start": 1.0, "end": 1.1, "conf": 0.9},
    {"word": "читает", "start": 1.2, "end": 1.7, "conf": 0.88},
    {"word": "коды", "start": 2.0, "end": 2.5, "conf": 0.97},
]


@pytest.fixture
def voicemail(db: Database, settings: Settings) -> Voicemail:
    """A phone request as a call leaves it: call with events, recording, transcript."""
    audio = tone_wav()
    with db.session() as s:
        call = calllog.start_call(
            s, backend="asterisk", backend_call_id="1700000000.42", from_number="+79001234567"
        )
        # As the flow logs them (ivr.flow): keys typed, the menu choice, the kind.
        calllog.log_event(s, call, "digits", "2", step="menu")
        calllog.log_event(s, call, "menu", "new_request")
        calllog.log_event(s, call, "digits", "1", step="kind")
        calllog.log_event(s, call, "kind", "incident", request_kind="incident")
        req = registry.open_request(
            s,
            kind="incident",
            channel="phone",
            actor="caller:+79001234567",
            phone="+79001234567",
            subject=registry.VOICE_SUBJECT,
            kind_confirmed=False,
        )
        att = storage.store_attachment(
            s,
            settings.data_dir,
            source=audio,
            filename="voicemail.wav",
            content_type="audio/wav",
            origin="phone",
            request_id=req.id,
            call_id=call.id,
        )
        att.transcription_state = TranscriptionState.DONE
        s.add(
            Transcript(
                attachment=att,
                text="линия три не читает коды",
                normalized_text="линия 3 не читает коды",
                words=WORDS,
                mean_confidence=0.82,
                model="vosk-model-small-ru",
                created_at=utcnow(),
            )
        )
        call.request = req
        calllog.end_call(s, call, outcome="request_created", ended_at=utcnow() + dt.timedelta(seconds=40))
        return Voicemail(req.number, req.id, att.id, call.id, audio)
