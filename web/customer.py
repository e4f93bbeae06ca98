"""What the dashboard may truthfully say about reaching the customer.

The outbox (hotline.notify.outbox) decides how a notification goes: on the first
configured channel that can reach the customer (e-mail, then SMS to a mobile number),
else not at all. The page says the same before the
engineer acts, and the history shows each notification with its delivery state.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.models import Notification, Request
from hotline.notify.registry import channel_classes
from hotline.phones import sms_number
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


def reach(settings: Settings, request: Request, kind: str = "clarification") -> Reach:
    """How a message to this request's customer would go, or why it cannot.

    The same choice the outbox makes: the first configured channel (hotline.notify.registry)
    that has an address of the customer.
    """
    for cls in channel_classes():
        if cls.configured(settings) and (recipient := cls.recipient(request, kind)):
            return Reach(cls.name, recipient, None)
    mobile = sms_number(request.contact_phone)
    if request.contact_email and mobile:
        why = "отправка писем и SMS не настроена"
    elif request.contact_email:
        why = "отправка писем не настроена (HOTLINE_SMTP_URL)"
    elif mobile:
        why = "отправка SMS не настроена (HOTLINE_SMS_FROM и учётные данные Twilio)"
    elif request.contact_phone:
        why = "у заявки нет e-mail, а её телефон не мобильный: SMS не отправить"
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
