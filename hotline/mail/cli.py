"""`hotline mail`: the mailbox intake and the notification outbox on their own."""

from __future__ import annotations

import logging
import signal
import threading

import click

from hotline.cli import Context, pass_context
from hotline.errors import UserError
from hotline.mail.intake import poll_once
from hotline.mail.service import MailService, mailbox_for
from hotline.notify.outbox import drain
from hotline.notify.registry import any_configured


@click.command("mail")
@click.option("--once", is_flag=True, help="Take in the unread mail, send what is due, and exit.")
@pass_context
def mail(ctx: Context, once: bool) -> None:
    """Turn the support mailbox's messages into requests and notify customers."""
    settings = ctx.settings
    if not (settings.imap_url or any_configured(settings)):
        raise UserError("nothing to do: set HOTLINE_IMAP_URL and HOTLINE_SMTP_URL (see README)")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ctx.db.upgrade()
    if once:
        if settings.imap_url:
            with mailbox_for(settings) as mailbox:
                for r in poll_once(settings, ctx.db, mailbox):
                    click.echo(f"{r.message_id}: {r.outcome} {r.request_number or ''}".rstrip())
        result = drain(settings, ctx.db)
        click.echo(f"notifications: {result.sent} sent, {result.retry} to retry, {result.failed} failed")
        return
    service = MailService(settings, ctx.db)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    service.start()
    click.echo("hotline: mail started (Ctrl+C to stop)")
    while not stopping.wait(1):  # a timed wait lets the signal handlers run
        pass
    service.stop()
    click.echo("hotline: mail stopped")


def register(group: click.Group) -> None:
    """Add `hotline mail`."""
    group.add_command(mail)
