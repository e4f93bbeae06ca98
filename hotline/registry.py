"""The request registry: opening requests, their numbers, lifecycle and history.

Every channel (phone, e-mail, dashboard, CLI) goes through these functions, so that
numbers, transitions and history behave the same whoever makes the change. They take
an open session and leave committing to the caller's unit of work.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, func, or_, select, update
from sqlalchemy.orm import Session

from hotline.cleaning import clean_line, clean_text
from hotline.errors import IllegalTransition, UnknownRequest, UserError
from hotline.models import (
    Attachment,
    Channel,
    Counter,
    Request,
    RequestEvent,
    RequestKind,
    RequestStatus,
    User,
    utcnow,
)
from hotline.numbers import FIRST_SEQUENCE, make_request_number, parse_request_number
from hotline.phones import stored_phone
from hotline.storage import store_attachment
from hotline.vocabulary import HistoryAction, file_size, labels

S = RequestStatus

#: The lifecycle of the support contract: new → in progress ⇄ awaiting info → processed;
#: processed requests are archived, and an engineer may reopen one.
TRANSITIONS: dict[RequestStatus, frozenset[RequestStatus]] = {
    S.NEW: frozenset({S.IN_PROGRESS}),
    S.IN_PROGRESS: frozenset({S.AWAITING_INFO, S.PROCESSED}),
    S.AWAITING_INFO: frozenset({S.IN_PROGRESS, S.PROCESSED}),
    S.PROCESSED: frozenset({S.IN_PROGRESS}),  # reopen
}

# The labels live with the values in hotline.vocabulary; these mappings are kept for
# the modules that read them (prompts, mail, the command line).
STATUS_LABELS = labels(RequestStatus)
KIND_LABELS = labels(RequestKind)
CHANNEL_LABELS = labels(Channel)


# Stems of Russian words that point at a request kind (a voicemail's transcript, an
# e-mail); the kind with most hits wins, a tie the more urgent. An engineer confirms it.
KIND_KEYWORDS: dict[RequestKind, tuple[str, ...]] = {
    RequestKind.INCIDENT: (
        "инцидент", "не работа", "сломал", "слома", "авари", "останов", "встал", "стоит", "сбой", "ошибк",
        "упал", "завис", "не читает", "не распозна", "не видит", "отказ", "срочно", "простой",
        "не включа", "не запуска", "перестал",
    ),
    RequestKind.PROBLEM: (
        "проблем", "постоянно", "регулярно", "опять", "снова", "периодически", "каждый день",
        "повторя", "иногда", "время от времени", "причин",
    ),
    RequestKind.SERVICE: (
        "настро", "установ", "обнов", "замен", "добав", "подключ", "консультац", "обучен",
        "доступ", "обслуживан", "перенастро", "пароль", "учетн", "лиценз", "калибров", "прошу",
        "нужно сделать", "планов",
    ),
}  # fmt: skip


def suggest_kind(text: str) -> RequestKind | None:
    """The request kind Russian keywords in `text` point at, None if none do."""
    # Words after quotes, brackets or a colon count too: «Не работает», (ошибка).
    folded = " " + re.sub(r"[\W_]+", " ", text.lower().replace("ё", "е")) + " "
    scores = {kind: sum(folded.count(" " + stem) for stem in stems) for kind, stems in KIND_KEYWORDS.items()}
    best = max(scores.values())
    if best == 0:
        return None
    return next(kind for kind in KIND_KEYWORDS if scores[kind] == best)  # ties: incident first


def parse_kind(text: str) -> RequestKind:
    """A request kind from its code ('incident', 'problem', 'service_request')."""
    try:
        return RequestKind(text)
    except ValueError:
        choices = ", ".join(k.value for k in RequestKind)
        raise UserError(f"unknown request kind {text!r}; choose one of: {choices}") from None


def parse_status(text: str) -> RequestStatus:
    """A request status from its code ('new', 'in_progress', ...)."""
    try:
        return RequestStatus(text)
    except ValueError:
        choices = ", ".join(s.value for s in RequestStatus)
        raise UserError(f"unknown status {text!r}; choose one of: {choices}") from None


def allocate_number(session: Session) -> str:
    """The next request number, unique and increasing, also across processes.

    One UPDATE … RETURNING on a counter row: PostgreSQL serialises it with the row
    lock, SQLite with the write lock of the transaction (BEGIN IMMEDIATE, hotline.db).
    The counter commits or rolls back with the request, so no number is ever given
    to two requests and none is skipped.
    """
    value = session.execute(
        update(Counter)
        .where(Counter.name == "request")
        .values(value=Counter.value + 1)
        .returning(Counter.value)
    ).scalar_one()
    return make_request_number(value)


def issued_number_length(session: Session | Connection) -> int | None:
    """How many digits the request numbers issued now have (those of the highest one);
    None before the first. Shorter, older numbers may exist too, never longer ones."""
    value = session.execute(select(Counter.value).where(Counter.name == "request")).scalar()
    return len(make_request_number(value)) if value is not None and value >= FIRST_SEQUENCE else None


def open_request(
    session: Session,
    *,
    kind: RequestKind | str,
    channel: Channel | str,
    actor: str,
    subject: str = "",
    description: str = "",
    phone: str | None = None,
    email: str | None = None,
    name: str | None = None,
    organisation: str | None = None,
    kind_confirmed: bool = True,
) -> Request:
    """Register a new request with a fresh number and a 'created' history entry."""
    kind = parse_kind(str(kind))
    channel = Channel(str(channel))
    request = Request(
        number=allocate_number(session),
        kind=kind,
        kind_confirmed=kind_confirmed,
        channel=channel,
        status=S.NEW,
        # The last guard of the columns, whatever channel the values came by.
        subject=clean_line(subject, 300),
        description=clean_text(description),
        contact_phone=stored_phone(phone),
        contact_email=clean_line(email, 254) or None,
        contact_name=clean_line(name, 200) or None,
        organisation=clean_line(organisation, 200) or None,
    )
    session.add(request)
    session.flush()
    _record(
        session,
        request,
        actor,
        HistoryAction.CREATED,
        text=f"{KIND_LABELS[kind]}, канал: {CHANNEL_LABELS[channel]}",
        to_status=S.NEW,
    )
    return request


def get_request(session: Session, number_text: str, *, for_update: bool = False) -> Request:
    """The request with this number; InvalidRequestNumber or UnknownRequest otherwise."""
    number = parse_request_number(number_text)
    query = select(Request).where(Request.number == number)
    if for_update:
        query = query.with_for_update()
    request = session.scalars(query).one_or_none()
    if request is None:
        raise UnknownRequest(f"заявка {number} не найдена")
    return request


def change_status(
    session: Session,
    request: Request,
    to_status: RequestStatus | str,
    *,
    actor: str,
    note: str = "",
    action: str = HistoryAction.STATUS,
) -> RequestEvent:
    """Move a request along the lifecycle, or raise IllegalTransition and change nothing."""
    target = parse_status(str(to_status))
    current = RequestStatus(request.status)
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none"
        raise IllegalTransition(
            f"request {request.number}: {current.value} → {target.value} is not allowed "
            f"(from {current.value}: {allowed})"
        )
    now = utcnow()
    request.status = target
    request.status_changed_at = now
    request.updated_at = now
    # The contract: a processed request goes to the archive; reopening takes it out.
    request.archived_at = now if target is S.PROCESSED else None
    if target is not S.AWAITING_INFO:
        request.clarification_question = None  # the question is answered or dropped
    if request.first_response_at is None and actor_is_engineer(actor):
        request.first_response_at = now
    return _record(session, request, actor, action, text=note, from_status=current, to_status=target)


def add_note(session: Session, request: Request, *, actor: str, text: str) -> RequestEvent:
    """An engineer's note in the request's history."""
    text = clean_text(text).strip()  # control characters alone are an empty note
    if not text:
        raise UserError("the note is empty")
    if request.first_response_at is None and actor_is_engineer(actor):
        request.first_response_at = utcnow()
    request.updated_at = utcnow()
    return _record(session, request, actor, HistoryAction.NOTE, text=text)


def ask_clarification(session: Session, request: Request, *, actor: str, question: str) -> RequestEvent:
    """The engineer asks the customer for more information: status awaiting_info."""
    question = clean_text(question).strip()  # read to callers and sent by SMS and e-mail
    if not question:
        raise UserError("say what information is missing")
    event = change_status(
        session,
        request,
        S.AWAITING_INFO,
        actor=actor,
        note=question,
        action=HistoryAction.CLARIFICATION_REQUESTED,
    )
    # Kept on the request while it waits: shown on the dashboard, read to the caller.
    request.clarification_question = question
    return event


def reply(session: Session, request: Request, *, actor: str, text: str) -> RequestEvent:
    """An engineer's free-text reply to the customer; the outbox sends it (hotline.notify.outbox)."""
    text = clean_text(text).strip()
    if not text:
        raise UserError("the reply is empty")
    now = utcnow()
    if request.first_response_at is None and actor_is_engineer(actor):
        request.first_response_at = now
    request.updated_at = now
    return _record(session, request, actor, HistoryAction.REPLY, text=text)


