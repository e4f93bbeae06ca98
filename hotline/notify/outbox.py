"""The customer notification outbox, for every channel.

The registry only writes history entries; this module turns the entries a customer
must hear about into `Notification` rows and sends them:

- `created` of an e-mail request → the automatic reply with the request number;
- `created` of a request made by phone from a Russian mobile → its number by SMS;
- `clarification_requested` → the engineer's question;
- a change to `processed` → the request is done.

The customer is written to by the routing rule of `hotline.notify.registry`: the first
channel that is configured and can reach them (e-mail, threaded into their
conversation; else SMS to a mobile number). Delivery is at least once and, short of a
crash in the instant between the server's acceptance and our commit, exactly once: a
row (one per history entry, a unique key) is claimed (state 'sending') before it is
sent, so two workers never send it both, and a claim whose worker died is taken again
after LEASE. A resent e-mail keeps its Message-ID, so mail clients show it once. A
server that is down leaves the row pending for a later try, and the rest of its
channel's queue waits with it.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hotline import registry
from hotline.db import Database
from hotline.models import Notification, Request, RequestEvent, RequestStatus, utcnow
from hotline.notify import registry as channels
from hotline.notify.channel import DeliveryError, NotificationChannel
from hotline.phones import RUSSIAN_MOBILE_PREFIX
from hotline.settings import Settings
from hotline.vocabulary import Channel, HistoryAction, NotificationKind

log = logging.getLogger("hotline.notify")

# History older than this is not announced: a service started after a long pause
# must not send customers a heap of stale news.
NOTIFY_WITHIN = dt.timedelta(days=3)
LEASE = dt.timedelta(minutes=10)
MAX_BACKOFF_SECONDS = 3600


@dataclass
class DrainResult:
    queued: int = 0
    sent: int = 0
    retry: int = 0
    failed: int = 0


# Which notification a history entry calls for (NULL: none). The one place that says
# it, in SQL, so that every entry selected gets its row (pending, or skipped with the
# reason): an entry left without one would be selected again on every drain.
_KIND = case(
    (RequestEvent.action == HistoryAction.CLARIFICATION_REQUESTED, NotificationKind.CLARIFICATION.value),
    (RequestEvent.action == HistoryAction.REPLY, NotificationKind.REPLY.value),  # web/requests.py
    (RequestEvent.to_status == RequestStatus.PROCESSED, NotificationKind.PROCESSED.value),
    (
        and_(
            RequestEvent.action == HistoryAction.CREATED,
            or_(
                Request.channel == Channel.EMAIL,  # the automatic reply
                and_(  # the number, by SMS to a caller's mobile (routed in SmsChannel.recipient)
                    Request.channel == Channel.PHONE,
                    Request.contact_phone.startswith(RUSSIAN_MOBILE_PREFIX, autoescape=True),
                ),
            ),
        ),
        NotificationKind.CREATED.value,
    ),
)


def enqueue(
    session: Session, settings: Settings, now: dt.datetime, senders: dict[str, Any] | None = None
) -> int:
    """Make Notification rows for the history entries that have none yet."""
    active = {c.name: c for c in channels.active_channels(settings, senders)}
    rows = session.execute(
        select(RequestEvent.id, Request, _KIND)
        .join(Request, RequestEvent.request_id == Request.id)
        .outerjoin(Notification, Notification.event_id == RequestEvent.id)
        .where(Notification.id.is_(None), RequestEvent.at >= now - NOTIFY_WITHIN, _KIND.is_not(None))
        .order_by(RequestEvent.id)
        .limit(500)
    ).all()
    for event_id, request, kind in rows:
        to = channels.route(settings, request, kind, active)
        session.add(
            Notification(
                event_id=event_id,
                request_id=request.id,
                kind=kind,
                channel=to.channel,
                recipient=to.recipient,
                state="pending" if to.possible else "skipped",
                last_error=to.why_not,
                next_attempt_at=now,
                external_id=active[to.channel].new_external_id() if to.possible else None,
                created_at=now,
            )
        )
    return len(rows)


def drain(
    settings: Settings,
    db: Database,
    *,
    mailer: Any = None,
    sms: Any = None,
    now: dt.datetime | None = None,
) -> DrainResult:
    """Queue new notifications and send every one that is due; returns what happened.

    `mailer` and `sms` replace the e-mail and SMS channels' transports (tests, demos).
    """
    now = now or utcnow()
    senders = {"email": mailer, "sms": sms}
    active = {c.name: c for c in channels.active_channels(settings, senders)}
    result = DrainResult()
    try:
        with db.session() as session:
            result.queued = enqueue(session, settings, now, senders)
    except IntegrityError:
        pass  # another worker queued the same entries at the same time; they are queued
    waiting = set(active)
    while waiting:
        notification_id = _claim(db, waiting, now)
        if notification_id is None:
            break
        channel = _send(db, notification_id, active, now, result)
        if channel is not None:
            waiting.discard(channel)  # that server is down: the rest of its queue waits too
    return result


def _claim(db: Database, channels: set[str], now: dt.datetime) -> int | None:
    with db.session() as session:
        notification = session.scalars(
            select(Notification)
            .where(
                Notification.channel.in_(sorted(channels)),
                or_(
                    and_(Notification.state == "pending", Notification.next_attempt_at <= now),
                    and_(Notification.state == "sending", Notification.claimed_at < now - LEASE),
                ),
            )
            .order_by(Notification.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if notification is None:
            return None
        notification.state = "sending"
        notification.claimed_at = now
        notification.attempts += 1
        return notification.id


def _send(
    db: Database,
    notification_id: int,
    active: dict[str, NotificationChannel],
    now: dt.datetime,
    result: DrainResult,
) -> str | None:
    """Send one claimed notification; returns its channel if the server is unavailable."""
    with db.session() as session:
        n = session.get_one(Notification, notification_id)
        request = session.get_one(Request, n.request_id)
        event = session.get_one(RequestEvent, n.event_id)
        channel = active[n.channel]
        prepared = channel.prepare(session, n, request, event)
        session.expunge(n)
    try:
        external_id = channel.send(n, prepared)
    except DeliveryError as exc:
        with db.session() as session:
            n = session.get_one(Notification, notification_id)
            n.last_error = str(exc)[:2000]
            if exc.permanent:
                n.state = "failed"
                registry.record(
                    session,
                    session.get_one(Request, n.request_id),
                    actor="system",
                    action="notification_failed",
                    text=f"уведомление ({n.kind}) для {n.recipient} не доставлено: {exc}",
                )
                result.failed += 1
                log.warning("notification %s refused for good: %s", notification_id, exc)
                return None
            n.state = "pending"
            n.next_attempt_at = now + dt.timedelta(
                seconds=min(MAX_BACKOFF_SECONDS, 30 * 2 ** (n.attempts - 1))
            )
            result.retry += 1
            log.warning("notification %s not sent, will retry: %s", notification_id, exc)
            return channel.name
    with db.session() as session:
        n = session.get_one(Notification, notification_id)
        request = session.get_one(Request, n.request_id)
        n.state, n.sent_at, n.external_id, n.last_error = "sent", utcnow(), external_id, None
        channel.record_sent(session, request, prepared)
        registry.record(
            session,
            request,
            actor="system",
            action=channel.sent_action,
            text=f"{_KIND_TEXT[n.kind]}: {n.recipient}",
        )
    result.sent += 1
    return None


_KIND_TEXT = {
    "created": "автоответ с номером заявки",
    "clarification": "запрос информации отправлен заказчику",
    "processed": "уведомление об обработке отправлено заказчику",
    "reply": "ответ инженера отправлен заказчику",
}
