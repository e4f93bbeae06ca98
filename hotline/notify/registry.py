"""The notification channels, in the order they are preferred for a customer.

A customer is written to on the first channel that is configured and can reach them
(an e-mail address before a mobile number). A new channel is one line here.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib import import_module
from typing import Any

from hotline.notify.channel import NotificationChannel
from hotline.settings import Settings

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