_RESUMED_BY_CUSTOMER = {
    S.AWAITING_INFO: "получена информация от заказчика",
    S.PROCESSED: "заказчик написал по обработанной заявке: она снова в работе",
}


def add_information(session: Session, request: Request, *, actor: str, text: str) -> RequestEvent:
    """The customer sent more information (a call, an e-mail); work on it resumes.

    On a processed request too: the customer answers «Если вопрос не решён, ответьте на
    это письмо» (hotline.mail.compose), and a processed request is in the archive, where
    no engineer would see the answer. It is reopened, as a help desk reopens a solved
    ticket on a reply; an engineer closes it again if it was only thanks.
    """
    event = _record(session, request, actor, HistoryAction.INFORMATION_ADDED, text=text)
    if request.status in _RESUMED_BY_CUSTOMER:
        note = _RESUMED_BY_CUSTOMER[RequestStatus(request.status)]
        change_status(session, request, S.IN_PROGRESS, actor=actor, note=note)
    request.updated_at = utcnow()
    return event


def add_caller_information(
    session: Session, request: Request, *, caller: str | None, actor: str, what: str
) -> RequestEvent:
    """Information a caller left on the phone for a request, by its number.

    Request numbers are short and easy to guess: only a caller whose number is the
    request's contact phone adds information as the customer (and the request goes
    back to work). From any other or a withheld number it is kept as a note for the
    engineer to check and accept; the status does not change.
    """
    if caller and request.contact_phone and stored_phone(caller) == stored_phone(request.contact_phone):
        return add_information(session, request, actor=actor, text=f"{what} с недостающей информацией")
    request.updated_at = utcnow()
    return _record(
        session,
        request,
        actor,
        "information_unverified",
        text=f"{what} {from_phone(caller)}, не совпадающего с контактным телефоном заявки: "
        "прослушайте и примите, если оно от заказчика",
    )


