"""What the dashboard may truthfully say about reaching the customer.

The outbox (hotline.notify.outbox) sends a notification the way the routing rule of
hotline.notify.registry says: on the first configured channel that can reach the
customer (e-mail, then SMS to a mobile number), else not at all. The page says the
same, by the same rule, before the engineer acts, and the history shows each
notification with its delivery state.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.models import Notification, Request
from hotline.notify.registry import Route, route
from hotline.settings import Settings
from hotline.vocabulary import Channel, NotificationKind


def reach(settings: Settings, request: Request, kind: str = NotificationKind.CLARIFICATION) -> Route:
    """How a message to this request's customer would go, or why it cannot (the outbox's rule)."""
    return route(settings, request, kind)


def phone_will_hear(request: Request) -> bool:
    """True if the caller can hear the question by checking the status on the hotline."""
    return request.channel == Channel.PHONE or bool(request.contact_phone)


def notifications(session: Session, request: Request) -> dict[int, Notification]:
    """The request's notifications by the history entry they announce."""
    rows = session.scalars(select(Notification).where(Notification.request_id == request.id))
    return {n.event_id: n for n in rows}
