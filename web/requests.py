"""Requests: the list and the archive, the voicemail review queue, one request and its actions."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from werkzeug.wrappers import Response

from hotline import registry
from hotline.errors import IllegalTransition, InvalidRequestNumber, UnknownRequest, UserError
from hotline.models import Attachment, Call, Request, RequestKind, RequestStatus, Transcript, User
from hotline.registry import STATUS_LABELS, TRANSITIONS
from hotline.search import RequestFilter, review_queue, review_waiting, search_requests, suggest_numbers
from hotline.transcription.pipeline import linked_requests
from hotline.transcription.transcripts import correct_transcript
from web.auth import me, require_login
from web.db import session, settings

bp = Blueprint("requests", __name__)
require_login(bp)

PER_PAGE = 50


def _engineers(db: Session) -> list[User]:
    return list(db.scalars(select(User).where(User.active.is_(True)).order_by(User.name, User.login)))


def _list(archived: bool) -> str:
    args = request.args
    assignee = args.get("assignee", "")
    f = RequestFilter(
        status=args.get("status", "") if args.get("status") in set(RequestStatus) else "",
        kind=args.get("kind", "")[:20],
        channel=args.get("channel", "")[:10],
        assignee_id=int(assignee) if assignee.isdigit() else None,
        archived=archived,
        text=args.get("q", "")[:100],
    )
    page = int(args["page"]) if args.get("page", "").isdigit() and int(args["page"]) > 0 else 1
    db = session()
    rows, more = search_requests(db, f, page=page, per_page=PER_PAGE)
    return render_template(
        "requests/index.html",
        rows=rows,
        more=more,
        page=page,
        f=f,
        archived=archived,
        engineers=_engineers(db),
        waiting=review_waiting(db) if not archived else 0,
        suggestions=suggest_numbers(db, f.text) if not rows and f.text else [],
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
    db = session()
    req = _load(number, db)
    attachments = db.scalars(
        select(Attachment)
        .options(selectinload(Attachment.transcript))
        .where(Attachment.request_id == req.id)
        .order_by(Attachment.id)
    ).all()
    calls = db.scalars(select(Call).where(Call.request_id == req.id).order_by(Call.started_at)).all()
    current = RequestStatus(req.status)
    return render_template(
        "requests/show.html",
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
    return request.form.get(name, "").strip()[:limit]


@bp.post("/requests/<number>/status")
def change_status(number: str) -> Response:
    target = _form("status", 20)

    def act(db: Session, req: Request) -> str:
        if target not in set(RequestStatus):
            raise UserError("неизвестный статус")
        if target == RequestStatus.AWAITING_INFO:
            raise UserError("чтобы ждать информации от заказчика, задайте ему вопрос: «Запросить уточнение»")
        registry.change_status(db, req, target, actor=me().actor, note=_form("note"))
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
    def act(db: Session, req: Request) -> str:
        question = _form("question")
        if not question:
            raise UserError("напишите, какой информации не хватает")
        if req.status == RequestStatus.NEW:
            # Reading a voicemail and asking the caller at once is the usual case;
            # the lifecycle wants the request taken into work first, so do both.
            registry.change_status(db, req, RequestStatus.IN_PROGRESS, actor=me().actor)
        registry.ask_clarification(db, req, actor=me().actor, question=question)
        return "Уточнение запрошено: заказчик получит уведомление."

    return _act(number, act)


@bp.post("/requests/<number>/assign")
def assign(number: str) -> Response:
    choice = _form("user_id", 20)

    def act(db: Session, req: Request) -> str:
        user = db.get(User, int(choice)) if choice.isdigit() else None
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
    """Ring the engineer's phone, then the customer's (Asterisk AMI Originate)."""
    from ivr.asterisk.callback import start_call_back

    config = settings()
    if not config.ami_url:
        abort(404)
    extension = _form("extension", 80)
    # End this request's transaction first: on SQLite it holds the write lock that the
    # call-back's own sessions (checks now, history later) need.
    session().commit()
    try:
        start_call_back(config, current_app.extensions["hotline.db"], number, extension, actor=me().actor)
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