def assign(session: Session, request: Request, user: User | None, *, actor: str) -> RequestEvent:
    """Give the request to an engineer (or to nobody)."""
    request.assignee = user
    request.updated_at = utcnow()
    who = f"{user.name or user.login}" if user else "никто"
    return _record(session, request, actor, HistoryAction.ASSIGNED, text=f"исполнитель: {who}")


def confirm_kind(session: Session, request: Request, kind: RequestKind | str, *, actor: str) -> RequestEvent:
    """The engineer confirms (or corrects) the kind of a request."""
    new_kind = parse_kind(str(kind))
    old = request.kind
    request.kind = new_kind
    request.kind_confirmed = True
    request.updated_at = utcnow()
    text = f"вид: {KIND_LABELS[new_kind]}" + (
        f" (было: {KIND_LABELS[RequestKind(old)]})" if old != new_kind else ""
    )
    return _record(session, request, actor, HistoryAction.KIND, text=text)


def list_requests(
    session: Session,
    *,
    status: RequestStatus | str | None = None,
    kind: str | None = None,
    channel: str | None = None,
    assignee_id: int | None = None,
    archived: bool | None = None,
    search: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[Request]:
    """Requests, newest first, filtered."""
    query = select(Request).order_by(Request.created_at.desc(), Request.id.desc())
    if status:
        query = query.where(Request.status == parse_status(str(status)))
    if kind:
        query = query.where(Request.kind == parse_kind(kind))
    if channel:
        query = query.where(Request.channel == channel)
    if assignee_id is not None:
        query = query.where(Request.assignee_id == assignee_id)
    if archived is not None:
        query = query.where(Request.archived_at.is_not(None) if archived else Request.archived_at.is_(None))
    if search:
        like = f"%{search.strip()}%"
        query = query.where(
            or_(
                Request.number == search.strip(),
                Request.contact_phone.like(like),
                Request.contact_email.like(like),
                func.lower(Request.subject).like(like.lower()),
                func.lower(Request.description).like(like.lower()),
            )
        )
    return session.scalars(query.limit(limit).offset(offset)).all()


def attach_file(
    session: Session,
    data_dir: Path,
    request: Request,
    *,
    actor: str,
    source: IO[bytes] | bytes,
    filename: str,
    content_type: str,
    origin: str,
    external_id: str | None = None,
) -> Attachment:
    """A file stored with the request, and a history line naming it and its size."""
    attachment = store_attachment(
        session, data_dir, source=source, filename=filename, content_type=content_type,
        origin=origin, request_id=request.id, external_id=external_id,
    )  # fmt: skip
    text = f"{attachment.filename} ({file_size(attachment.size)})"
    _record(session, request, actor, HistoryAction.ATTACHMENT, text=text)
    return attachment


def caller_actor(phone: str | None) -> str:
    """The history's actor for a caller: `caller:<number>`, `caller:unknown` when withheld."""
    return f"caller:{phone or 'unknown'}"


def from_phone(phone: str | None) -> str:
    """«с номера +7…», or «со скрытого номера» for a withheld one."""
    return f"с номера {phone}" if phone else "со скрытого номера"


def actor_is_engineer(actor: str) -> bool:
    return actor.startswith("engineer:")


def _record(
    session: Session,
    request: Request,
    actor: str,
    action: str,
    *,
    text: str = "",
    from_status: str | None = None,
    to_status: str | None = None,
) -> RequestEvent:
    event = RequestEvent(
        request=request,
        actor=clean_line(actor, 200),
        action=action,
        text=clean_text(text),
        from_status=from_status,
        to_status=to_status,
        at=utcnow(),
    )
    session.add(event)
    return event


def record(session: Session, request: Request, *, actor: str, action: str, text: str = "") -> RequestEvent:
    """A free history entry (an attachment arrived, a transcript is ready, a call, ...)."""
    return _record(session, request, actor, action, text=text)


#: The subject of a voicemail request until its transcript gives it words.
VOICE_SUBJECT = "Голосовое сообщение"
SUBJECT_WORDS = 8
SUBJECT_CHARS = 80


def subject_from_text(text: str) -> str:
    """The first words of a transcript as a subject: «Линия 3 не читает коды после…»."""
    words = text.split()
    if not words:
        return ""
    subject = " ".join(words[:SUBJECT_WORDS])
    if len(subject) > SUBJECT_CHARS:
        subject = subject[:SUBJECT_CHARS].rsplit(" ", 1)[0] or subject[:SUBJECT_CHARS]
        words = words[: len(subject.split())]
    cut = len(words) > SUBJECT_WORDS or len(" ".join(text.split())) > len(subject)
    subject = subject[:1].upper() + subject[1:]
    return subject + "…" if cut else subject


def follow_transcript(request: Request, text: str, previous: Sequence[str] = ()) -> None:
    """A voicemail's subject follows its transcript (and its corrections), unless an engineer
    has given the request a subject of their own. `previous`: the texts it may come from."""
    derived = subject_from_text(text)
    if derived and request.subject in {VOICE_SUBJECT, "", *(subject_from_text(p) for p in previous)}:
        request.subject = derived
