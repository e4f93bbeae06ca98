"""What the hotline writes to customers: the automatic reply and the notifications.

Every message quotes the request number in its subject («[Заявка 10008] …») so a reply
finds its request, threads under the customer's own message (In-Reply-To,
References), and carries `Auto-Submitted: auto-replied` so that autoresponders do not
answer it (RFC 3834): no mail loops.
"""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from hotline.models import Request, RequestKind, utcnow
from hotline.phones import international_phone
from hotline.registry import KIND_LABELS
from hotline.settings import Settings

SENDER_NAME = "Техническая поддержка ПСР QR"
MAX_REFERENCES = 20
_NUMBER_TAG = re.compile(r"\[\s*Заявка\s+\d+\s*\]\s*", re.IGNORECASE)
_REPLY_PREFIX = re.compile(r"^\s*((re|fwd?|ha|отв|ответ)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def mail_domain(settings: Settings) -> str:
    return settings.mail_from.rsplit("@", 1)[-1] or "localhost"


def new_message_id(settings: Settings) -> str:
    """A fresh Message-ID in the support mailbox's domain."""
    return make_msgid(domain=mail_domain(settings))


def base_subject(subject: str) -> str:
    """The customer's subject without Re:/Fwd: prefixes and our number tag."""
    return _NUMBER_TAG.sub("", _REPLY_PREFIX.sub("", subject)).strip()


def tagged_subject(request: Request) -> str:
    subject = base_subject(request.subject) or "обращение в техподдержку"
    return f"[Заявка {request.number}] {subject}"


def _how_to_quote(request: Request, settings: Settings) -> str:
    phone = international_phone(settings.support_number)
    return (
        f"Указывайте номер заявки {request.number} во всех письмах и звонках по ней: "
        "просто ответьте на это письмо, номер уже стоит в теме.\n"
        f"Статус заявки можно узнать по телефону горячей линии {phone}: "
        f"нажмите 1, наберите номер {request.number} и решётку (#)."
    )


def _signature() -> str:
    return f"\n\n--\n{SENDER_NAME}\nЭто письмо отправлено автоматически."


def auto_reply_text(request: Request, settings: Settings) -> str:
    kind = KIND_LABELS[RequestKind(request.kind)]
    return (
        "Здравствуйте!\n\n"
        "Ваше обращение зарегистрировано в технической поддержке ПСР QR.\n\n"
        f"Номер заявки: {request.number}\n"
        f"Вид заявки: {kind}"
        + ("" if request.kind_confirmed else " (инженер уточнит)")
        + "\n\n"
        + _how_to_quote(request, settings)
        + _signature()
    )


def clarification_text(request: Request, question: str, settings: Settings) -> str:
    return (
        "Здравствуйте!\n\n"
        f"Для работы над заявкой {request.number} инженеру поддержки нужна дополнительная информация:\n\n"
        f"{question}\n\n"
        "Ответьте, пожалуйста, на это письмо: ответ и вложения будут добавлены к заявке.\n\n"
        + _how_to_quote(request, settings)
        + _signature()
    )


def processed_text(request: Request, note: str, settings: Settings) -> str:
    return (
        "Здравствуйте!\n\n"
        f"Заявка {request.number} обработана.\n"
        + (f"\nКомментарий инженера:\n{note}\n" if note.strip() else "")
        + "\nЕсли вопрос не решён, ответьте на это письмо, сохранив номер заявки в теме.\n\n"
        + _how_to_quote(request, settings)
        + _signature()
    )


def reply_text(request: Request, text: str, engineer: str, settings: Settings) -> str:
    """An engineer's own reply to the customer (written on the request's page)."""
    return (
        "Здравствуйте!\n\n"
        f"{text.strip()}\n\n"
        "Ответьте, пожалуйста, на это письмо: ответ и вложения будут добавлены к заявке.\n\n"
        + _how_to_quote(request, settings)
        + f"\n\n--\n{engineer + ', ' if engineer else ''}{SENDER_NAME}"
    )


def build_email(
    settings: Settings,
    *,
    to: str,
    subject: str,
    text: str,
    message_id: str,
    in_reply_to: str | None,
    references: list[str],
) -> EmailMessage:
    """An automatic message from the support mailbox, threaded and marked as automatic."""
    msg = EmailMessage()
    msg["From"] = Address(SENDER_NAME, addr_spec=settings.mail_from)
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references[-MAX_REFERENCES:])
    msg["Auto-Submitted"] = "auto-replied"
    # Exchange/Outlook: no out-of-office or read receipts back to an automatic message.
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(text, charset="utf-8")
    msg["Content-Language"] = "ru"  # after set_content, which drops Content-* headers
    return msg


def sms_text(request: Request, kind: str, detail: str, settings: Settings) -> str:
    """The SMS of a notification: short, with the number and the hotline phone."""
    phone = international_phone(settings.support_number)
    detail = detail.strip()
    if len(detail) > 300:
        detail = detail[:297] + "..."
    if kind == "created":  # a phone request: its number, and how to hear its status
        return (
            f"ПСР QR: ваша заявка принята, номер {request.number}.\n"
            f"Чтобы узнать статус, позвоните {phone}, нажмите 1 и наберите {request.number}#."
        )
    if kind == "clarification":
        head = f"ПСР QR: по заявке {request.number} нужна информация" + (f": {detail}" if detail else ".")
        how = f"позвоните {phone}, нажмите 1, наберите {request.number}# и запишите ответ"
        return f"{head}\nЧтобы ответить, {how}."
    if kind == "reply":
        return f"ПСР QR, заявка {request.number}: {detail}\nВопросы: {phone}, номер заявки {request.number}."
    head = f"ПСР QR: заявка {request.number} обработана." + (f" {detail}" if detail else "")
    return f"{head}\nВопросы: {phone}, номер заявки {request.number}."
