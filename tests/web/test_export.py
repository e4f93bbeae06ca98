"""CSV exports of the request list and the call log: what Excel opens, nothing it would run."""

from __future__ import annotations

import csv
import datetime as dt
import io

from hotline import calllog, registry
from hotline.models import utcnow
from web.export import CALL_HEADERS, REQUEST_HEADERS, safe_cell


def _rows(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    raw = response.get_data()
    assert raw.startswith("\ufeff".encode())  # the BOM: Excel then reads UTF-8, Cyrillic included
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))


def test_safe_cell_defuses_formulas():
    for text in ["=1+1", "+7 900", "-2", "@SUM(A1)", "\t=1", "\r=1"]:
        assert safe_cell(text) == "'" + text
    assert safe_cell("Линия 3") == "Линия 3" and safe_cell(None) == "" and safe_cell(42) == "42"


def test_request_list_export_follows_the_filters(app, engineer, voicemail):
    with app.extensions["hotline.db"].session() as s:
        registry.open_request(
            s,
            kind="problem",
            channel="email",
            actor="cli",
            subject="После калибровки весов не читаются коды",
            name='=HYPERLINK("http://evil.example","жми")',
            email="@evil.example",
            organisation="ООО «Завод»",
        )
        registry.open_request(s, kind="service_request", channel="web", actor="cli", subject="Обновление")
    rows = _rows(engineer.get("/export/requests.csv"))
    assert rows[0] == REQUEST_HEADERS and len(rows) == 4
    # A word form, as on the page: «калибровка» finds «калибровки».
    rows = _rows(engineer.get("/export/requests.csv?q=калибровка&kind=problem"))
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["Вид"] == "проблема" and row["Статус"] == "новая" and row["Канал"] == "e-mail"
    assert row["Заказчик"] == '\'=HYPERLINK("http://evil.example","жми")'
    assert row["E-mail"] == "'@evil.example" and row["Организация"] == "ООО «Завод»"
    assert row["Тема"] == "После калибровки весов не читаются коды"
    assert dt.datetime.strptime(row["Создана"], "%d.%m.%Y %H:%M:%S")
    phone = dict(
        zip(rows[0], _rows(engineer.get(f"/export/requests.csv?q={voicemail.number}"))[1], strict=True)
    )
    assert phone["Телефон"] == "'+79001234567"  # a leading + would start a formula too
    assert len(_rows(engineer.get("/export/requests.csv?archived=1"))) == 1  # nothing archived yet


def test_call_log_export_follows_the_filters(app, engineer, voicemail):
    with app.extensions["hotline.db"].session() as s:
        call = calllog.start_call(s, backend="twilio", backend_call_id="CA-x", caller_name="@SUM(1+1)")
        calllog.end_call(s, call, outcome="abandoned", ended_at=utcnow())
        calllog.start_call(s, backend="twilio", backend_call_id="CA-open")
    rows = _rows(engineer.get("/export/calls.csv"))
    assert rows[0] == CALL_HEADERS and len(rows) == 4
    rows = _rows(engineer.get("/export/calls.csv?outcome=abandoned"))
    row = dict(zip(rows[0], rows[1], strict=True))
    assert len(rows) == 2 and row["Итог"] == "положил трубку" and row["Номер звонившего"] == "скрыт"
    assert row["Имя звонившего"] == "'@SUM(1+1)" and row["Линия"] == "Twilio"
    rows = _rows(engineer.get("/export/calls.csv?backend=asterisk"))
    row = dict(zip(rows[0], rows[1], strict=True))
    assert len(rows) == 2 and row["Заявка"] == voicemail.number and row["Длительность, с"] == "40"
    assert row["Итог"] == "оставил заявку"


def test_list_pages_link_to_the_export_of_what_they_show(engineer, voicemail):
    page = engineer.get("/requests?kind=incident&q=линия&page=2").get_data(as_text=True)
    assert 'href="/export/requests.csv?kind=incident&amp;q=%D0%BB%D0%B8%D0%BD%D0%B8%D1%8F"' in page
    assert 'href="/export/requests.csv?archived=1"' in engineer.get("/archive").get_data(as_text=True)
    calls = engineer.get("/calls?outcome=abandoned&before=5").get_data(as_text=True)
    assert 'href="/export/calls.csv?outcome=abandoned"' in calls and "Скачать CSV" in calls
