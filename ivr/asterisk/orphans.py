"""Recordings left in the folder shared with Asterisk, stored with their requests later.

A FastAGI call deletes its recording from the shared folder only after the request
that holds a copy is committed. When the database was down at that moment (or the
process was killed in between) the file stays; `import_orphans` finds the call it
belongs to and hands it to the call flow as a late recording, exactly like Twilio's
late recording callback: the request the caller asked for is made then. Files whose
call cannot be found are kept and reported, never deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import logging
import os
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.db import DatabaseUnavailable
from hotline.models import Call, CallEvent
from hotline.storage import wav_duration
from hotline.transcription.audio import AudioError, has_speech
from ivr import flow
from ivr.asterisk.amilog import AGI_STARTED
from ivr.asterisk.recordings import inside, uniqueid_of, unlink_inside
from ivr.store import CallStore

log = logging.getLogger(__name__)

ORPHAN_AGE = 15 * 60  # older than any recording still being written or stored (limit 5 min)
SWEEP_EVERY = 10 * 60
SWEEP_LOCK = ".hotline-sweep.lock"  # in the recordings folder: one sweep of it at a time


def import_orphans(store: CallStore, folder: Path, *, min_age: float = ORPHAN_AGE) -> list[str]:
    """Store the recordings older than `min_age` s left in `folder`; the names stored.

    Only plain files named like a recording (`<uniqueid>-<n>.wav`) directly inside the
    folder are read or deleted; anything else (a link, a stray name) is left alone.
    One sweep of a folder at a time: while another process sweeps it (FastAGI's worker
    processes all sweep after their first call), this one stores nothing.
    """
    if not folder.is_dir():
        return []
    try:
        lock = os.open(folder / SWEEP_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        log.warning("recordings sweep: cannot open %s in %s (%s); swept unlocked", SWEEP_LOCK, folder, exc)
        return _import(store, folder, min_age)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        return []  # another process sweeps it now
    try:
        return _import(store, folder, min_age)
    finally:
        os.close(lock)  # and with it the lock


def _import(store: CallStore, folder: Path, min_age: float) -> list[str]:
    cutoff = time.time() - min_age
    candidates: list[tuple[float, Path]] = []
    for entry in folder.glob("*.wav"):
        file = inside(folder, entry)
        if file is None or uniqueid_of(file.stem) is None:
            log.warning("%s in the recordings folder is not a recording; left alone", entry)
            continue
        with contextlib.suppress(OSError):
            if (mtime := file.stat().st_mtime) <= cutoff:
                candidates.append((mtime, file))
    stored: list[str] = []
    for _, file in sorted(candidates):
        with store.db.session() as session:
            call_id = _call_of(session, file)
        if call_id is None:
            log.warning("recording %s belongs to no known call; kept", file)
            continue
        recording = flow.Recording(
            ref=file.stem, duration_seconds=wav_duration(file), path=str(file), speech=_speech(file)
        )
        store.save_recording(call_id, recording)
        if store.has_recording(file.stem) or recording.empty:
            unlink_inside(folder, file)
            stored.append(file.stem)
            log.info("recording %s of call %s stored", file.name, call_id)
        else:
            log.warning("recording %s: the call %s expected no recording; kept", file, call_id)
    return stored


def _speech(file: Path) -> bool | None:
    try:
        return has_speech(file)
    except AudioError:
        return None


def _call_of(session: Session, file: Path) -> str | None:
    """The backend id of the call that made `file` (named <uniqueid>-<n>.wav)."""
    uniqueid = uniqueid_of(file.stem)
    if uniqueid is None:
        return None
    found = session.scalar(
        select(Call.backend_call_id).where(Call.backend == "asterisk", Call.backend_call_id == uniqueid)
    )
    if found is not None:
        return found
    # Keyed by the dialplan's linkedid: the agi_start event knows the channel's uniqueid.
    since = dt.datetime.fromtimestamp(file.stat().st_mtime, dt.UTC) - dt.timedelta(days=1)
    rows = session.execute(
        select(Call.backend_call_id, CallEvent.data)
        .join(CallEvent.call)
        .where(Call.backend == "asterisk", CallEvent.kind == AGI_STARTED, CallEvent.at >= since)
    )
    return next((call_id for call_id, data in rows if (data or {}).get("uniqueid") == uniqueid), None)


class OrphanSweeper:
    """Runs `import_orphans` in the background after calls: every SWEEP_EVERY s, and soon
    after a call that found the database down (until a sweep gets through)."""

    def __init__(
        self, store: CallStore, folder: Path, *, every: float = SWEEP_EVERY, min_age: float = ORPHAN_AGE
    ):
        self.store, self.folder = store, folder
        self.every, self.min_age = every, min_age
        self.next_at = 0.0  # the first call after the start sweeps
        self.task: asyncio.Task[None] | None = None

    def soon(self) -> None:
        self.next_at = 0.0

    def after_call(self) -> None:
        """Start a sweep if one is due and none is running."""
        now = time.monotonic()
        if now < self.next_at or (self.task is not None and not self.task.done()):
            return
        self.next_at = now + self.every
        self.task = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        try:
            await asyncio.to_thread(import_orphans, self.store, self.folder, min_age=self.min_age)
        except DatabaseUnavailable as exc:
            log.warning("recordings sweep postponed: %s", exc)
            self.soon()
        except Exception:
            log.exception("recordings sweep failed")
