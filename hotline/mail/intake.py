"""Messages of the support mailbox become requests, or more information on one.

One message, one transaction: the request (or the addition to it), its attachments
and the EmailMessage row keyed by Message-ID are committed together, and only then
is the message marked done in the mailbox. A crash in between leaves it unread: the
next poll sees it again, finds its Message-ID and just marks it. The automatic reply
is not sent here: the 'created' history entry puts it in the outbox (hotline.notify.outbox).

Every header and the text are cleaned to fit their columns (`clean_mail`: no NUL or
control characters, an address over 254 characters is not made a contact), with a
note of what was changed. A message that still fails is tried MAX_TRIES times and
then kept as a dead letter (hotline.deadletters) and marked done: never retried for ever.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hotline import deadletters, registry
from hotline.cleaning import clean, clean_line
from hotline.db import Database, DatabaseUnavailable
from hotline.jobs import enqueue_transcription
from hotline.mail.parse import InboundAttachment, InboundMail, parse_message
from hotline.mail.transport import Mailbox
from hotline.models import Channel, EmailMessage, Request, RequestKind
from hotline.numbers import find_request_numbers
from hotline.phones import stored_phone
from hotline.settings import Settings

log = logging.getLogger("hotline.mail")

DEFAULT_KIND = RequestKind.INCIDENT


@dataclass
class IntakeResult:
    """What became of one message."""

    outcome: str  # created, added, duplicate, skipped
    message_id: str
    request_number: str | None = None
    notes: list[str] = field(default_factory=list)


def ingest(settings: Settings, db: Database, raw: bytes) -> IntakeResult:
    """Turn one raw message into a request or an addition to one (idempotent by Message-ID)."""
    mail = clean_mail(parse_message(raw))
    to_transcribe: list[int] = []
    try:
        with db.session() as session:
            known = session.scalars(
                select(EmailMessage).where(EmailMessage.message_id == mail.message_id)
            ).one_or_none()
            if known is not None:
                request = session.get(Request, known.request_id) if known.request_id else None
                return IntakeResult("duplicate", mail.message_id, request.number if request else None)
            reason = mail.automatic
            if reason is None and mail.from_addr == settings.mail_from.lower():
                reason = "письмо от самой техподдержки (петля)"
            if reason is not None:
                session.add(_email_row(mail, None, f"пропущено: {reason}"))
                log.info("mail %s skipped: %s", mail.message_id, reason)
                return IntakeResult("skipped", mail.message_id, None, [reason])
            result = _file(session, settings, mail, raw, to_transcribe)
    except IntegrityError:
        # Another intake process committed the same Message-ID first.
        return IntakeResult("duplicate", mail.message_id)
    for attachment_id in to_transcribe:
        try:
            enqueue_transcription(settings, attachment_id)
        except Exception:  # the recording stays 'pending' and is queued again later
            log.exception("cannot queue transcription of attachment %s", attachment_id)
    return result


MAX_ADDRESS = 254  # RFC 5321: no longer address can be delivered to


def clean_mail(mail: InboundMail) -> InboundMail:
    """The message with every field cleaned to fit its column; notes say what changed."""
    notes: list[str] = []

    def line(value: str, limit: int, what: str) -> str:
        cleaned = clean(value, limit, multiline=False, what=what)
        notes.extend(cleaned.notes)
        return cleaned.text

    mail.message_id = clean_line(mail.message_id, 998)
    address = clean_line(mail.from_addr)
    if len(address) > MAX_ADDRESS or (address and "@" not in address):
        notes.append(f"адрес отправителя не годится для ответа: «{address[:80]}…»")
        address = ""
    mail.from_addr = address
    mail.from_name = line(mail.from_name, 200, "имя отправителя")
    mail.to = line(mail.to, 998, "адресаты")
    mail.subject = line(mail.subject, 998, "тема письма")
    body = clean(mail.text, what="текст письма")
    notes.extend(body.notes)
    mail.text = body.text
    mail.in_reply_to = clean_line(mail.in_reply_to, 998) or None if mail.in_reply_to else None
    mail.references = [clean_line(r, 998) for r in mail.references if clean_line(r)]
    if mail.pbx_caller is not None:
        mail.pbx_caller = clean_line(mail.pbx_caller, 200)
        mail.pbx_caller_name = line(mail.pbx_caller_name, 200, "имя звонившего")
    for item in mail.attachments:
        item.filename = clean_line(item.filename, 300) or "file"
        item.content_type = clean_line(item.content_type, 120) or "application/octet-stream"
    mail.notes.extend(notes)
    return mail


def _file(
    session: Session, settings: Settings, mail: InboundMail, raw: bytes, to_transcribe: list[int]
) -> IntakeResult:
    actor = f"email:{mail.from_addr or 'unknown'}"
    notes = mail.notes
    request: Request | None
    if mail.pbx_caller is not None:
        actor = registry.caller_actor(stored_phone(mail.pbx_caller))
        request = _voicemail(session, mail, actor)
        outcome = "created"
    elif (request := _find_request(session, mail)) is None:
        kind = registry.suggest_kind(f"{mail.subject}\n{mail.text}")
        first_line = next((line.strip() for line in mail.text.splitlines() if line.strip()), "")
        request = registry.open_request(
            session,
            kind=kind or DEFAULT_KIND,
            channel=Channel.EMAIL,
            actor=actor,
            subject=mail.subject or first_line[:120] or "(без темы)",
            description=mail.text or "(письмо без текста)",
            email=mail.from_addr or None,
            name=mail.from_name or None,
            kind_confirmed=False,
        )
        request.suggested_kind = kind
        outcome = "created"
    else:
        text = f"письмо «{mail.subject}»:\n{mail.text}" if mail.subject else mail.text
        registry.add_information(session, request, actor=actor, text=text or "(письмо без текста)")
        # The sender becomes the contact only of a request that has none (a caller who
        # withheld their number): numbers are short and easy to guess, and the contact
        # receives the engineers' questions and answers.
        if mail.from_addr and not (request.contact_email or request.contact_phone):
            request.contact_email = mail.from_addr
        outcome = "added"
    files = list(mail.attachments)
    if mail.malformed:
        files.append(InboundAttachment("message.eml", "message/rfc822", raw))
    for index, item in enumerate(files):
        size = len(item.data)
        if size > settings.attachment_max_bytes:
            notes.append(
                f"вложение «{item.filename}» ({_mb(size)}) не сохранено: больше предела "
                f"{_mb(settings.attachment_max_bytes)}; попросите прислать его другим способом"
            )
            continue
        digest = hashlib.sha256(f"{mail.message_id}/{index}".encode()).hexdigest()[:40]
        attachment = registry.attach_file(
            session,
            settings.data_dir,
            request,
            actor=actor,
            source=item.data,
            filename=item.filename,
            content_type=item.content_type,
            origin="email",
            external_id=f"email:{digest}",
        )
        if attachment.is_audio:
            to_transcribe.append(attachment.id)
    summary = f"письмо от {mail.from_addr or 'неизвестного отправителя'}: «{mail.subject or 'без темы'}»"
    if mail.pbx_caller is not None:
        caller = registry.from_phone(request.contact_phone)
        summary = (
            f"голосовое сообщение {caller}, оставленное на резервном автоответчике Asterisk "
            f"(горячая линия не могла принять звонок); пришло письмом от {mail.from_addr or 'АТС'}"
        )
    registry.record(
        session,
        request,
        actor=actor,
        action="email_in",
        text="\n".join([summary, *(f"• {n}" for n in notes)]),
    )
    session.add(_email_row(mail, request.id, "\n".join(notes) or None))
    log.info("mail %s → request %s (%s)", mail.message_id, request.number, outcome)
    return IntakeResult(outcome, mail.message_id, request.number, notes)


def _voicemail(session: Session, mail: InboundMail, actor: str) -> Request:
    """A voice message of Asterisk's fallback: a new phone request, as the call would have
    made had the hotline taken it (the caller never chose a kind: an engineer confirms it
    once the transcript suggests one). Never matched to a request by numbers in the mail:
    the body holds the caller's number, not a request's."""
    return registry.open_request(
        session,
        kind=DEFAULT_KIND,
        channel=Channel.PHONE,
        actor=actor,
        subject=registry.VOICE_SUBJECT,
        phone=mail.pbx_caller,
        name=mail.pbx_caller_name or None,
        kind_confirmed=False,
    )


def _find_request(session: Session, mail: InboundMail) -> Request | None:
    """The request this message continues: by thread headers, else by a number it quotes."""
    thread = [m for m in [mail.in_reply_to, *reversed(mail.references)] if m]
    if thread:
        rows = session.scalars(
            select(EmailMessage).where(
                EmailMessage.message_id.in_(thread), EmailMessage.request_id.is_not(None)
            )
        ).all()
        by_id = {row.message_id: row for row in rows}
        for message_id in thread:
            if message_id in by_id:
                return session.get(Request, by_id[message_id].request_id)
    for text in (mail.subject, mail.text):
        for number in find_request_numbers(text):
            request = session.scalars(select(Request).where(Request.number == number)).one_or_none()
            if request is not None:
                return request
    return None


def _email_row(mail: InboundMail, request_id: int | None, note: str | None) -> EmailMessage:
    return EmailMessage(
        message_id=mail.message_id,
        direction="in",
        request_id=request_id,
        from_addr=mail.from_addr[:254],
        to_addr=mail.to,
        subject=mail.subject,
        in_reply_to=mail.in_reply_to,
        references=" ".join(mail.references) or None,
        note=note,
    )


def _mb(size: int) -> str:
    return f"{size / (1 << 20):.1f} МБ"


def poll_once(settings: Settings, db: Database, mailbox: Mailbox) -> list[IntakeResult]:
    """Take every unread message of the mailbox in, marking each done after its commit."""
    results = []
    for uid, raw in mailbox.new_messages():
        if deadletters.is_dead(db, raw):  # given up before; marking it done failed then
            mailbox.mark_done(uid)
            continue
        try:
            result = ingest(settings, db, raw)
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            # Left unread, so it is tried again; the other messages must not wait for it.
            log.exception("mail uid %s could not be taken in", uid)
            if deadletters.record_failure(db, settings.data_dir, "email", raw, _summary(raw), exc):
                mailbox.mark_done(uid)
            continue
        deadletters.mark_taken(db, raw)
        mailbox.mark_done(uid)
        results.append(result)
    return results


def _summary(raw: bytes) -> str:
    """Who sent a message and about what, for the list of dead letters (never raises)."""
    try:
        mail = parse_message(raw)
        return f"{mail.from_addr or 'неизвестный отправитель'}: {mail.subject or 'без темы'}"
    except Exception:  # noqa: BLE001 - a summary must not fail
        return f"письмо {len(raw)} байт"
