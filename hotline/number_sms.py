"""The number of a new phone request sent to the caller's mobile by SMS.

A caller who leaves a request by phone hears its number twice and may not remember
it; a Russian mobile (+79…) also gets it by SMS, with how to check its status, when
SMS is configured. The SMS is a `Notification` of the request's `created` history
entry, so the outbox (hotline.notify.outbox) sends it like every other one: at least
once, retried while Twilio is down, exactly once by its one row per entry, and the
sending is written into the request's history (`sms_out`).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.models import Notification, Request, RequestEvent, utcnow
from hotline.notify.sms import sms_configured
from hotline.phones import sms_number
from hotline.settings import Settings


def russian_mobile(phone: str | None) -> str | None:
    """The number in E.164 (+79…) if `phone` is a Russian mobile, else None.

    Caller ids come as +79001234567 (Twilio), 79001234567 or 89001234567 (Asterisk
    trunks); hotline.phones reads them all.
    """
    mobile = sms_number(phone)
    return mobile if mobile and mobile.startswith("+79") else None


def queue_number_sms(session: Session, settings: Settings, request: Request) -> bool:
    """Queue the SMS with a new request's number (once per request); True if it is queued."""
    mobile = russian_mobile(request.contact_phone)
    if mobile is None or not sms_configured(settings):
        return False
    session.flush()
    event_id = session.scalar(
        select(RequestEvent.id)
        .where(RequestEvent.request_id == request.id, RequestEvent.action == "created")
        .order_by(RequestEvent.id)
        .limit(1)
    )
    if event_id is None:
        return False
    if session.scalar(select(Notification.id).where(Notification.event_id == event_id)) is None:
        now = utcnow()
        session.add(
            Notification(
                event_id=event_id,
                request_id=request.id,
                kind="created",
                channel="sms",
                recipient=mobile,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return True
