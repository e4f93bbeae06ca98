"""The e-mail channel: notifications threaded into the customer's own conversation."""

from __future__ import annotations

from email.message import EmailMessage as MimeMessage

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.mail import compose
from hotline.mail.parse import SYNTHETIC_DOMAIN
from hotline.mail.transport import MailSender, SmtpSender
from hotline.models import EmailMessage, Notification, Request, RequestEvent, User
from hotline.settings import Settings
from hotline.vocabulary import Channel, NotificationKind


class EmailChannel:
    """Sends through SMTP (HOTLINE_SMTP_URL) to the request's contact address."""

    name = "email"
    sent_action = "email_out"
    what = "письма"

    def __init__(self, settings: Settings, sender: MailSender | None = None):
        self.settings = settings
        if sender is None:
            assert settings.smtp_url
            sender = SmtpSender(settings.smtp_url, allow_plaintext=settings.mail_allow_plaintext)
        self.sender = sender

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return bool(settings.smtp_url)

    @classmethod
    def recipient(cls, request: Request, kind: str) -> str | None:
        if kind == NotificationKind.CREATED and request.channel != Channel.EMAIL:
            return None  # the automatic reply answers an e-mail
        return request.contact_email or None

    def new_external_id(self) -> str | None:
        return compose.new_message_id(self.settings)

    def prepare(
        self, session: Session, n: Notification, request: Request, event: RequestEvent
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
        settings = self.settings
        if n.kind == "created":
            text = compose.auto_reply_text(request, settings)
        elif n.kind == "clarification":
            subject, text = "Re: " + subject, compose.clarification_text(request, event.text, settings)
        elif n.kind == "reply":
            engineer = session.scalar(select(User.name).where(User.login == event.actor.partition(":")[2]))
            subject, text = (
                "Re: " + subject,
                compose.reply_text(request, event.text, engineer or "", settings),
            )
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

    def send(self, n: Notification, prepared: MimeMessage) -> str | None:
        self.sender.send(prepared)
        return n.external_id

    def record_sent(self, session: Session, request: Request, prepared: MimeMessage) -> None:
        message_id = str(prepared["Message-ID"])
        if session.scalar(select(EmailMessage.id).where(EmailMessage.message_id == message_id)) is not None:
            return
        session.add(
            EmailMessage(
                message_id=message_id,
                direction="out",
                request_id=request.id,
                from_addr=self.settings.mail_from,
                to_addr=str(prepared["To"]),
                subject=str(prepared["Subject"]),
                in_reply_to=prepared["In-Reply-To"],
                references=prepared["References"],
            )
        )
