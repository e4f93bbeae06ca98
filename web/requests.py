"""Requests: the list and the archive, the voicemail review queue, one request and its actions."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, selectinload
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response

from hotline import registry, reports, search
from hotline.cleaning import clean_line, clean_text, email_address
from hotline.errors import IllegalTransition, InvalidRequestNumber, UnknownRequest, UserError
from hotline.jobs import enqueue_transcription
from hotline.models import Attachment, Call, Channel, Request, RequestKind, RequestStatus, Transcript, User
from hotline.phones import parse_phone
from hotline.registry import STATUS_LABELS, TRANSITIONS
from hotline.search import RequestFilter, review_queue, review_waiting, search_requests, suggest_numbers
from hotline.transcription.pipeline import linked_requests
from hotline.transcription.transcripts import correct_transcript
from web import customer
from web.asr import asr_problem
from web.auth import me, require_login
from web.boundary import accepts_uploads, int_arg
from web.db import session, settings

bp = Blueprint("requests", __name__)
require_login(bp)

PER_PAGE = 50
#: The list's filters: any of them set, the filters stay unfolded on a phone.
FILTERS = ("status", "kind", "channel", "assignee", "sort", "q")
SORTS = {
    "": "сначала новые",
    "age": "сначала старые",
    "activity": "по последнему изменению",
    "status": "по статусу",
}


def _engineers(db: Session) -> list[User]:
    return list(db.scalars(select(User).where(User.active.is_(True)).order_by(User.name, User.login)))


def _list(archived: bool) -> str:
    args = request.args
    mine = bool(args.get("mine")) and not archived
    f = RequestFilter.from_query(args, archived=archived, me=me().user_id)
    page = int_arg(args, "page", low=1, high=100_000) or 1
    db = session()
    rows, more = search_requests(db, f, page=page, per_page=PER_PAGE)
    found = search.count_requests(db, f)
    return render_template(
        "requests/index.html",
        rows=rows,
        more=more,
        page=page,
        found=found,
        pages=max(1, -(-found // PER_PAGE)),
        filtering=any(args.get(name) for name in FILTERS),
        f=f,
        mine=mine,
        sorts=SORTS,
        archived=archived,
        engineers=_engineers(db),
        waiting=review_waiting(db) if not archived else 0,
        suggestions=suggest_numbers(db, f.text) if not rows and f.text else [],
        clocks=reports.request_clocks(db, list(rows), settings().response_targets),
    )


@bp.get("/requests")
def index() -> str:
    return _list(archived=False)


@bp.get("/archive")
def archive() -> str:
    return _list(archived=True)


@bp.get("/review")
def review() -> str:
    return render_template("requests/review.html", rows=review_queue(session()))


def _load(number: str, db: Session, *, for_update: bool = False) -> Request:
    try:
        return registry.get_request(db, number, for_update=for_update)
    except (InvalidRequestNumber, UnknownRequest):
        abort(404)


@bp.get("/requests/<number>")
def show(number: str) -> str:
    return _page(_load(number, session()))


def _page(req: Request, *, reply_draft: str = "") -> str:
    db = session()
    attachments = db.scalars(
        select(Attachment)
        .options(selectinload(Attachment.transcript))
        .where(Attachment.request_id == req.id)
        .order_by(Attachment.id)
    ).all()
    calls = db.scalars(select(Call).where(Call.request_id == req.id).order_by(Call.started_at)).all()
    current = RequestStatus(req.status)
    review_keys = any(a.is_audio for a in attachments)
    return render_template(
        "requests/show.html",
        review_keys=review_keys,
        next_voicemail=_next_voicemail(db, req) if review_keys else None,
        clock=reports.request_clocks(db, [req], settings().response_targets)[req.id],
        req=req,
        links={a.id: linked_requests(db, a.transcript) for a in attachments if a.transcript},
        audio=[a for a in attachments if a.is_audio],
        files=[a for a in attachments if not a.is_audio],
        calls=calls,
        # awaiting_info is reached by asking the customer a question (its own form).
        transitions=[
            s for s in RequestStatus if s in TRANSITIONS[current] and s is not RequestStatus.AWAITING_INFO
        ],
        engineers=_engineers(db),
        callback_enabled=bool(settings().ami_url),
        my_extension=db.get_one(User, me().user_id).extension,
        reach=customer.reach(settings(), req),
        reply_draft=reply_draft,
        phone_will_hear=customer.phone_will_hear(req),
        notifications=customer.notifications(db, req),
        asr_problem=asr_problem(settings()) if attachments else None,
    )


def _next_voicemail(db: Session, req: Request) -> Request | None:
    """The voicemail to review after this one: the next oldest in the queue, else the oldest."""
    queue = select(Request).where(
        Request.channel == Channel.PHONE, Request.status == RequestStatus.NEW, Request.id != req.id
    )
    later = or_(
        Request.created_at > req.created_at, and_(Request.created_at == req.created_at, Request.id > req.id)
    )
    oldest_first = (Request.created_at.asc(), Request.id.asc())
    return (
        db.scalars(queue.where(later).order_by(*oldest_first).limit(1)).first()
        or db.scalars(queue.order_by(*oldest_first).limit(1)).first()
    )


def _act(number: str, action: Callable[[Session, Request], str | None]) -> Response:
    """Run one action on a request in this request's transaction, then back to its page."""
    db = session()
    req = _load(number, db, for_update=True)
    try:
        message = action(db, req)
    except IllegalTransition:
        db.rollback()
        req = _load(number, db)
        current = RequestStatus(req.status)
        allowed = ", ".join(f"«{STATUS_LABELS[s]}»" for s in TRANSITIONS[current])
        flash(
            f"Этот переход не разрешён: заявка сейчас в статусе «{STATUS_LABELS[current]}». "
            f"Можно перевести в: {allowed}.",
            "error",
        )
        return redirect(url_for(".show", number=number))
    except UserError as exc:
        db.rollback()
        flash(str(exc)[:1].upper() + str(exc)[1:] + ".", "error")
        return redirect(url_for(".show", number=number))
    db.commit()
    if message:
        flash(message, "ok")
    return redirect(url_for(".show", number=number))


