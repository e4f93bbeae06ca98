"""The mail service: mailbox intake and the notification outbox in background threads."""

from __future__ import annotations

import logging
import threading

from hotline.db import Database, DatabaseUnavailable
from hotline.mail.intake import poll_once
from hotline.mail.transport import Mailbox
from hotline.notify.outbox import drain
from hotline.notify.registry import any_configured
from hotline.settings import Settings

log = logging.getLogger("hotline.mail")
MAX_RECONNECT_SECONDS = 300


def mailbox_for(settings: Settings) -> Mailbox:
    """The support mailbox of these settings (HOTLINE_IMAP_URL must be set)."""
    assert settings.imap_url
    return Mailbox(
        settings.imap_url,
        processed_folder=settings.imap_processed_folder,
        allow_plaintext=settings.mail_allow_plaintext,
    )


class MailService:
    """Takes mail in (IDLE or polling) and sends notifications until stopped."""

    name = "mail"
    reconnect_seconds = 5.0  # the first wait after a failure; doubles up to MAX_RECONNECT_SECONDS

    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        self._stop = threading.Event()
        self._wake_outbox = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the intake and outbox threads (those that are configured)."""
        if self.settings.imap_url:
            self._threads.append(threading.Thread(target=self._intake, name="mail-intake", daemon=True))
        if any_configured(self.settings):
            self._threads.append(threading.Thread(target=self._outbox, name="mail-outbox", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop both loops; a message being taken in is finished first."""
        self._stop.set()
        self._wake_outbox.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _intake(self) -> None:
        delay = self.reconnect_seconds
        while not self._stop.is_set():
            try:
                with mailbox_for(self.settings) as mailbox:
                    delay = self.reconnect_seconds
                    while not self._stop.is_set():
                        if poll_once(self.settings, self.db, mailbox):
                            self._wake_outbox.set()  # the automatic replies go out at once
                        mailbox.wait(self.settings.mail_poll_seconds, self._stop)
            except Exception as exc:  # the loop must survive a mail or database server restart
                log.warning("mail intake: %s; reconnecting in %s s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_RECONNECT_SECONDS)

    def _outbox(self) -> None:
        while not self._stop.is_set():
            try:
                drain(self.settings, self.db)
            except DatabaseUnavailable as exc:  # the notifications wait in the database
                log.warning(
                    "notification outbox: %s; trying again in %s s", exc, self.settings.outbox_seconds
                )
            except Exception:
                log.exception("notification outbox")
            self._wake_outbox.wait(self.settings.outbox_seconds)
            self._wake_outbox.clear()


def make(settings: Settings, db: Database) -> MailService | None:
    """The mail service for `hotline serve`, None when neither mail nor SMS is configured."""
    if not (settings.imap_url or any_configured(settings)):
        return None
    return MailService(settings, db)
