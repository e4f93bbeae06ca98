"""The notification channels, in the order they are preferred, and the one routing rule.

A customer is written to on the first channel that can send and can reach them about
that kind of notification (an e-mail address before a mobile number; the number of a
request made by phone from a Russian mobile goes by SMS). `route` is that rule: the
outbox queues by it, the dashboard says by it whether the customer can be reached,
and the call flow by it tells a caller that the number is coming by SMS. A new
channel is one line here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from typing import Any

from hotline.models import Request
from hotline.notify.channel import NotificationChannel
from hotline.phones import display_phone, sms_number
from hotline.settings import Settings
from hotline.vocabulary import NotifyChannel, label_of

CHANNELS: tuple[str, ...] = (
    "hotline.notify.email:EmailChannel",
    "hotline.notify.sms:SmsChannel",
)


@cache
def channel_classes() -> tuple[type[NotificationChannel], ...]:
    """The channel classes of CHANNELS, in order."""
    found = []
    for path in CHANNELS:
        module, name = path.split(":")
        found.append(getattr(import_module(module), name))
    return tuple(found)


def any_configured(settings: Settings) -> bool:
    """True when at least one channel can send (the outbox has work to do)."""
    return any(cls.configured(settings) for cls in channel_classes())


def active_channels(
    settings: Settings, senders: Mapping[str, Any] | None = None
) -> list[NotificationChannel]:
    """The channels that can send now; `senders` replaces a channel's transport (tests, demos)."""
    senders = senders or {}
    active: list[NotificationChannel] = []
    for cls in channel_classes():
        sender = senders.get(cls.name)
        if sender is not None or cls.configured(settings):
            active.append(cls(settings, sender))  # type: ignore[call-arg]
    return active


@dataclass(frozen=True)
class Route:
    """How a notification goes: on a channel to a recipient, or why it cannot."""

    channel: str  # hotline.vocabulary.NotifyChannel (or a registered channel's name)
    recipient: str
    why_not: str | None  # in Russian, when nothing can be sent

    @property
    def possible(self) -> bool:
        return self.why_not is None

    @property
    def how(self) -> str:
        """«по e-mail на a@b.ru», «по SMS на 8 (900) 123-45-67»."""
        return f"{label_of(NotifyChannel, self.channel)} на {display_phone(self.recipient)}"


def route(settings: Settings, request: Request, kind: str, sending: Collection[str] | None = None) -> Route:
    """The first channel that can send and reach this request's customer about `kind`.

    `sending` names the channels that can send (the outbox's, transports replaced in
    tests); by default those configured in `settings`.
    """
    if sending is None:
        sending = [cls.name for cls in channel_classes() if cls.configured(settings)]
    unconfigured: list[type[NotificationChannel]] = []
    for cls in channel_classes():
        recipient = cls.recipient(request, kind)
        if recipient and cls.name in sending:
            return Route(cls.name, recipient, None)
        if recipient:
            unconfigured.append(cls)
    if unconfigured:  # the settings are the operator's (README); the engineer reads who fixes it
        what = " и ".join(cls.what for cls in unconfigured)
        why = f"{what} не отправляются — их отправку не настроил администратор"
    elif not request.contact_phone and not request.contact_email:
        why = "у заявки нет ни e-mail, ни телефона заказчика"
    elif not request.contact_email and not sms_number(request.contact_phone):
        why = "у заявки нет e-mail, а её телефон не мобильный: SMS не отправить"
    else:  # a contact every channel refuses for this kind: only `created` (EmailChannel, SmsChannel)
        why = "номер заявки отправляется только в ответ на письмо или по SMS на российский мобильный"
    return Route(NotifyChannel.NONE, "", why)
