"""Twilio recordings: a durable record of each one, fetched until its file is stored.

Twilio tells the hotline about a recording once (the recordingStatusCallback, retried
once within about 15 s on an error). A `RecordingFetch` row is committed before the
download starts; the file is then fetched (only from HOTLINE_TWILIO_API_BASE) and
stored with its request through the call store, and the row is marked done. A crash
or an outage anywhere in between leaves the row pending: the sweep of `hotline
serve` fetches it again with backoff (30 s, 1, 2, 4 … minutes, at most an hour apart) and,
after HOTLINE_RECORDING_FETCH_TRIES tries, marks it failed, says so in the call's
timeline and the request's history, and lists it on the dashboard's intake page.

A 401 or 403 (our TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN are wrong, typically during a
token rotation) is not a try of the recording: the row stays pending and is asked for
again every REFUSED_BACKOFF, each refusal logged as one error line naming the settings,
for REFUSED_FOR after the recording was made; once the token is fixed the next sweep
fetches it. Only a refusal that outlasts REFUSED_FOR marks the row failed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hotline import registry
from hotline.cleaning import clean_line
from hotline.db import Database, DatabaseUnavailable
from hotline.models import Call, RecordingFetch, Request, utcnow
from hotline.settings import Settings
from hotline.sweeper import Sweeper
from ivr import flow
from ivr.store import CallStore

log = logging.getLogger(__name__)

BACKEND = "twilio"
DOWNLOAD_TIMEOUT = httpx.Timeout(10.0, connect=3.0)  # Twilio gives the whole exchange 15 s
MAX_BACKOFF = dt.timedelta(hours=1)
# A refused download waits for a person to fix the token: asking hourly costs Twilio 24
# requests a day and fetches the recording at most an hour after the fix; four days
# outlast a long weekend (a rotation gone wrong on Friday evening, fixed on Tuesday).
# Twilio keeps a recording until it is deleted, so even then the row keeps its URL.
REFUSED_BACKOFF = dt.timedelta(hours=1)
REFUSED_FOR = dt.timedelta(days=4)
SWEEP_SECONDS = 30.0


class FetchError(Exception):
    """The recording could not be fetched now (the message says why)."""


class FetchRefused(FetchError):
    """Twilio refused the credentials (401, 403): a configuration error.

    The row stays pending and is asked for again every REFUSED_BACKOFF until the
    credentials are fixed (or REFUSED_FOR has passed); a refusal is not counted as a try."""


#: What a refusal says in the request's history and the call's timeline.
REFUSED = "Twilio отказал в доступе ({status}): проверьте TWILIO_ACCOUNT_SID и TWILIO_AUTH_TOKEN"


UNKNOWN_CALL = "звонок с таким CallSid неизвестен: запись не скачана"


def remember(
    db: Database,
    call_sid: str,
    recording_sid: str,
    url: str,
    duration: float | None,
    *,
    unknown_call: bool = False,
) -> RecordingFetch:
    """The durable record of a recording (made once, committed before any download).

    `unknown_call`: the recording names a call the hotline never saw; it is kept
    as failed, for an engineer to look at, and never fetched.
    """
    ref = f"{BACKEND}:{recording_sid}"
    try:
        with db.session() as session:
            row = RecordingFetch(
                backend=BACKEND,
                backend_call_id=call_sid,
                recording_ref=ref,
                url=url,
                duration_seconds=duration,
                state="failed" if unknown_call else "pending",
                last_error=UNKNOWN_CALL if unknown_call else None,
                attempts=0,
                next_attempt_at=utcnow(),
            )
            session.add(row)
            session.flush()
            session.expunge(row)
            return row
    except IntegrityError:  # told twice (Twilio's retry): the first record stands
        with db.session() as session:
            row = session.scalars(select(RecordingFetch).where(RecordingFetch.recording_ref == ref)).one()
            session.expunge(row)
            return row


def fetch(settings: Settings, db: Database, store: CallStore, fetch_id: int) -> bool:
    """Try once to fetch and store a remembered recording; True once it is stored."""
    with db.session() as session:
        row = session.get(RecordingFetch, fetch_id)
        if row is None or row.state != "pending":
            return row is not None and row.state == "done"
        call_sid, ref, url, duration = row.backend_call_id, row.recording_ref, row.url, row.duration_seconds
        row.attempts += 1
        attempts = row.attempts
        # Claimed for a while: the sweep does not start the same download alongside.
        row.next_attempt_at = utcnow() + _backoff(attempts)
    sid = ref.split(":", 1)[1]
    try:
        if not store.has_recording(sid):
            path = download(settings, url)
            try:
                store.save_recording(call_sid, flow.Recording(sid, duration, path, speech=_has_speech(path)))
            finally:
                os.unlink(path)
    except FetchRefused as exc:
        _refused(settings, db, store, fetch_id, url, exc)
        return False
    except FetchError as exc:
        _failed_try(settings, db, store, fetch_id, attempts, str(exc))
        return False
    except DatabaseUnavailable:
        raise  # the row waits; the next sweep after the database is back takes it
    except Exception as exc:  # a file that cannot be stored: counted like a failed download
        log.exception("recording %s fetched but not stored", sid)
        _failed_try(settings, db, store, fetch_id, attempts, f"запись не сохранена: {type(exc).__name__}")
        return False
    with db.session() as session:
        row = session.get(RecordingFetch, fetch_id)
        if row is not None:
            row.state, row.done_at, row.last_error = "done", utcnow(), None
    return True


def sweep(settings: Settings, db: Database, store: CallStore, *, now: dt.datetime | None = None) -> int:
    """Fetch the recordings whose time for another try has come; how many were stored."""
    now = now or utcnow()
    with db.session() as session:
        due = session.scalars(
            select(RecordingFetch.id)
            .where(RecordingFetch.state == "pending", RecordingFetch.next_attempt_at <= now)
            .order_by(RecordingFetch.id)
            .limit(50)
        ).all()
    return sum(fetch(settings, db, store, fetch_id) for fetch_id in due)


def download(settings: Settings, url: str) -> str:
    """Fetch a recording into a temporary file in the data dir; its path (FetchError if not)."""
    auth = None
    if settings.twilio_account_sid and settings.twilio_auth_token:
        auth = (settings.twilio_account_sid, settings.twilio_auth_token)
    tmp_dir = settings.data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(suffix=".wav", dir=tmp_dir)
    size = 0
    try:
        with (
            os.fdopen(fd, "wb") as out,
            httpx.stream("GET", url, auth=auth, timeout=DOWNLOAD_TIMEOUT, follow_redirects=False) as response,
        ):
            if response.status_code in (401, 403):
                raise FetchRefused(REFUSED.format(status=response.status_code), response.status_code)
            if response.status_code != 200:
                raise FetchError(f"Twilio ответил {response.status_code}")
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > settings.attachment_max_bytes:
                    raise FetchError("запись больше предела HOTLINE_ATTACHMENT_MAX_BYTES")
                out.write(chunk)
        if size == 0:
            raise FetchError("Twilio отдал пустой файл")
    except (httpx.HTTPError, OSError) as exc:
        os.unlink(path)
        raise FetchError(f"нет связи с Twilio: {clean_line(str(exc), 200)}") from exc
    except FetchError:
        os.unlink(path)
        raise
    return path


def _backoff(attempts: int) -> dt.timedelta:
    # 30 s covers a download (10 s timeout), so the sweep never starts one that runs.
    return min(dt.timedelta(seconds=30 * 2 ** max(0, attempts - 1)), MAX_BACKOFF)


def _refused(
    settings: Settings, db: Database, store: CallStore, fetch_id: int, url: str, exc: FetchRefused
) -> None:
    """A 401/403: the row waits, pending, for the credentials to be fixed (not a try)."""
    with db.session() as session:
        row = session.get(RecordingFetch, fetch_id)
        if row is None:
            return
        row.attempts -= 1  # the recording was not tried, our credentials were
        give_up_at = row.created_at + REFUSED_FOR
        now = utcnow()
        sid, attempts = row.recording_ref.split(":", 1)[1], row.attempts
        if now < give_up_at:
            row.last_error = str(exc)
            row.next_attempt_at = now + REFUSED_BACKOFF
            log.error(
                "recording %s not fetched: Twilio refused the credentials (%s) at %s; check "
                "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (kept pending, asked again every %s until %s)",
                sid,
                exc.args[1],
                url,
                REFUSED_BACKOFF,
                give_up_at.isoformat(timespec="minutes"),
            )
            return
    log.error(
        "recording %s not fetched: Twilio refused the credentials (%s) at %s for %s; check "
        "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (marked failed; the recording stays at Twilio)",
        sid,
        exc.args[1],
        url,
        REFUSED_FOR,
    )
    _failed_try(settings, db, store, fetch_id, attempts, str(exc), final=True)


def _failed_try(
    settings: Settings,
    db: Database,
    store: CallStore,
    fetch_id: int,
    attempts: int,
    error: str,
    *,
    final: bool = False,
) -> None:
    refused = final  # refused for REFUSED_FOR: told already, in a line that names the settings
    final = final or attempts >= settings.recording_fetch_tries
    with db.session() as session:
        row = session.get(RecordingFetch, fetch_id)
        if row is None:
            return
        row.last_error = error
        call_sid, sid = row.backend_call_id, row.recording_ref.split(":", 1)[1]
        if not final:
            log.warning("recording %s not fetched (try %s): %s", sid, attempts, error)
            return
        row.state = "failed"
        if not refused:
            log.error("recording %s lost after %s tries: %s", sid, attempts, error)
        request = session.scalars(
            select(Request)
            .join(Call, Call.request_id == Request.id)
            .where(Call.backend == BACKEND, Call.backend_call_id == call_sid)
        ).one_or_none()
        if request is not None:
            registry.record(
                session,
                request,
                actor="system",
                action="attachment",
                text=f"запись звонка не получена от Twilio: {error}"
                if refused
                else f"запись звонка не получена от Twilio после {attempts} попыток: {error}",
            )
    if final and store.known(call_sid):
        store.log(call_sid, "recording_lost", error, recording=sid)


def make_sweeper(settings: Settings, db: Database) -> Sweeper | None:
    """`hotline serve`'s sweep of recordings not yet fetched (Twilio only)."""
    if not settings.twilio_auth_token and not settings.twilio_insecure:
        return None
    store = CallStore(db, settings, BACKEND)
    return Sweeper("recording sweep", SWEEP_SECONDS, lambda: sweep(settings, db, store))


def _has_speech(path: str) -> bool | None:
    """Whether a downloaded recording holds speech (silence makes no request); None if undecodable."""
    from hotline.transcription.audio import AudioError, has_speech

    try:
        return has_speech(Path(path))
    except AudioError:
        return None
