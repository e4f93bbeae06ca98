"""How the dashboard words things: Russian numbers, times, people, and no internal codes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event

from hotline import calllog, registry
from hotline.vocabulary import file_size as size
from tests.web.conftest import post
from web.formatting import actor, ago, history_text, percent, recognition, zone


@pytest.mark.parametrize(
    ("n", "text"),
    [(1, "1 байт"), (3, "3 байта"), (500, "500 байт"), (1840, "1,8 КБ"), (192_000, "187,5 КБ")],
)
def test_sizes_have_a_decimal_comma(n, text):
    assert size(n) == text
    assert size(5 * 1024 * 1024 + 300_000) == "5,3 МБ"


def test_percent_rounds_half_up():
    assert [percent(1, 8), percent(3, 8), percent(0.82), percent("1.00"), percent(0.145)] == [
        "13 %",
        "38 %",
        "82 %",
        "100 %",
        "15 %",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "только что"),
        (59, "только что"),
        (60, "1 минуту назад"),
        (150, "2 минуты назад"),
        (300, "5 минут назад"),
        (21 * 60, "21 минуту назад"),
        (3600, "1 час назад"),
        (2 * 3600 + 600, "2 часа назад"),
        (5 * 3600, "5 часов назад"),
        (21 * 3600, "21 час назад"),
        (2 * 86400, "2 дня назад"),
        (5 * 86400, "5 дней назад"),
    ],
)
def test_relative_times(seconds, text):
    assert ago(dt.timedelta(seconds=seconds)) == text


def test_time_zones_are_named_as_people_say_them():
    assert zone(ZoneInfo("Asia/Yekaterinburg")) == "екатеринбургское время (UTC+5)"
    assert zone(ZoneInfo("Europe/Moscow")) == "московское время (UTC+3)"
    assert zone(ZoneInfo("Asia/Kolkata")) == "время UTC+5:30"
    assert zone(ZoneInfo("UTC")) == "время UTC"
    assert zone(ZoneInfo("America/Sao_Paulo")) == "время UTC−3"


def test_recogniser_codes_read_as_words():
    assert recognition("fake", 1.0) == "демонстрационное распознавание, уверенность 100 %"
    assert recognition("vosk-model-small-ru-0.22", 0.815) == "малая русская модель, уверенность 82 %"
    assert recognition("vosk-model-xx-1.0", None) == ""
    stored = "Расшифровка готова (модель fake, средняя уверенность 1.00): «линия 3»\nУпомянуты заявки: 10569"
    assert history_text(stored) == (
        "Расшифровка готова (демонстрационное распознавание, уверенность 100 %): «линия 3»\n"
        "Упомянуты заявки: 10569"
    )
    assert history_text("Расшифровка готова (модель live): «да»") == "Расшифровка готова: «да»"


def _html(client, url: str) -> str:
    return client.get(url).get_data(as_text=True)


def test_request_page_names_people_and_recognisers(engineer, app, voicemail):
    db = app.extensions["hotline.db"]
    with db.session() as s:
        req = registry.get_request(s, voicemail.number)
        registry.record(
            s,
            req,
            actor="system",
            action="transcript",
            text="Расшифровка готова (модель fake, средняя уверенность 1.00): «линия 3»",
        )
        registry.add_note(s, req, actor="engineer:admin", text="Смотрю")
    post(engineer, f"/requests/{voicemail.number}/note", {"text": "Беру"})
    page = _html(engineer, f"/requests/{voicemail.number}")
    assert 'Распознано <span class="muted small">малая русская модель, уверенность 82 %</span>' in page
    assert "демонстрационное распознавание, уверенность 100 %" in page
    assert "модель fake" not in page and "1.00" not in page and "vosk-model" not in page
    assert "Иван Иванов" in page and "Анна Админова" in page
    assert "инженер ivanov" not in page and "инженер admin" not in page
    assert "(только что)" in page and "0 с назад" not in page  # the last answer
    assert "46,9 КБ" in page  # the recording, with a decimal comma


def test_names_are_looked_up_once_a_page(engineer, app, voicemail):
    db = app.extensions["hotline.db"]

    def user_queries(notes: int) -> int:
        with db.session() as s:
            req = registry.get_request(s, voicemail.number)
            for i in range(notes):
                registry.add_note(
                    s, req, actor="engineer:ivanov" if i % 2 else "engineer:admin", text=f"№{i}"
                )
        statements: list[str] = []

        def seen(conn, cursor, statement, *args):
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            assert engineer.get(f"/requests/{voicemail.number}").status_code == 200
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)
        return sum("FROM users" in s for s in statements)

    assert user_queries(2) == user_queries(20)


def test_email_request_says_who_chose_the_kind(engineer, app):
    with app.extensions["hotline.db"].session() as s:
        number = registry.open_request(
            s, kind="problem", channel="email", actor="email:a@b.ru", email="a@b.ru", kind_confirmed=False
        ).number
    page = _html(engineer, f"/requests/{number}")
    assert "Вид определён по тексту письма и ещё не подтверждён." in page
    assert "звонившим" not in page


def test_request_list_counts_what_it_found(engineer, app, voicemail):
    page = _html(engineer, "/requests")
    assert "Найдено: 1 заявка" in page and "страница" not in page  # one page: no pager
    with app.extensions["hotline.db"].session() as s:
        for _ in range(4):
            registry.open_request(s, kind="incident", channel="web", actor="cli", subject="Камера")
    assert "Найдено: 5 заявок" in _html(engineer, "/requests")
    assert "Найдено: 4 заявки" in _html(engineer, "/requests?channel=web")
    unconfirmed = _html(engineer, "/requests?channel=phone")
    assert "не подтверждён" in unconfirmed and 'title="вид не подтверждён"' not in unconfirmed


def test_filters_fold_unless_one_is_set(engineer, voicemail):
    assert '<details class="filter-box">' in _html(engineer, "/requests")
    assert '<details class="filter-box" open>' in _html(engineer, "/requests?kind=problem")
    assert '<details class="filter-box">' in _html(engineer, "/calls")
    assert '<details class="filter-box" open>' in _html(engineer, "/calls?outcome=abandoned")


@pytest.mark.parametrize(
    ("query", "hint"),
    [
        ("from=abc", "Дата указана неверно: «abc»"),
        ("to=31.12.2024", "Дата указана неверно: «31.12.2024»"),
        ("number=abc", "В номере нет цифр: «abc»"),
        ("from=2024-05-02&to=2024-05-01", "Дата «по» раньше даты «с»"),
    ],
)
def test_call_filters_say_what_they_cannot_use(engineer, voicemail, query, hint):
    page = _html(engineer, f"/calls?{query}")
    assert f'<span class="hint">{hint}</span>' in page and 'aria-invalid="true"' in page
    assert "hint" not in _html(engineer, "/calls?from=2024-05-01&to=2024-05-01&number=900")


def test_call_log_counts_and_call_page_says_the_number_called(engineer, app, voicemail):
    with app.extensions["hotline.db"].session() as s:
        call = calllog.start_call(
            s,
            backend="twilio",
            backend_call_id="CA" + "2" * 32,
            from_number="+79005550000",
            to_number="+73435674530",
        )
        call_id = call.id
    assert "Найдено: 2 звонка" in _html(engineer, "/calls")
    page = _html(engineer, f"/calls/{call_id}")
    assert '<dt>Куда</dt><dd class="tel">8 (343) 567-45-30</dd>' in page
    assert "<dt>Линия</dt><dd>Twilio</dd>" in page


def test_the_command_line_names_its_user():
    assert actor("cli:ivanov") == "командная строка (ivanov)"
    assert actor("cli") == "командная строка"  # rows stored before the user was kept
