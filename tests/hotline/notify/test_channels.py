"""Channels behind one interface: SMS only to mobile numbers; a new channel is a registry line."""

from __future__ import annotations

import sys
import types

import pytest
from sqlalchemy import select

from hotline import registry
from hotline.models import Notification
from hotline.notify import registry as channels
from hotline.notify.outbox import drain

SMS = {
    "HOTLINE_SMS_FROM": "+73435674530",
    "TWILIO_ACCOUNT_SID": "AC0123456789abcdef0123456789abcdef",
    "TWILIO_AUTH_TOKEN": "tok3n",
}


def _clarification(db, phone: str | None = None, email: str | None = None) -> None:
    with db.session() as session:
        request = registry.open_request(
            session, kind="incident", channel="phone", actor="caller", phone=phone, email=email
        )
        registry.change_status(session, request, "in_progress", actor="engineer:anna")
        registry.ask_clarification(session, request, actor="engineer:anna", question="Какая линия?")


@pytest.mark.parametrize("phone", ["+73435674530", "101", "sip:alice@pbx.example"])
def test_no_sms_to_a_number_that_is_not_mobile(make_settings, db, twilio, phone):
    settings = make_settings(**SMS, HOTLINE_TWILIO_API_BASE=twilio.url)
    _clarification(db, phone=phone)
    assert drain(settings, db).sent == 0
    assert twilio.requests == []
    with db.session() as session:
        n = session.scalars(select(Notification)).one()
        assert (n.channel, n.state) == ("none", "skipped")
        assert "не мобильный" in (n.last_error or "")


class Pigeon:
    """A channel as a new package would bring it: one class, one registry line."""

    name = "pigeon"
    sent_action = "pigeon_out"
    sent: list[tuple[str, str]] = []

    def __init__(self, settings, sender=None):
        self.settings = settings

    @classmethod
    def configured(cls, settings) -> bool:
        return True

    @classmethod
    def recipient(cls, request, kind):
        return request.contact_phone

    def new_external_id(self):
        return None

    def prepare(self, session, n, request, event):
        return f"{request.number}: {event.text}"

    def send(self, n, prepared):
        self.sent.append((n.recipient, prepared))
        return "P1"

    def record_sent(self, session, request, prepared):
        pass


@pytest.fixture
def pigeon_registered(monkeypatch):
    module = types.ModuleType("pigeon_channel")
    module.Pigeon = Pigeon  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pigeon_channel", module)
    monkeypatch.setattr(channels, "CHANNELS", (*channels.CHANNELS, "pigeon_channel:Pigeon"))
    channels.channel_classes.cache_clear()
    Pigeon.sent = []
    yield
    channels.channel_classes.cache_clear()


def test_a_new_channel_is_one_registry_line(settings, db, pigeon_registered):
    _clarification(db, phone="+73435674530")  # a landline: neither e-mail nor SMS reaches it
    assert drain(settings, db).sent == 1
    [(to, text)] = Pigeon.sent
    assert to == "+73435674530" and "Какая линия?" in text
    with db.session() as session:
        n = session.scalars(select(Notification)).one()
        assert (n.channel, n.state, n.external_id) == ("pigeon", "sent", "P1")
