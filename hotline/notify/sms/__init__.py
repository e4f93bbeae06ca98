"""The SMS channel: Twilio's Messages API, only to valid mobile numbers.

A landline, an extension or a SIP URI in a request's contact phone gets no SMS
(`hotline.phones.sms_number`): the customer is then reached by e-mail or not at all.
A caller who leaves a request by phone from a Russian mobile (+79…) gets its number
and how to check its status (`created`): they heard the number once, at the ear, and
may not remember it.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session

from hotline.mail import compose
from hotline.models import Notification, Request, RequestEvent
from hotline.notify.channel import DeliveryError
from hotline.phones import russian_mobile, sms_number
from hotline.settings import Settings
from hotline.vocabulary import Channel, NotificationKind


class SmsSender(Protocol):
    def send(self, to: str, body: str) -> str:
        """Send an SMS; returns the provider's message id or raises DeliveryError."""


class TwilioSms:
    """SMS through Twilio's REST API (settings.twilio_api_base, so tests can use a local server)."""

    def __init__(self, settings: Settings):
        from twilio.rest import Client

        if not sms_configured(settings):
            raise ValueError("SMS needs HOTLINE_SMS_FROM, TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        self.sms_from = settings.sms_from
        self.client = Client(settings.twilio_account_sid, settings.twilio_auth_token, environment={})
        # The Api domain builds every URL from base_url; with no edge or region set the
        # client uses it unchanged (twilio.base.client_base.get_hostname).
        self.client.api.base_url = settings.twilio_api_base

    def send(self, to: str, body: str) -> str:
        """Send `body` to `to`; returns the Message SID."""
        from twilio.base.exceptions import TwilioException, TwilioRestException

        try:
            return str(self.client.messages.create(to=to, from_=self.sms_from, body=body).sid)
        except TwilioRestException as exc:
            permanent = 400 <= exc.status < 500 and exc.status != 429
            raise DeliveryError(f"Twilio {exc.status}: {exc.msg}", permanent=permanent) from exc
        except (TwilioException, OSError) as exc:  # requests' errors are OSErrors
            raise DeliveryError(f"Twilio: {exc}") from exc


def sms_configured(settings: Settings) -> bool:
    """True when SMS can be sent (a sender number and Twilio credentials)."""
    return bool(settings.sms_from and settings.twilio_account_sid and settings.twilio_auth_token)


class SmsChannel:
    """Short texts to the request's contact phone, when it is a mobile number."""

    name = "sms"
    sent_action = "sms_out"
    what = "SMS"

    def __init__(self, settings: Settings, sender: SmsSender | None = None):
        self.settings = settings
        self.sender = sender or TwilioSms(settings)

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return sms_configured(settings)

    @classmethod
    def recipient(cls, request: Request, kind: str) -> str | None:
        if kind == NotificationKind.CREATED:  # the number of a request made by phone, to a Russian mobile
            return russian_mobile(request.contact_phone) if request.channel == Channel.PHONE else None
        return sms_number(request.contact_phone)

    def new_external_id(self) -> str | None:
        return None  # Twilio's Message SID, once sent

    def prepare(self, session: Session, n: Notification, request: Request, event: RequestEvent) -> str:
        return compose.sms_text(request, n.kind, event.text, self.settings)

    def send(self, n: Notification, prepared: str) -> str | None:
        return self.sender.send(n.recipient, prepared)

    def record_sent(self, session: Session, request: Request, prepared: str) -> None:
        pass
