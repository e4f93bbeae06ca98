"""Live pages without a reload: a small JSON the pages poll (static/app.js).

Polling rather than server-sent events: `hotline serve` runs sync gunicorn workers,
and an SSE stream would hold a worker per open tab for as long as it stays open. A
poll every few seconds is a few indexed queries, answered in milliseconds.

`GET /live?scope=…` answers `{"waiting": n, "newest": {"id": …, "number": …} | null,
"stamp": "…"}`: the voicemails waiting for review (the tab title's count, the browser
notification) and a stamp of what the page shows; when the stamp changes, the page
fetches itself and swaps its live regions (`data-live-region`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Blueprint, request, url_for
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from hotline.db import DatabaseUnavailable
from hotline.errors import InvalidRequestNumber
from hotline.models import Attachment, Notification, Request, RequestEvent
from hotline.numbers import parse_request_number
from hotline.vocabulary import Channel, RequestStatus
from web.auth import require_login
from web.db import session

bp = Blueprint("live", __name__)
require_login(bp)


def _stamp(*parts: Any) -> str:
    return hashlib.blake2s(repr(parts).encode(), digest_size=8).hexdigest()


def _waiting(db: Session) -> tuple[int, Request | None]:
    review = (Request.channel == Channel.PHONE, Request.status == RequestStatus.NEW)
    count = db.scalar(select(func.count(Request.id)).where(*review)) or 0
    newest = db.scalars(select(Request).where(*review).order_by(Request.id.desc()).limit(1)).first()
    return count, newest


def _everything(db: Session) -> tuple[Any, ...]:
    """What any list of requests shows: a new request, or a new line in any history (a
    status, an assignee, a transcript ready or corrected: each writes one)."""
    return (
        db.scalar(select(func.max(Request.id))),
        db.scalar(select(func.max(RequestEvent.id))),
    )


def _one(db: Session, number: str) -> tuple[Any, ...]:
    """What one request's page shows."""
    try:
        number = parse_request_number(number)
    except InvalidRequestNumber:
        return ()
    req = db.scalars(select(Request).where(Request.number == number)).one_or_none()
    if req is None:
        return ()
    return (
        req.status,
        req.updated_at,
        db.scalar(select(func.max(RequestEvent.id)).where(RequestEvent.request_id == req.id)),
        tuple(
            db.execute(
                select(Attachment.id, Attachment.transcription_state).where(Attachment.request_id == req.id)
            ).all()
        ),
        tuple(
            db.execute(
                select(Notification.id, Notification.state, Notification.attempts).where(
                    Notification.request_id == req.id
                )
            ).all()
        ),
    )


SCOPES = {
    "requests.review": "review",
    "requests.index": "requests",
    "requests.archive": "requests",
    "requests.show": "request",
}


def snapshot(db: Session, scope: str, number: str = "") -> dict[str, Any]:
    """The waiting voicemails and the stamp of what a page of `scope` shows."""
    count, newest = _waiting(db)
    if scope == "request":
        parts: tuple[Any, ...] = _one(db, number)
    elif scope in ("review", "requests"):
        parts = _everything(db)
    else:
        parts = ()
    return {
        "waiting": count,
        "newest": {"id": newest.id, "number": newest.number} if newest else None,
        "stamp": _stamp(count, newest.id if newest else None, *parts),
    }


@bp.get("/live")
def live() -> tuple[dict[str, Any], int, dict[str, str]]:
    body = snapshot(session(), request.args.get("scope", "")[:20], request.args.get("number", "")[:20])
    return body, 200, {"Cache-Control": "no-store"}


def page_attributes() -> dict[str, Any]:
    """`data-live-*` of the page's <body>: its scope, first stamp and the poll interval."""
    from flask import current_app

    from web.auth import me

    if not me().is_authenticated or request.endpoint is None:
        return {}
    scope = SCOPES.get(request.endpoint, "page")
    number = str((request.view_args or {}).get("number", "")) if scope == "request" else ""
    try:
        snap = snapshot(session(), scope, number)
    except (DatabaseUnavailable, OperationalError):
        return {}  # the error page of a database that is down: nothing to poll
    return {
        "data-live-scope": scope,
        "data-live-number": number,
        "data-live-stamp": snap["stamp"],
        "data-live-waiting": snap["waiting"],
        "data-live-newest": snap["newest"]["id"] if snap["newest"] else 0,
        "data-live-every": int(current_app.config.get("LIVE_POLL_MS", 5000)),
        "data-live-url": url_for("live.live"),
    }
