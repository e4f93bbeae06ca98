"""What the dashboard may truthfully say about reaching the customer.

The outbox (hotline.mail.outbox) decides how a notification goes: by e-mail when the
request has an address and SMTP is configured, else by SMS when it has a phone number
and Twilio SMS is configured, else not at all. The page says the same before the
engineer acts, and the history shows each notification with its delivery state.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.models import Notification, Request
from hotline.settings import Settings
from hotline.vocabulary import Channel


@dataclass(frozen=True)
class Reach:
    channel: str  # email, sms, none (hotline.vocabulary.NotifyChannel)
    recipient: str
    why_not: str | None  # in Russian, when nothing can be sent

    @property
    def possible(self) -> bool:
        return self.why_not is None

    @property
    def how(self) -> str:
        """«по e-mail на a@b.ru», «по SMS на +7…»."""
        return f"{'по e-mail' if self.channel == 'email' else 'по SMS'} на {self.recipient}"


def sms_configured(settings: Settings) -> bool:
    # The same test as hotline.mail.transport.sms_configured (kept here so the page
    # does not depend on where the outbox lives).
    return bool(settings.sms_from and settings.twilio_account_sid and settings.twilio_auth_token)


def reach(settings: Settings, request: Request) -> Reach:
    """How a message to this request's customer would go, or why it cannot."""
    if request.contact_email and settings.smtp_url:
        return Reach("email", request.contact_email, None)
    if request.contact_phone and sms_configured(settings):
        return Reach("sms", request.contact_phone, None)
    if request.contact_email and request.contact_phone:
        why = "отправка писем и SMS не настроена"
    elif request.contact_email:
        why = "отправка писем не настроена (HOTLINE_SMTP_URL)"
    elif request.contact_phone:
        why = "отправка SMS не настроена (HOTLINE_SMS_FROM и учётные данные Twilio)"
    else:
        why = "у заявки нет ни e-mail, ни телефона заказчика"
    return Reach("none", "", why)


def phone_will_hear(request: Request) -> bool:
    """True if the caller can hear the question by checking the status on the hotline."""
    return request.channel == Channel.PHONE or bool(request.contact_phone)


def notifications(session: Session, request: Request) -> dict[int, Notification]:
    """The request's notifications by the history entry they announce."""
    rows = session.scalars(select(Notification).where(Notification.request_id == request.id))
    return {n.event_id: n for n in rows}
