"""The Asterisk parts of `hotline serve` (entry-point group `hotline.services`)."""

from __future__ import annotations

from hotline.db import Database
from hotline.settings import Settings
from ivr.asterisk.ami import AmiConnection, parse_ami_url
from ivr.asterisk.amilog import AmiCallLog
from ivr.asterisk.fastagi import AgiService


def make_agi(settings: Settings, db: Database) -> AgiService:
    """The FastAGI server on HOTLINE_AGI_HOST:HOTLINE_AGI_PORT."""
    from ivr.asterisk.session import BACKEND, make_handler
    from ivr.livecalls import LiveCallStore

    # Calls run in memory, the call log written behind them (written at exit too).
    handler = make_handler(LiveCallStore(db, settings, BACKEND), settings)
    return AgiService(handler, settings.agi_host, settings.agi_port)


def make_ami(settings: Settings, db: Database) -> AmiConnection | None:
    """The AMI call log, when HOTLINE_AMI_URL is set."""
    if not settings.ami_url:
        return None
    connection = AmiConnection(
        parse_ami_url(settings.ami_url), AmiCallLog(db, settings.support_number).handle
    )
    address = connection.address
    connection.name = f"AMI call log from {address.username}@{address.host}:{address.port}"
    return connection
