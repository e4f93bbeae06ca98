"""The customer notification outbox, for every channel.

The registry only writes history entries; this module turns the entries a customer
must hear about into `Notification` rows and sends them:

- `created` of an e-mail request → the automatic reply with the request number;
- `clarification_requested` → the engineer's question;
- a change to `processed` → the request is done.

The customer is written to by e-mail when the request has an address (threaded into
their conversation), else by SMS through Twilio when it has a phone number and SMS is
configured. Delivery is at least once and, short of a crash in the instant between
the server's acceptance and our commit, exactly once: a row is claimed (state
'sending') before it is sent, so two workers never send it both, and a claim whose
worker died is taken again after LEASE. A resent e-mail keeps its Message-ID, so mail
clients show it once. A server that is down leaves the row pending for a later try.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from email.message import EmailMessage as MimeMessage

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hotline import registry
from hotline.db import Database
from hotline.mail import compose
from hotline.mail.parse import SYNTHETIC_DOMAIN
from hotline.mail.transport import DeliveryError, MailSender, SmsSender, SmtpSender, TwilioSms, sms_configured
from hotline.models import (
    Channel,
    EmailMessage,
    Notification,
    Request,
    RequestEvent,
    RequestStatus,
    User,
    utcnow,
)
from hotline.settings import Settings

log = logging.getLogger("hotline.mail")

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


def notification_kind(event: RequestEvent, request: Request) -> str | None:
    """Which notification a history entry calls for, if any."""
    if event.action == "clarification_requested":
        return "clarification"
    if event.action == "reply":  # an engineer's free-text reply (web/requests.py)
        return "reply"
    if event.to_status == RequestStatus.PROCESSED:
        return "processed"
    if event.action == "created" and request.channel == Channel.EMAIL:
        return "created"
    return None


def enqueue(session: Session, settings: Settings, now: dt.datetime) -> int:
    """Make Notification rows for the history entries that have none yet."""
    rows = session.execute(
        select(RequestEvent, Request)
        .join(Request, RequestEvent.request_id == Request.id)
        .outerjoin(Notification, Notification.event_id == RequestEvent.id)
        .where(
            Notification.id.is_(None),
            RequestEvent.at >= now - NOTIFY_WITHIN,
            or_(
                RequestEvent.action.in_(["clarification_requested", "reply"]),
                RequestEvent.to_status == RequestStatus.PROCESSED,
                and_(RequestEvent.action == "created", Request.channel == Channel.EMAIL),
            ),
        )
        .order_by(RequestEvent.id)
        .limit(500)
    ).all()
    for event, request in rows:
        kind = notification_kind(event, request)
        if kind is None:
            continue
        channel, recipient, why_not = _route(settings, request, kind)
        session.add(
            Notification(
                event_id=event.id,
                request_id=request.id,
                kind=kind,
                channel=channel,
                recipient=recipient,
                state="pending" if why_not is None else "skipped",
                last_error=why_not,
                next_attempt_at=now,
                external_id=compose.new_message_id(settings) if channel == "email" else None,
                created_at=now,
            )
        )
    return len(rows)


def _route(settings: Settings, request: Request, kind: str) -> tuple[str, str, str | None]:
    """(channel, recipient, reason it cannot be sent or None)."""
    if request.contact_email and settings.smtp_url:
        return "email", request.contact_email, None
    if kind != "created" and request.contact_phone and sms_configured(settings):
        return "sms", request.contact_phone, None
    if request.contact_email or request.contact_phone:
        return "none", "", "отправка писем или SMS не настроена"
    return "none", "", "у заявки нет адреса e-mail или телефона"


def drain(
    settings: Settings,
    db: Database,
    *,
    mailer: MailSender | None = None,
    sms: SmsSender | None = None,
    now: dt.datetime | None = None,
) -> DrainResult:
    """Queue new notifications and send every one that is due; returns what happened."""
    now = now or utcnow()
    if mailer is None and settings.smtp_url:
        mailer = SmtpSender(settings.smtp_url, allow_plaintext=settings.mail_allow_plaintext)
    if sms is None and sms_configured(settings):
        sms = TwilioSms(settings)
    result = DrainResult()
    try:
        with db.session() as session:
            result.queued = enqueue(session, settings, now)
    except IntegrityError:
        pass  # another worker queued the same entries at the same time; they are queued
    channels = {name for name, sender in (("email", mailer), ("sms", sms)) if sender is not None}
    while channels:
        notification_id = _claim(db, channels, now)
        if notification_id is None:
            break
        channel = _send(settings, db, notification_id, mailer, sms, now, result)
        if channel is not None:
            channels.discard(channel)  # that server is down: the rest of its queue waits too
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
    settings: Settings,
    db: Database,
    notification_id: int,
    mailer: MailSender | None,
    sms: SmsSender | None,
    now: dt.datetime,
    result: DrainResult,
) -> str | None:
    """Send one claimed notification; returns its channel if the server is unavailable."""
    with db.session() as session:
        n = session.get_one(Notification, notification_id)
        request = session.get_one(Request, n.request_id)
        event = session.get_one(RequestEvent, n.event_id)
        channel = n.channel
        if channel == "email":
            message = _email(session, settings, n, request, event)
        else:
            text = compose.sms_text(request, n.kind, event.text, settings)
    try:
        if channel == "email":
            assert mailer is not None
            mailer.send(message)
            external_id = n.external_id
        else:
            assert sms is not None
            external_id = sms.send(n.recipient, text)
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
            return channel
    with db.session() as session:
        n = session.get_one(Notification, notification_id)
        request = session.get_one(Request, n.request_id)
        n.state, n.sent_at, n.external_id, n.last_error = "sent", utcnow(), external_id, None
        if channel == "email":
            _record_outgoing(session, settings, message, request)
        registry.record(
            session,
            request,
            actor="system",
            action="email_out" if channel == "email" else "sms_out",
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


def _email(
    session: Session, settings: Settings, n: Notification, request: Request, event: RequestEvent
) -> MimeMessage:
    thread = session.scalars(
        select(EmailMessage).where(EmailMessage.request_id == request.id).order_by(EmailMessage.id)
    ).all()
    real = [m for m in thread if not m.message_id.endswith(f"@{SYNTHETIC_DOMAIN}>")]
    inbound = [m for m in real if m.direction == "in"]
    references: list[str] = []
    if inbound and inbound[0].references:
        references += inbound[0].references.split()
    references += [m.message_id for m in real if m.message_id not in references]
    in_reply_to = inbound[-1].message_id if inbound else (real[-1].message_id if real else None)
    subject = compose.tagged_subject(request)
    if n.kind == "created":
        text = compose.auto_reply_text(request, settings)
    elif n.kind == "clarification":
        subject, text = "Re: " + subject, compose.clarification_text(request, event.text, settings)
    elif n.kind == "reply":
        engineer = session.scalar(select(User.name).where(User.login == event.actor.partition(":")[2]))
        subject, text = "Re: " + subject, compose.reply_text(request, event.text, engineer or "", settings)
    else:
        subject, text = "Re: " + subject, compose.processed_text(request, event.text, settings)
    message = compose.build_email(
        settings,
        to=n.recipient,
        subject=subject,
        text=text,
        message_id=n.external_id or compose.new_message_id(settings),
        in_reply_to=in_reply_to,
        references=references,
    )
    if n.kind == "reply":  # written by a person: replies and receipts are welcome
        del message["Auto-Submitted"], message["X-Auto-Response-Suppress"]
    return message


def _record_outgoing(session: Session, settings: Settings, message: MimeMessage, request: Request) -> None:
    message_id = str(message["Message-ID"])
    if session.scalar(select(EmailMessage.id).where(EmailMessage.message_id == message_id)) is not None:
        return
    session.add(
        EmailMessage(
            message_id=message_id,
            direction="out",
            request_id=request.id,
            from_addr=settings.mail_from,
            to_addr=str(message["To"]),
            subject=str(message["Subject"]),
            in_reply_to=message["In-Reply-To"],
            references=message["References"],
        )
    )