def _form(name: str, limit: int = 10000) -> str:
    """A form field as it is stored: cleaned (hotline.cleaning), so that control
    characters alone are the page's «пусто», not the registry's own refusal."""
    return clean_text(request.form.get(name, "")).strip()[:limit]


MAX_FILES = 20  # in one form; the body as a whole is held to HOTLINE_ATTACHMENT_MAX_BYTES
#: The new-request form's fields, and what each may hold.
ENTRY_FIELDS = {"kind": 20, "subject": 300, "description": 10000, "name": 200, "organisation": 200,
                "phone": 60, "email": 254}  # fmt: skip


@bp.get("/requests/new")
def new() -> str:
    """An engineer enters a request taken by other means (their own phone, a visit, a
    letter): channel «вручную» (web), with the customer's contacts and files."""
    return _entry_page(dict.fromkeys(ENTRY_FIELDS, ""))


def _entry_page(values: dict[str, str]) -> str:
    return render_template("requests/new.html", values=values, limit=settings().attachment_max_bytes)


@bp.post("/requests/new")
@accepts_uploads
def create() -> Response | tuple[str, int]:
    values = {name: _form(name, limit) for name, limit in ENTRY_FIELDS.items()}
    phone = parse_phone(values["phone"]) if values["phone"] else None
    email = email_address(values["email"])
    files = _uploads()
    problems = [
        problem
        for problem, wrong in (
            ("Выберите вид заявки.", values["kind"] not in set(RequestKind)),
            ("Опишите, что случилось.", not values["description"]),
            ("Телефон не распознан: наберите его полностью, например +7 343 567-45-30.",
             bool(values["phone"]) and (phone is None or not phone.is_number)),
            ("Адрес e-mail не распознан.", bool(values["email"]) and email is None),
            (f"Не больше {MAX_FILES} файлов за раз.", len(files) > MAX_FILES),
        )
        if wrong
    ]  # fmt: skip
    if problems:
        for problem in problems:
            flash(problem, "error")
        if files:
            flash("Файлы не сохранены: выберите их снова.", "warn")
        return _entry_page(values), 400
    db = session()
    req = registry.open_request(
        db,
        kind=values["kind"],
        channel=Channel.WEB,
        actor=me().actor,
        subject=values["subject"] or values["description"].splitlines()[0][:120],
        description=values["description"],
        phone=phone.stored if phone else None,
        email=email,
        name=values["name"] or None,
        organisation=values["organisation"] or None,
    )
    audio = _store_uploads(db, req, files)
    number = req.number
    db.commit()
    _transcribe(audio)
    flash(f"Заявка {number} зарегистрирована.", "ok")
    return redirect(url_for(".show", number=number))


