"""CSV export of the filtered request list and call log, for Excel.

The file is what Excel opens with a double click in a Russian locale: UTF-8 with a
byte order mark (without it Excel reads Cyrillic as cp1251), `;` between cells (the
list separator where the comma is the decimal one), Russian headers and labels, local
times. A cell that starts with = + - @ (or a tab or carriage return) would be taken
for a formula, so it gets a leading apostrophe (OWASP's advice on CSV injection):
a caller's name or an e-mail subject must never run as a formula on an engineer's PC.

The same query string as the list page selects the rows (hotline.search parses it);
the rows are read in batches, each in a short transaction of its own, so a long
export never holds the SQLite write lock against calls coming in.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from flask import Blueprint, Response, current_app, request, stream_with_context, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from hotline.db import Database
from hotline.models import Call, Request
from hotline.registry import CHANNEL_LABELS, KIND_LABELS, STATUS_LABELS
from hotline.search import CallFilter, RequestFilter, matching_call_ids, matching_request_ids
from web.auth import require_login
from web.db import session, settings
from web.formatting import BACKEND_LABELS, OUTCOME_LABELS

bp = Blueprint("export", __name__, url_prefix="/export")
require_login(bp)

MAX_ROWS = 100_000  # an export larger than this is cut (a narrower filter gives the rest)
BATCH = 500
BOM = "\ufeff"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

REQUEST_HEADERS = [
    "Номер",
    "Создана",
    "Вид",
    "Статус",
    "Канал",
    "Заказчик",
    "Организация",
    "Телефон",
    "E-mail",
    "Тема",
    "Исполнитель",
    "Изменена",
    "В архиве с",
]
CALL_HEADERS = [
    "Начало",
    "Окончание",
    "Номер звонившего",
    "Имя звонившего",
    "Длительность, с",
    "Итог",
    "Заявка",
    "Линия",
]


def safe_cell(value: object) -> str:
    """A cell's text that a spreadsheet shows and never runs as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _local(moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(settings().business_hours.timezone).strftime("%d.%m.%Y %H:%M:%S")


def _csv(
    headers: Sequence[str],
    ids: Sequence[int],
    rows: Callable[[Session, Sequence[int]], Iterable[list[object]]],
) -> Iterator[bytes]:
    database: Database = current_app.extensions["hotline.db"]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(headers)
    yield (BOM + out.getvalue()).encode("utf-8")
    for start in range(0, len(ids), BATCH):
        out.seek(0)
        out.truncate()
        with database.session() as db:
            for row in rows(db, ids[start : start + BATCH]):
                writer.writerow([safe_cell(v) for v in row])
        yield out.getvalue().encode("utf-8")


def _download(name: str, body: Iterator[bytes]) -> Response:
    today = dt.datetime.now(settings().business_hours.timezone).date().isoformat()
    response = Response(stream_with_context(body), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}-{today}.csv"'
    return response


def _label(labels: Mapping[Any, str], code: str) -> str:
    """The Russian label of a stored code (the code itself if it has none)."""
    return labels.get(code, code)


def _request_rows(db: Session, ids: Sequence[int]) -> Iterable[list[object]]:
    found = {
        r.id: r
        for r in db.scalars(
            select(Request).options(selectinload(Request.assignee)).where(Request.id.in_(ids))
        )
    }
    for request_id in ids:
        if (r := found.get(request_id)) is None:
            continue  # deleted since the ids were read
        yield [
            r.number,
            _local(r.created_at),
            _label(KIND_LABELS, r.kind),
            _label(STATUS_LABELS, r.status),
            _label(CHANNEL_LABELS, r.channel),
            r.contact_name,
            r.organisation,
            r.contact_phone,
            r.contact_email,
            r.subject or r.description[:200],
            (r.assignee.name or r.assignee.login) if r.assignee else "",
            _local(r.updated_at),
            _local(r.archived_at),
        ]


def _call_rows(db: Session, ids: Sequence[int]) -> Iterable[list[object]]:
    found = {
        c.id: c for c in db.scalars(select(Call).options(selectinload(Call.request)).where(Call.id.in_(ids)))
    }
    for call_id in ids:
        if (c := found.get(call_id)) is None:
            continue
        yield [
            _local(c.started_at),
            _local(c.ended_at),
            c.from_number or "скрыт",
            c.caller_name,
            c.duration_seconds,
            OUTCOME_LABELS.get(c.outcome, c.outcome) if c.outcome else "не завершён",
            c.request.number if c.request else "",
            BACKEND_LABELS.get(c.backend, c.backend),
        ]


def _ids(find: Callable[[Session], list[int]]) -> list[int]:
    db = session()
    ids = find(db)
    db.commit()  # end the read before streaming: each batch has a transaction of its own
    return ids


@bp.get("/requests.csv")
def requests() -> Response:
    """The request list (or the archive, with archived=1) as the filters on the page select it."""
    f = RequestFilter.from_query(request.args, archived=request.args.get("archived") == "1")
    ids = _ids(lambda db: matching_request_ids(db, f, MAX_ROWS))
    return _download("archive" if f.archived else "requests", _csv(REQUEST_HEADERS, ids, _request_rows))


@bp.get("/calls.csv")
def calls() -> Response:
    """The call log as the filters on the page select it."""
    f = CallFilter.from_query(request.args, settings().business_hours.timezone)
    ids = _ids(lambda db: matching_call_ids(db, f, MAX_ROWS))
    return _download("calls", _csv(CALL_HEADERS, ids, _call_rows))


@bp.app_context_processor
def export_links() -> dict[str, object]:
    """`export_url('requests' | 'archive' | 'calls')`: the CSV of what the page shows now."""

    def export_url(what: str) -> str:
        args: dict[str, Any] = {
            k: v for k, v in request.args.items() if k not in {"page", "before", "after", "archived"}
        }
        if what == "calls":
            return url_for("export.calls", **args)
        if what == "archive":
            args["archived"] = "1"
        return url_for("export.requests", **args)

    return {"export_url": export_url}
