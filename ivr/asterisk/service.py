"""The Asterisk parts of `hotline serve` (entry-point group `hotline.services`)."""

from __future__ import annotations

from hotline.db import Database
from hotline.settings import Settings
from ivr.asterisk.ami import AmiConnection, parse_ami_url
from ivr.asterisk.amilog import AmiCallLog
from ivr.asterisk.callback import CallBackRunner
from ivr.asterisk.fastagi import AgiService


def make_agi(settings: Settings, db: Database) -> AgiService:
    """The FastAGI server on HOTLINE_AGI_HOST:HOTLINE_AGI_PORT."""
    from ivr.asterisk.session import BACKEND, make_handler
    from ivr.store import CallStore

    handler = make_handler(CallStore(db, settings, BACKEND), settings)
    return AgiService(handler, settings.agi_host, settings.agi_port)


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
