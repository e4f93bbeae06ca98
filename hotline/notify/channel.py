"""What a notification channel is: who it can reach, how it sends, what it records.

HotlineError
└── DeliveryError   a notification was not sent; `.permanent` says whether retrying can help
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.orm import Session

from hotline.errors import HotlineError
from hotline.models import Notification, Request, RequestEvent
from hotline.settings import Settings


class DeliveryError(HotlineError):
    """A message was not delivered to its server (SMTP, Twilio, ...)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class NotificationChannel(Protocol):
    """One way of telling a customer about their request (e-mail, SMS, ...).

    The outbox calls `prepare` inside a database session and `send` outside it (a
    slow server never holds a transaction open), then `record_sent` in a new one.
    """

    name: str  # stored in Notification.channel (at most 10 characters)
    sent_action: str  # the request history's action once sent ("email_out")
    what: str  # «… не отправляются»: письма, SMS

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        """True when this channel can send with these settings."""
        ...

    @classmethod
    def recipient(cls, request: Request, kind: str) -> str | None:
        """Whom to write to about `kind` of this request on this channel; None if nobody."""
        ...

    def new_external_id(self) -> str | None:
        """The id fixed before the first try, so a repeat is the same message (or None)."""
        ...

    def prepare(self, session: Session, n: Notification, request: Request, event: RequestEvent) -> Any:
        """What to send for this notification (read from the database)."""
        ...

    def send(self, n: Notification, prepared: Any) -> str | None:
        """Send it; the provider's id of the message, or DeliveryError."""
        ...

    def record_sent(self, session: Session, request: Request, prepared: Any) -> None:
        """Keep whatever the channel keeps of a sent message (e-mail: its row for threading)."""
        ...
