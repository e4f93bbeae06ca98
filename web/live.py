"""The live transcript of a call in progress, for the dashboard's call page (JSON, polled)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort

from hotline.models import Call
from hotline.transcription.live_store import call_live_text
from web.auth import require_login
from web.db import session

bp = Blueprint("live", __name__, url_prefix="/calls")
require_login(bp)

#: What a live transcript's state means, in the engineer's words.
STATE_LABELS = {
    "open": "идёт запись, текст дополняется",
    "complete": "расшифровано по ходу звонка",
    "broken": "звук пришёл не весь: запись расшифровывается заново",
}


@bp.get("/<int:call_id>/live")
def live(call_id: int) -> dict[str, Any]:
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