@bp.post("/requests/<number>/files")
@accepts_uploads
def add_files(number: str) -> Response:
    """Files for a request (a log, a screenshot, an HTML packet brought on a USB stick)."""
    audio: list[int] = []

    files = _uploads()

    def act(db: Session, req: Request) -> str:
        if not files:
            raise UserError("выберите файлы")
        if len(files) > MAX_FILES:
            raise UserError(f"не больше {MAX_FILES} файлов за раз")
        audio.extend(_store_uploads(db, req, files))
        return f"Вложено файлов: {len(files)}."

    response = _act(number, act)
    _transcribe(audio)
    return response


def _uploads() -> list[FileStorage]:
    """The form's files, those chosen (an empty file input sends a part with no name)."""
    return [f for f in request.files.getlist("files") if f.filename]


def _store_uploads(db: Session, req: Request, files: list[FileStorage]) -> list[int]:
    """Each uploaded file into the data dir and the request's history; the ids of audio
    files, to be transcribed once committed. The type comes from the file's name, not
    from what the browser declared."""
    audio = []
    for upload in files:
        name = clean_line(upload.filename, 300) or "file"
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        attachment = registry.attach_file(
            db, settings().data_dir, req, actor=me().actor, source=upload.stream, filename=name,
            content_type=content_type, origin="web",
        )  # fmt: skip
        if attachment.is_audio:
            audio.append(attachment.id)
    return audio


def _transcribe(attachment_ids: list[int]) -> None:
    for attachment_id in attachment_ids:
        enqueue_transcription(settings(), attachment_id)  # a queue that is down: one log line


@bp.post("/requests/<number>/status")
def change_status(number: str) -> Response:
    target = _form("status", 20)

    def act(db: Session, req: Request) -> str:
        if target not in set(RequestStatus):
            raise UserError("неизвестный статус")
        if target == RequestStatus.AWAITING_INFO:
            raise UserError("чтобы ждать информации от заказчика, задайте ему вопрос: «Запросить уточнение»")
        # Every transition keeps why (DESIGN): where it is not plain from the step itself,
        # the engineer says it. What was done goes to the customer with «обработана».
        note = _form("note")
        unexplained = not note and target in TRANSITIONS[RequestStatus(req.status)]  # else: not allowed
        if unexplained and target == RequestStatus.PROCESSED:
            raise UserError("напишите в комментарии, что сделано: он уйдёт заказчику вместе с уведомлением")
        if unexplained and req.status == RequestStatus.PROCESSED:
            raise UserError("напишите в комментарии, почему заявка открывается снова")
        registry.change_status(db, req, target, actor=me().actor, note=note)
        return f"Статус: {STATUS_LABELS[RequestStatus(target)]}."

    return _act(number, act)


@bp.post("/requests/<number>/note")
def add_note(number: str) -> Response:
    def act(db: Session, req: Request) -> str:
        if not _form("text"):
            raise UserError("заметка пуста")
        registry.add_note(db, req, actor=me().actor, text=_form("text"))
        return "Заметка добавлена."

    return _act(number, act)


