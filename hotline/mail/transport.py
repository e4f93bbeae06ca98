"""The mail peers: the IMAP mailbox and the SMTP server (SMS is hotline.notify.sms).

Vendor errors are translated here, at the edge:

HotlineError
├── MailboxError        the IMAP server is unreachable, refuses the login, or fails a command
└── DeliveryError       a message was not sent (hotline.notify.channel's, shared by every channel)

Plaintext (no TLS) connections are refused unless the server is on the loopback
interface or HOTLINE_MAIL_ALLOW_PLAINTEXT is set: imap:// and smtp:// upgrade with
STARTTLS whenever the server offers it.

What the hotline has taken in is marked by the hotline itself, not by \\Seen alone: see
`Mailbox.new_messages` and docs/intake.md ("E-mail: which messages are new").
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from hotline.errors import HotlineError
from hotline.notify.channel import DeliveryError

log = logging.getLogger("hotline.mail")

IDLE_RENEW_SECONDS = 300  # RFC 2177 asks clients to renew IDLE at least every 29 minutes

# The private IMAP keyword mark_done() sets on a message the hotline has taken in.
TAKEN_KEYWORD = "$HotlineTaken"
# A message someone already read (\Seen) that the hotline has not taken is taken only if
# it arrived within this many days: that covers the hotline being down for a long weekend,
# and a first start against a mailbox full of old read mail takes none of the old mail.
READ_MAIL_WINDOW_DAYS = 7


class MailboxError(HotlineError):
    """The IMAP mailbox cannot be used right now."""


@dataclass(frozen=True)
class ServerURL:
    """The parts of an imap(s):// or smtp(s):// URL."""

    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None
    path: str

    @property
    def tls(self) -> bool:
        return self.scheme.endswith("s")

    @classmethod
    def parse(cls, url: str, default_ports: dict[str, int]) -> ServerURL:
        parts = urlsplit(url)
        return cls(
            scheme=parts.scheme,
            host=parts.hostname or "localhost",
            port=parts.port or default_ports[parts.scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            path=unquote(parts.path.lstrip("/")),
        )


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (where plaintext cannot be sniffed)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse_plaintext(url: ServerURL, allow: bool) -> str | None:
    if allow or is_loopback(url.host):
        return None
    return (
        f"{url.host} offers no STARTTLS; use {url.scheme}s:// or set HOTLINE_MAIL_ALLOW_PLAINTEXT=true "
        "to send the password unencrypted"
    )


class Mailbox:
    """The support mailbox over IMAP: new messages, marking them done, waiting for more."""

    def __init__(self, url: str, *, processed_folder: str | None = None, allow_plaintext: bool = False):
        self.url = ServerURL.parse(url, {"imap": 143, "imaps": 993})
        self.folder = self.url.path or "INBOX"
        self.processed_folder = processed_folder
        self.allow_plaintext = allow_plaintext
        self._client: Any = None
        self.keywords = False  # the folder keeps TAKEN_KEYWORD (set by connect())

    def __enter__(self) -> Mailbox:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        """Log in and select the mailbox folder (and make the processed folder if missing)."""
        from imapclient import IMAPClient

        try:
            client = IMAPClient(self.url.host, port=self.url.port, ssl=self.url.tls, timeout=60)
            if not self.url.tls:
                if client.has_capability("STARTTLS"):
                    client.starttls(ssl.create_default_context())
                elif reason := _refuse_plaintext(self.url, self.allow_plaintext):
                    client.logout()
                    raise MailboxError(reason)
            client.login(self.url.username or "", self.url.password or "")
            if self.processed_folder and not client.folder_exists(self.processed_folder):
                client.create_folder(self.processed_folder)
            selected = client.select_folder(self.folder)
        except MailboxError:
            raise
        except Exception as exc:  # imapclient raises imaplib errors, socket errors, ssl errors
            raise MailboxError(f"IMAP {self.url.host}:{self.url.port}: {exc}") from exc
        self._client = client
        self.keywords = allows_keyword(selected.get(b"PERMANENTFLAGS"))
        if not self.keywords:  # once per connection: connect() is its start
            log.warning(
                "IMAP folder %s on %s does not let the hotline keep its own %s mark on messages "
                "(no \\* in PERMANENTFLAGS), so mail counts as new only while it is unread: "
                "a message someone opens in a mail client before the hotline polls is never "
                "taken in. Give the hotline a mailbox of its own, or a server that allows keywords.",
                self.folder,
                self.url.host,
                TAKEN_KEYWORD,
            )

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # the connection may already be gone
                client.logout()

    def new_messages(self, batch: int = 20) -> Iterator[tuple[int, bytes]]:
        """Messages not yet taken as (uid, raw bytes), oldest first, leaving their flags alone.

        Not yet taken: without TAKEN_KEYWORD, and unread or arrived within
        READ_MAIL_WINDOW_DAYS (new_mail_criteria); only unread where the folder keeps no
        keywords.
        """
        criteria = new_mail_criteria(self.keywords, datetime.now(UTC).date())
        try:
            uids = sorted(self._client.search(criteria))
        except Exception as exc:
            raise MailboxError(f"IMAP search failed: {exc}") from exc
        # Fetched a batch at a time, so a long backlog is never all in memory at once.
        for start in range(0, len(uids), batch):
            chunk = uids[start : start + batch]
            try:
                # BODY.PEEK leaves \\Seen alone: only mark_done() may say a message is handled.
                fetched = self._client.fetch(chunk, ["BODY.PEEK[]"])
            except Exception as exc:
                raise MailboxError(f"IMAP fetch failed: {exc}") from exc
            for uid in chunk:
                if uid in fetched:
                    yield uid, fetched[uid][b"BODY[]"]

    def mark_done(self, uid: int) -> None:
        """Mark a handled message taken and read, and move it to the processed folder if any."""
        # \Seen as well, so that people see it handled; the keyword travels with a move.
        flags = [b"\\Seen", TAKEN_KEYWORD.encode()] if self.keywords else [b"\\Seen"]
        try:
            self._client.add_flags([uid], flags)
            if self.processed_folder:
                if self._client.has_capability("MOVE"):
                    self._client.move([uid], self.processed_folder)
                else:
                    self._client.copy([uid], self.processed_folder)
                    self._client.delete_messages([uid])
                    self._client.expunge([uid] if self._client.has_capability("UIDPLUS") else None)
        except Exception as exc:
            raise MailboxError(f"IMAP cannot mark message {uid}: {exc}") from exc

    def wait(self, seconds: float, stop: threading.Event) -> None:
        """Wait for new mail: IDLE where the server has it, else `seconds`; return early on stop."""
        if not self._client.has_capability("IDLE"):
            stop.wait(seconds)
            return
        try:
            self._client.idle()
            deadline = time.monotonic() + IDLE_RENEW_SECONDS
            # Short checks so that stop() is noticed within a second.
            while not stop.is_set() and time.monotonic() < deadline:
                if any(b"EXISTS" in r or b"RECENT" in r for r in self._client.idle_check(timeout=1)):
                    break
            self._client.idle_done()
        except Exception as exc:
            raise MailboxError(f"IMAP IDLE failed: {exc}") from exc


def allows_keyword(permanent_flags: Any) -> bool:
    """Whether a folder with these PERMANENTFLAGS (SELECT's answer) keeps TAKEN_KEYWORD.

    `\\*` means any keyword may be made. A server that sends no PERMANENTFLAGS is taken
    not to: a keyword it dropped silently would make the hotline fetch the same mail
    on every poll.
    """
    flags = {bytes(flag).lower() for flag in permanent_flags or ()}
    return b"\\*" in flags or TAKEN_KEYWORD.lower().encode() in flags


def new_mail_criteria(keywords: bool, today: date) -> list[Any]:
    """The IMAP SEARCH for messages the hotline has not taken in yet.

    With keywords: not marked TAKEN_KEYWORD, not deleted, and either unread or (read by
    someone) arrived since READ_MAIL_WINDOW_DAYS before `today` (SINCE compares dates
    only). Without: unread and not deleted, as \\Seen is then the only mark there is.
    """
    if not keywords:
        return ["UNSEEN", "NOT", "DELETED"]
    since = today - timedelta(days=READ_MAIL_WINDOW_DAYS)
    return ["NOT", "KEYWORD", TAKEN_KEYWORD, "NOT", "DELETED", "OR", "UNSEEN", "SINCE", since]


class MailSender(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Hand one message to the mail system or raise DeliveryError."""


class SmtpSender:
    """Sends messages through the SMTP server of settings.smtp_url."""

    def __init__(self, url: str, *, allow_plaintext: bool = False, timeout: float = 30):
        self.url = ServerURL.parse(url, {"smtp": 587, "smtps": 465})
        self.allow_plaintext = allow_plaintext
        self.timeout = timeout

    def send(self, message: EmailMessage) -> None:
        """Deliver `message` to its To addresses, or raise DeliveryError."""
        try:
            smtp: smtplib.SMTP
            if self.url.tls:
                smtp = smtplib.SMTP_SSL(self.url.host, self.url.port, timeout=self.timeout)
            else:
                smtp = smtplib.SMTP(self.url.host, self.url.port, timeout=self.timeout)
            with smtp:
                smtp.ehlo()
                if not self.url.tls:
                    if smtp.has_extn("starttls"):
                        smtp.starttls(context=ssl.create_default_context())
                        smtp.ehlo()
                    elif self.url.username and (reason := _refuse_plaintext(self.url, self.allow_plaintext)):
                        raise DeliveryError(reason)
                if self.url.username:
                    smtp.login(self.url.username, self.url.password or "")
                smtp.send_message(message)
        except DeliveryError:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(
                f"SMTP refused the recipient: {exc.recipients}", permanent=min(codes) >= 500
            ) from exc
        except smtplib.SMTPResponseException as exc:
            # 5xx for this message is final; 4xx and authentication trouble may pass.
            permanent = exc.smtp_code >= 500 and not isinstance(exc, smtplib.SMTPAuthenticationError)
            raise DeliveryError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", permanent=permanent) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {self.url.host}:{self.url.port}: {exc}") from exc
