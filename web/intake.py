"""What did not come in: dead letters and recordings that could not be fetched (issue 12).

Inputs the hotline gave up on after its tries are kept, never dropped; this page is
where an engineer sees them (the raw message is in the data dir, dead-letters/).
"""

from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import select

from hotline.models import DeadLetter, RecordingFetch
from web.auth import require_login
from web.db import session

bp = Blueprint("intake", __name__, url_prefix="/intake")
require_login(bp)

SHOWN = 200


@bp.get("")
def index() -> str:
    db = session()
    letters = db.scalars(
        select(DeadLetter).where(DeadLetter.state != "done").order_by(DeadLetter.id.desc()).limit(SHOWN)
    ).all()
    fetches = db.scalars(
        select(RecordingFetch)
        .where(RecordingFetch.state != "done")
        .order_by(RecordingFetch.id.desc())
        .limit(SHOWN)
    ).all()
    return render_template("intake/index.html", letters=letters, fetches=fetches)
