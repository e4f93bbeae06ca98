"""Reading a customer's e-mail: text, attachments and headers from raw bytes, whatever it is.

`parse_message()` never raises. Broken MIME, unknown or wrong charsets (Russian mail
still comes in KOI8-R and Windows-1251, sometimes undeclared) and raw 8-bit headers
are read as well as they can be, and every problem found is described in `notes`
(Russian, for the engineer reading the request). The standard library's parser is
lenient and records defects instead of failing; undeclared or wrongly declared text
is decoded with the charset `charset-normalizer` finds most likely among the encodings
Russian mail actually uses.
"""

from __future__ import annotations

import codecs
import contextlib
import email
import email.errors
import email.header
import email.policy
import email.utils
import hashlib
import re
from dataclasses import dataclass, field
from email.message import Message

from bs4 import BeautifulSoup
from charset_normalizer import from_bytes

# The charsets a Russian mailer may have used; limiting the guess to them makes it
# reliable on short texts, where a free guess often picks a Western code page.
RUSSIAN_CHARSETS = ["utf_8", "cp1251", "koi8_r", "cp866", "iso8859_5", "mac_cyrillic"]
SYNTHETIC_DOMAIN = "synthetic.hotline.invalid"
MAX_TEXT = 100_000
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


@dataclass
class InboundAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass
class InboundMail:
    """What the hotline needs from one message of the support mailbox."""

    message_id: str
    from_addr: str
    from_name: str
    to: str
    subject: str
    text: str
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    attachments: list[InboundAttachment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Why the message must get neither a request nor a reply (a bounce, an autoresponder).
    automatic: str | None = None
    malformed: bool = False
    #: A voice message from Asterisk's VoiceMail() (`asterisk_voicemail`): the caller id
    #: Asterisk had ("" when withheld) and its name; None for any other message.
    pbx_caller: str | None = None
    pbx_caller_name: str = ""

    @property
    def synthetic_id(self) -> bool:
        return self.message_id.endswith(f"@{SYNTHETIC_DOMAIN}>")


def decode_bytes(data: bytes, declared: str | None) -> tuple[str, str | None]:
    """Text of `data` in its declared charset, else the likeliest one; and a note if guessed."""
    if declared:
        try:
            codec = codecs.lookup(declared).name
        except LookupError:
            text, used = _guess(data)
            return text, f"неизвестная кодировка «{declared}», текст прочитан как {used}"
        try:
            return data.decode(codec), None
        except UnicodeDecodeError:
            text, used = _guess(data)
            return text, f"текст не в указанной кодировке {declared}, прочитан как {used}"
    try:
        return data.decode("ascii"), None
    except UnicodeDecodeError:
        text, used = _guess(data)
        return text, f"кодировка текста не указана, прочитан как {used}"


def _guess(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    best = from_bytes(data, cp_isolation=RUSSIAN_CHARSETS).best()
    if best is None:
        return data.decode("utf-8", "replace"), "utf-8 (с заменой нечитаемых символов)"
    return str(best), best.encoding


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML body; scripts, styles and markup are dropped."""
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "head", "title", "noscript", "template", "iframe", "object"]):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    text = soup.get_text("\n")
    lines = (re.sub(r"[ \t\xa0]+", " ", line).strip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _raw_header(msg: Message, name: str) -> str | None:
    for key, value in msg.raw_items():
        if key.lower() == name.lower():
            return str(value)
    return None


def header_text(msg: Message, name: str, notes: list[str] | None = None) -> str:
    """A header as text: RFC 2047 words decoded, raw 8-bit bytes decoded by guess."""
    raw = _raw_header(msg, name)
    if raw is None:
        return ""
    raw = re.sub(r"\r?\n[ \t]+", " ", raw).strip()
    if any("\udc80" <= ch <= "\udcff" for ch in raw):
        # 8-bit bytes in a header (not allowed, but common): the parser kept them as
        # surrogates; turn them back into bytes and decode them like a body.
        raw, note = decode_bytes(raw.encode("ascii", "surrogateescape"), None)
        if note and notes is not None:
            notes.append(f"заголовок {name}: {note}")
    try:
        if raw.isascii():
            return str(email.header.make_header(email.header.decode_header(raw))).strip()
        # decode_header() cannot mix encoded words with non-ASCII text: one word at a time.
        return _ENCODED_WORD.sub(
            lambda m: str(email.header.make_header(email.header.decode_header(m.group()))), raw
        ).strip()
    except (LookupError, UnicodeDecodeError, ValueError, email.errors.HeaderParseError):
        try:
            return str(msg.get(name, "")).strip()
        except Exception:  # noqa: BLE001 - a header so broken the stdlib fails on it
            return raw


def _message_ids(value: str) -> list[str]:
    return re.findall(r"<[^<>\s]+>", value)


def parse_message(raw: bytes) -> InboundMail:
    """Everything the hotline keeps of one raw message; problems become notes, not errors."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    notes: list[str] = []
    ids = _message_ids(header_text(msg, "Message-ID"))
    message_id = ids[0] if ids else f"<{hashlib.sha256(raw).hexdigest()}@{SYNTHETIC_DOMAIN}>"
    from_name, from_addr = email.utils.parseaddr(header_text(msg, "From", notes))
    if from_addr and "@" not in from_addr:
        from_addr = ""
    if not from_addr:
        notes.append("адрес отправителя не распознан: ответ не отправлен")
    in_reply_to = _message_ids(header_text(msg, "In-Reply-To"))
    mail = InboundMail(
        message_id=message_id,
        from_addr=from_addr.lower(),
        from_name=from_name,
        to=header_text(msg, "To", notes)[:998],
        subject=header_text(msg, "Subject", notes)[:998],
        text="",
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=_message_ids(header_text(msg, "References")),
        notes=notes,
    )
    mail.automatic = automatic_reason(msg, mail.from_addr)
    plain: list[str] = []
    html: list[str] = []
    defects: list[str] = []
    _collect(msg, mail, plain, html, defects)
    if plain:
        mail.text = "\n\n".join(t.strip() for t in plain if t.strip())
    elif html:
        mail.text = "\n\n".join(html_to_text(h) for h in html).strip()
        notes.append("письмо только в HTML: сохранён его текст без разметки и скриптов")
    if (voicemail := asterisk_voicemail(msg, mail)) is not None:
        mail.pbx_caller, mail.pbx_caller_name = voicemail
    if len(mail.text) > MAX_TEXT:
        mail.text = mail.text[:MAX_TEXT]
        notes.append(f"текст письма обрезан до {MAX_TEXT} символов")
    if defects:
        mail.malformed = True
        kinds = ", ".join(sorted(set(defects)))
        notes.append(
            f"письмо составлено с ошибками MIME ({kinds}): сохранено то, что удалось прочитать, "
            "исходное письмо приложено"
        )
    return mail


def _collect(part: Message, mail: InboundMail, plain: list[str], html: list[str], defects: list[str]) -> None:
    defects.extend(type(d).__name__ for d in part.defects)
    ctype = part.get_content_type()
    if ctype == "message/rfc822" or (part.get_content_maintype() == "message" and part.is_multipart()):
        # A forwarded message is kept whole, as the customer sent it.
        inner = part.get_payload()
        data = b""
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            with contextlib.suppress(Exception):  # re-serialising a broken message may fail
                data = inner[0].as_bytes()
        data = data or _payload(part)
        name = _filename(part, None) or "forwarded.eml"
        mail.attachments.append(InboundAttachment(name, "message/rfc822", data))
        return
    if part.is_multipart():
        payload = part.get_payload()
        for child in payload if isinstance(payload, list) else []:
            if isinstance(child, Message):
                _collect(child, mail, plain, html, defects)
        return
    disposition = part.get_content_disposition()
    filename = _filename(part, None)
    is_body = disposition != "attachment" and filename is None
    if is_body and (ctype in ("text/plain", "text/html") or part.get_content_maintype() == "multipart"):
        # A multipart that could not be split (no boundary) is read as text too.
        text, note = decode_bytes(_payload(part), part.get_content_charset())
        if note:
            mail.notes.append(note)
        (html if ctype == "text/html" else plain).append(text)
        return
    data = _payload(part)
    if not data and filename is None:
        return
    mail.attachments.append(InboundAttachment(filename or _default_name(ctype), ctype, data))


def _payload(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data
    raw = part.get_payload()
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def _filename(part: Message, default: str | None) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # noqa: BLE001 - a malformed parameter must not lose the file
        name = None
    if name and any("\udc80" <= ch <= "\udcff" for ch in name):
        name, _ = decode_bytes(name.encode("ascii", "surrogateescape"), None)
    return name or default


def _default_name(ctype: str) -> str:
    ext = {"text/plain": ".txt", "text/html": ".html", "image/png": ".png", "image/jpeg": ".jpg"}
    return "attachment" + ext.get(ctype, "." + ctype.split("/")[-1].split("+")[0][:10])


# app_voicemail.c (make_email): `Message-ID: <Asterisk-<msgnum>-<random>-<mailbox>-<pid>@<host>>`.
_ASTERISK_MESSAGE_ID = re.compile(r"^<Asterisk-\d+-\d+-")


def asterisk_voicemail(msg: Message, mail: InboundMail) -> tuple[str, str] | None:
    """(caller id, caller name) if the message is a voice message Asterisk's VoiceMail()
    e-mailed (the dialplan's fallback, deploy/asterisk/voicemail.conf), else None.

    Asterisk marks it only by its Message-ID and the recording attached (`audio/x-wav`,
    `msg0000.wav`); the caller id is in `X-Asterisk-CallerID` and `X-Asterisk-CallerIDName`,
    each left out when empty (a withheld number). The X-Asterisk-VM-* headers are written
    only with IMAP storage, so they are not relied on. Like a caller id on the line, these
    headers are the sender's word: the request is a phone request, as a call would make."""
    if not _ASTERISK_MESSAGE_ID.match(mail.message_id):
        return None
    if not any(a.content_type.startswith("audio/") for a in mail.attachments):
        return None
    caller = header_text(msg, "X-Asterisk-CallerID").strip()
    return caller, header_text(msg, "X-Asterisk-CallerIDName").strip()


def automatic_reason(msg: Message, from_addr: str) -> str | None:
    """Why a message comes from a machine (bounce, autoresponder), or None for a person."""
    auto = header_text(msg, "Auto-Submitted").split(";")[0].strip().lower()
    if auto and auto != "no":
        return f"автоматическое письмо (Auto-Submitted: {auto})"
    if msg.get_content_type() == "multipart/report":
        return "отчёт о доставке (multipart/report)"
    if _raw_header(msg, "Return-Path") is not None and header_text(msg, "Return-Path") in ("<>", ""):
        return "уведомление о недоставке (пустой Return-Path)"
    if from_addr.split("@")[0] in ("mailer-daemon", "postmaster"):
        return f"уведомление почтовой системы ({from_addr})"
    precedence = header_text(msg, "Precedence").lower()
    if precedence in ("bulk", "junk", "auto_reply"):
        return f"автоматическое письмо (Precedence: {precedence})"
    if _raw_header(msg, "X-Autoreply") is not None or _raw_header(msg, "X-Autorespond") is not None:
        return "автоответ (X-Autoreply)"
    return None