@bp.post("/requests/<number>/clarify")
def clarify(number: str) -> Response:
    def act(db: Session, req: Request) -> str | None:
        question = _form("question")
        if not question:
            raise UserError("напишите, какой информации не хватает")
        if req.status == RequestStatus.NEW:
            # Reading a voicemail and asking the caller at once is the usual case;
            # the lifecycle wants the request taken into work first, so do both.
            registry.change_status(db, req, RequestStatus.IN_PROGRESS, actor=me().actor)
        registry.ask_clarification(db, req, actor=me().actor, question=question)
        reach = customer.reach(settings(), req)
        if reach.possible:
            return f"Вопрос сохранён в заявке и будет отправлен заказчику {reach.how}."
        flash("Вопрос сохранён в заявке, но заказчику не отправлен.", "warn")  # why: in «Ответить заказчику»
        return None

    return _act(number, act)


@bp.post("/requests/<number>/reply")
def reply(number: str) -> Response | tuple[str, int]:
    """The engineer's own words to the customer, by e-mail or SMS (the outbox sends them)."""
    text = _form("text", 5000)
    req = _load(number, session())
    reach = customer.reach(settings(), req)
    problem = (
        "Напишите текст ответа."
        if not text
        else None
        if reach.possible
        else "Ответ не отправлен: заказчику отсюда не написать."
    )
    if problem:
        # The page again with the text in the form: nothing typed is lost.
        flash(problem, "error")
        return _page(req, reply_draft=text), 400

    def act(db: Session, req: Request) -> str:
        registry.reply(db, req, actor=me().actor, text=text)
        return f"Ответ сохранён в истории и будет отправлен заказчику {reach.how}."

    return _act(number, act)


@bp.post("/requests/<number>/assign")
def assign(number: str) -> Response:
    choice = _form("user_id", 20)

    def act(db: Session, req: Request) -> str:
        user_id = int_arg({"user_id": choice}, "user_id")  # a huge id is "no such engineer", not a 500
        user = db.get(User, user_id) if user_id is not None else None
        if choice and (user is None or not user.active):
            raise UserError("такого инженера нет")
        registry.assign(db, req, user, actor=me().actor)
        return f"Исполнитель: {user.name or user.login}." if user else "Исполнитель снят."

    return _act(number, act)


@bp.post("/requests/<number>/kind")
def confirm_kind(number: str) -> Response:
    def act(db: Session, req: Request) -> str:
        if _form("kind", 20) not in set(RequestKind):
            raise UserError("неизвестный вид заявки")
        registry.confirm_kind(db, req, _form("kind", 20), actor=me().actor)
        return "Вид заявки подтверждён."

    return _act(number, act)


@bp.post("/requests/<number>/transcripts/<int:attachment_id>")
def correct(number: str, attachment_id: int) -> Response:
    def act(db: Session, req: Request) -> str:
        transcript = db.scalars(
            select(Transcript)
            .join(Attachment)
            .where(Transcript.attachment_id == attachment_id, Attachment.request_id == req.id)
        ).one_or_none()
        if transcript is None:
            abort(404)
        correct_transcript(db, transcript, _form("text"), login=me().login)
        return "Исправленная расшифровка сохранена."

    return _act(number, act)


@bp.post("/requests/<number>/callback")
def callback(number: str) -> Response:
    """Queue a call-back: the engineer's phone rings, then the customer's (AMI Originate)."""
    from ivr.asterisk.callback import queue_call_back

    config = settings()
    if not config.ami_url:
        abort(404)
    extension = _form("extension", 80)
    try:
        queue_call_back(config, session(), number, extension, actor=me().actor)
    except (InvalidRequestNumber, UnknownRequest):
        abort(404)
    except UserError as exc:
        flash(str(exc)[:1].upper() + str(exc)[1:] + ".", "error")
        return redirect(url_for(".show", number=number))
    db = session()
    user = db.get_one(User, me().user_id)
    if user.extension != extension:
        user.extension = extension  # remembered for the next call-back
        db.commit()
    flash(f"Звоним на {extension}; когда ответите, Asterisk наберёт заказчика.", "ok")
    return redirect(url_for(".show", number=number))
