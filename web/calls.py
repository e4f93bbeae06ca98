"""The call log: every call, newest first, and one call's timeline."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from hotline import search
from hotline.models import Attachment, Call
from hotline.phones import search_digits
from hotline.search import CallFilter, search_calls
from hotline.transcription.live_store import call_live_text
from web import callstory
from web.auth import require_login
from web.boundary import int_arg
from web.db import session, settings

bp = Blueprint("calls", __name__, url_prefix="/calls")
require_login(bp)

PER_PAGE = 50
#: The log's filters: any of them set, the filters stay unfolded on a phone.
FILTERS = ("from", "to", "number", "outcome", "backend", "q")


def _int_arg(name: str) -> int | None:
    return int_arg(request.args, name)


def _hints(args: MultiDict[str, str], f: CallFilter) -> dict[str, str]:
    """What the filter could not use, by field, in words to show beside it."""
    hints = {
        name: f"Дата указана неверно: «{args[name]}»"
        for name, day in (("from", f.date_from), ("to", f.date_to))
        if args.get(name) and day is None
    }
    if f.date_from and f.date_to and f.date_from >= f.date_to:
        hints["to"] = "Дата «по» раньше даты «с»"
    if f.number and not search_digits(f.number):
        hints["number"] = f"В номере нет цифр: «{f.number}»"
    return hints


@bp.get("")
def index() -> str:
    args = request.args
    f = CallFilter.from_query(args, settings().business_hours.timezone)
    db = session()
    page = search_calls(db, f, before=_int_arg("before"), after=_int_arg("after"), limit=PER_PAGE)
    return render_template(
        "calls/index.html",
        page=page,
        f=f,
        args=args,
        found=search.count_calls(db, f),
        hints=_hints(args, f),
        filtering=any(args.get(name) for name in FILTERS),
    )


@bp.get("/<int:call_id>")
def show(call_id: int) -> str:
    db = session()
    call = db.get(Call, call_id)
    if call is None:
        abort(404)
    recordings = db.scalars(
        select(Attachment).where(Attachment.call_id == call.id).order_by(Attachment.id)
    ).all()
    lines = callstory.story(list(call.events))
    return render_template(
        "calls/show.html",
        call=call,
        recordings=recordings,
        lines=[line for line in lines if not line.technical],
        technical=[line for line in lines if line.technical],
        hangup_cause=callstory.hangup_cause(call.hangup_cause),
        backend_status=callstory.backend_status(call.backend_status),
        live_transcripts=call_live_text(
            db, call.backend, call.backend_call_id
        ),  # speech decoded during the call
    )


#: What a live transcript's state means, in the engineer's words.
STATE_LABELS = {
    "open": "идёт запись, текст дополняется",
    "complete": "расшифровано по ходу звонка",
    "broken": "звук пришёл не весь: запись расшифровывается заново",
}


@bp.get("/<int:call_id>/live")
def live_transcript(call_id: int) -> dict[str, Any]:
    """The call's live transcripts: text so far, state, when last updated."""
    db = session()
    call = db.get(Call, call_id)
    if call is None:
        abort(404)
    return {
        "call": call.id,
        "ended": call.ended_at is not None,
        "transcripts": [
            {
                "state": row.state,
                "state_label": STATE_LABELS.get(row.state, row.state),
                "text": row.text,
                "updated_at": row.updated_at.isoformat(),
            }
            for row in call_live_text(db, call.backend, call.backend_call_id)
        ],
    }
