"""The Asterisk parts of `hotline serve` (entry-point group `hotline.services`)."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import click

from hotline.db import Database
from hotline.services import usable_cores
from hotline.settings import Settings
from ivr.asterisk.ami import AmiConnection, parse_ami_url
from ivr.asterisk.amilog import AmiCallLog
from ivr.asterisk.callback import CallBackRunner
from ivr.asterisk.fastagi import AgiService
from ivr.asterisk.processes import AgiProcesses

log = logging.getLogger(__name__)

AUTO_PROCESSES = 4  # FastAGI processes at most when HOTLINE_AGI_PROCESSES is 0 (the default)


def recordings_dir_problem(folder: Path) -> str | None:
    """Why this process cannot write into the recordings folder (None if it can).

    Asterisk writes there and the hotline reads and deletes its files; a folder this
    process cannot write is likely one Asterisk cannot write either.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".hotline-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def warn_if_recordings_unwritable(settings: Settings) -> None:
    """At start: say so when HOTLINE_AGI_RECORDINGS_DIR is not writable from here."""
    folder = settings.agi_recordings_dir
    problem = recordings_dir_problem(folder)
    if problem is not None:
        message = (
            f"hotline: warning: HOTLINE_AGI_RECORDINGS_DIR {folder} is not writable from here ({problem}); "
            "voice messages cannot be recorded or stored until it is"
        )
        if log.hasHandlers():  # else logging's last resort prints it: the same line twice
            log.warning("%s", message)
        click.echo(message, err=True)


def agi_processes(settings: Settings) -> int:
    """How many FastAGI processes: HOTLINE_AGI_PROCESSES, by default one per core up to
    AUTO_PROCESSES (a worker and its call-log writer hold about 180 MB; four take bursts of
    thousands of calls).

    One when calls' audio streams are decoded live: the AudioSocket listener hands a
    stream to the call that waits for it in its own process (`ivr.livecall`).
    """
    if settings.live_speech and settings.asr_engine == "vosk":
        return 1
    return settings.agi_processes or min(usable_cores(), AUTO_PROCESSES)


def make_agi(settings: Settings, db: Database) -> AgiService | AgiProcesses:
    """The FastAGI server on HOTLINE_AGI_HOST:HOTLINE_AGI_PORT: in a thread of this process,
    or in worker processes sharing the port (`ivr.asterisk.processes`)."""
    from ivr.asterisk.session import BACKEND, make_handler
    from ivr.livecalls import LiveCallStore

    warn_if_recordings_unwritable(settings)
    processes = agi_processes(settings)
    if processes > 1:
        return AgiProcesses(settings, processes)
    # Calls run in memory, the call log written behind them: on stop, the calls in
    # progress are drained, then the store writes what is queued (at exit too).
    store = LiveCallStore(db, settings, BACKEND)
    handler = make_handler(store, settings)
    return AgiService(
        handler,
        settings.agi_host,
        settings.agi_port,
        max_sessions=settings.agi_max_sessions,
        answer_timeout=settings.agi_answer_timeout,
        drain_seconds=settings.agi_drain_seconds,
        after_stop=store.close,
        health_dir=settings.data_dir,
    )


def make_ami(settings: Settings, db: Database) -> AmiService | None:
    """The AMI service (call log and call-backs), when HOTLINE_AMI_URL is set."""
    if not settings.ami_url:
        return None
    return AmiService(settings, db)


class AmiService:
    """`hotline serve`'s AMI part: the process's one AMI connection, the call log on it,
    and the call-back queue's consumer, which places call-backs over that connection."""

    def __init__(self, settings: Settings, db: Database):
        assert settings.ami_url, "make_ami checks it"
        address = parse_ami_url(settings.ami_url)
        self.name = f"AMI from {address.username}@{address.host}:{address.port}"
        self.connection = AmiConnection(address, AmiCallLog(db, settings.support_number).handle)
        self.callbacks = CallBackRunner(settings, db, self.connection)

    def start(self) -> None:
        self.connection.start()
        self.callbacks.start()

    def stop(self) -> None:
        self.callbacks.stop()
        self.connection.stop()
