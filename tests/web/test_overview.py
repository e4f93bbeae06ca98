"""The overview page and the figures behind it."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hotline import calllog, registry, reports
from hotline.models import Attachment, TranscriptionState

TZ = ZoneInfo("Asia/Yekaterinburg")


def test_figures(db):
    now = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)  # 17:00 in Yekaterinburg
    with db.session() as s:
        for i, hours_ago in enumerate([1, 2, 26, 24 * 40]):
            call = calllog.start_call(
                s, backend="twilio", backend_call_id=f"CA{i}", started_at=now - dt.timedelta(hours=hours_ago)
            )
            calllog.end_call(s, call, outcome="abandoned" if i else "request_created")
        for minutes in (10, 30, 50):
            req = registry.open_request(s, kind="incident", channel="phone", actor="caller:x")
            req.created_at = now - dt.timedelta(hours=5)
            req.first_response_at = req.created_at + dt.timedelta(minutes=minutes)
        s.add(
            Attachment(
                path="a",
                filename="a.wav",
                content_type="audio/wav",
                size=1,
                sha256="0",
                source="phone",
                transcription_state=TranscriptionState.PENDING,
                created_at=now,
            )
        )
        s.add(
            Attachment(
                path="b",
                filename="b.wav",
                content_type="audio/wav",
                size=1,
                sha256="1",
                source="phone",
                transcription_state=TranscriptionState.FAILED,
                created_at=now,
            )
        )
        o = reports.overview(s, TZ, days=30, now=now)
    assert len(o.days) == 30 and o.days[-1] == (dt.date(2026, 11, 24), 2) and o.days[-2][1] == 1
    assert (
        sum(o.hours) == 3 and o.hours[16] == 1 and o.hours[15] == 2
    )  # local hours (17:00 − 1 h, − 2 h, − 26 h)
    assert dict(o.outcomes) == {"abandoned": 2, "request_created": 1}
    assert o.by_status["new"] == 3 and o.review_waiting == 3
    assert o.median_first_response == dt.timedelta(minutes=30) and o.responded == 3
    assert o.backlog == {"pending": 1, "failed": 1} and o.oldest_pending == now


def test_overview_page(engineer, voicemail):
    page = engineer.get("/").get_data(as_text=True)
    assert "Звонки по дням" in page and '<svg class="chart"' in page
    assert "голосовая заявка ждёт разбора" in page and "голосовых заявок" not in page
    assert page.count("в очереди расшифровки") == 1 and "0 записей в очереди" not in page
    assert "<b>0</b><span>записей в очереди расшифровки" in page
    assert "оставил заявку" in page
    assert "екатеринбургское время (UTC+5)" in page and "Asia/Yekaterinburg" not in page
