"""What the engineer sees when something is refused: Russian error pages, the way back
after a session ends, one login message, a recording that plays when opened by itself."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import abort
from sqlalchemy import update

from hotline import storage
from hotline.models import User, UserSession
from hotline.users.throttle import PAIR
from tests.web.conftest import PASSWORD, csrf_token, login, post
from web import users as users_page
from web.db import session as db_session

PAGE = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # as a browser's address bar asks


def _next(response) -> str:
    """Where the login page the response sends to leads back."""
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    return parse_qs(location.query)["next"][0]


def _title(response) -> str:
    match = re.search(r"<h1>(.*?)</h1>", response.get_data(as_text=True))
    return match.group(1) if match else ""


@pytest.fixture
def failing(app):
    """Routes that fail with the codes no dashboard route can be made to fail with on demand."""
    app.config["PROPAGATE_EXCEPTIONS"] = False  # a 500 as gunicorn serves it, not a test traceback

    def fail(code: int) -> None:
        if code == 500:
            raise RuntimeError("boom")
        if code == 599:  # a write that fails: the view's session needs a rollback
            db_session().add(User(login="ivanov", password_hash="x"))
            db_session().flush()
        abort(code)

    app.add_url_rule("/fail/<int:code>", view_func=fail)
    return app


@pytest.mark.parametrize(
    ("code", "title"),
    [
        (400, "Неверный запрос"),
        (413, "Слишком большой объём"),
        (429, "Слишком много запросов"),
        (500, "Ошибка на сервере"),
        (502, "Ошибка на сервере"),
    ],
)
def test_every_http_error_is_a_russian_page(failing, code, title):
    response = failing.test_client().get(f"/fail/{code}")
    assert response.status_code == code
    assert response.mimetype == "text/html" and _title(response) == title
    assert "boom" not in response.get_data(as_text=True)


def test_a_failed_write_is_the_russian_page_too(failing, engineer):
    # The page is drawn for a logged-in engineer (the menu reads the database) after a
    # flush that failed: not through the view's session, which needs a rollback.
    response = engineer.get("/fail/599")
    assert response.status_code == 500 and _title(response) == "Ошибка на сервере"


def test_refusals_of_real_routes_are_russian_pages(engineer, voicemail):
    forbidden = engineer.get("/users")
    assert forbidden.status_code == 403 and _title(forbidden) == "Нет доступа"
    assert "нет прав на это действие" in forbidden.get_data(as_text=True)
    assert "Forbidden" not in forbidden.get_data(as_text=True)
    missing = engineer.get("/no-such-page")
    assert missing.status_code == 404 and _title(missing) == "Не найдено"
    for url in [f"/requests/{voicemail.number}/note", "/logout"]:
        wrong_method = engineer.get(url)
        assert wrong_method.status_code == 405 and _title(wrong_method) == "Действие не выполнено", url
        assert "Method Not Allowed" not in wrong_method.get_data(as_text=True)


def test_programs_get_their_errors_as_before(app):
    client = app.test_client()
    for url, code in [("/twilio/voice", 405), ("/twilio/prompts/nothing.wav", 404), ("/twilio/nothing", 404)]:
        response = client.get(url)
        assert response.status_code == code, url
        assert _title(response) in ("Method Not Allowed", "Not Found"), url  # Werkzeug's, not error.html
    assert client.get("/healthz").json == {"status": "ok"}


# --- a session that ends while a form is being filled in ---


def _end_sessions(app) -> None:
    with app.extensions["hotline.db"].session() as s:
        s.execute(update(UserSession).values(expires_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)))


def test_a_form_refused_for_an_ended_session_comes_back_to_its_page(app, engineer, voicemail):
    page = f"/requests/{voicemail.number}"
    token = csrf_token(engineer, page)
    _end_sessions(app)
    refused = engineer.post(
        f"{page}/note",
        data={"text": "заметка", "csrf_token": token},
        headers={"Referer": f"http://localhost{page}?tab=history", **PAGE},
    )
    assert refused.status_code == 302
    assert _next(refused) == f"{page}?tab=history"
    answer = engineer.post(
        refused.headers["Location"],
        data={"login": "ivanov", "password": PASSWORD, "csrf_token": csrf_token(engineer)},
    )
    assert answer.headers["Location"] == f"{page}?tab=history"
    assert engineer.get(answer.headers["Location"]).status_code == 200  # not a 405


@pytest.mark.parametrize(
    "referer",
    [
        None,
        "http://evil.example/requests/1",
        "https://localhost/elsewhere",
        "http://localhost//evil.example/",
    ],
)
def test_without_our_own_referer_login_leads_to_the_form_s_page(app, engineer, voicemail, referer):
    page = f"/requests/{voicemail.number}"
    token = csrf_token(engineer, page)
    _end_sessions(app)
    headers = {"Referer": referer} if referer else {}
    for action in ["note", f"transcripts/{voicemail.attachment_id}"]:
        refused = engineer.post(f"{page}/{action}", data={"csrf_token": token}, headers=headers)
        assert _next(refused) == page, (referer, action)


def test_a_page_refused_for_an_ended_session_comes_back_to_itself(app, engineer):
    _end_sessions(app)
    refused = engineer.get("/calls?outcome=abandoned", headers=PAGE)
    assert _next(refused) == "/calls?outcome=abandoned"


def test_the_login_message_is_shown_once(app, engineer, voicemail):
    post(engineer, "/logout")
    engineer.get("/login")  # «Вы вышли.»
    # Back: the page, its recording and its poll are each refused.
    engineer.get(f"/requests/{voicemail.number}", headers={**PAGE, "Sec-Fetch-Mode": "navigate"})
    engineer.get(f"/files/{voicemail.attachment_id}", headers={"Accept": "*/*", "Sec-Fetch-Mode": "no-cors"})
    engineer.get("/live?scope=request", headers={"Accept": "*/*"})
    engineer.get("/requests", headers=PAGE)
    page = engineer.get("/login").get_data(as_text=True)
    assert page.count("Войдите, чтобы продолжить.") == 1


def test_a_script_s_refused_request_adds_no_message(app, accounts):
    client = app.test_client()
    assert client.get("/live", headers={"Accept": "*/*", "Sec-Fetch-Mode": "cors"}).status_code == 302
    assert "Войдите, чтобы продолжить." not in client.get("/login").get_data(as_text=True)


# --- files ---


def test_a_recording_opened_by_itself_may_play(engineer, voicemail):
    with engineer.get(f"/files/{voicemail.attachment_id}") as response:
        policy = [part.strip() for part in response.headers["Content-Security-Policy"].split(";")]
    assert policy == ["default-src 'none'", "media-src 'self'", "sandbox allow-same-origin"]


def test_other_inline_files_stay_locked_down(engineer, app, settings, voicemail):
    with app.extensions["hotline.db"].session() as s:
        att_id = storage.store_attachment(
            s,
            settings.data_dir,
            source=b"\x89PNG\r\n\x1a\n" + b"\0" * 32,
            filename="screen.png",
            content_type="image/png",
            origin="email",
            request_id=voicemail.request_id,
        ).id
    with engineer.get(f"/files/{att_id}") as response:
        assert response.headers["Content-Disposition"].startswith("inline")
        assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"


# --- the users page ---


def _flash(response) -> str:
    return response.get_data(as_text=True).split('class="flash ok" role="status">')[1].split("<")[0]


def test_each_change_of_an_account_says_what_was_done(app, admin, accounts):
    url = f"/users/{accounts['engineer']}"
    said = [
        _flash(post(admin, url, data, follow_redirects=True))
        for data in [
            {"role": "admin"},
            {"role": "engineer"},
            {"active": "0"},
            {"active": "1"},
            {"password": "совсем-новый-пароль"},
            {"unlock": "1"},
        ]
    ]
    assert said == [
        "Пользователь ivanov теперь администратор.",
        "Пользователь ivanov теперь инженер.",
        "Учётная запись ivanov отключена, её открытые сеансы завершены.",
        "Учётная запись ivanov включена.",
        "Пароль пользователя ivanov сменён, его открытые сеансы завершены.",
        "Вход для ivanov разблокирован.",
    ]


def test_a_disabled_account_is_marked_on_the_users_page(app, admin, accounts):
    post(admin, f"/users/{accounts['engineer']}", {"active": "0"})
    row = admin.get("/users").get_data(as_text=True).split('class="mono">ivanov</td>')[1].split("</tr>")[0]
    assert '<span class="badge">отключён</span>' in row and "Включить" in row
    # The login page does not say so (nobody learns which logins exist) …
    assert "Неверный логин или пароль." in login(app.test_client(), "ivanov").get_data(as_text=True)


def test_a_locked_login_shows_until_when(app, admin, accounts):
    client = app.test_client()
    for _ in range(PAIR.limit):
        login(client, "ivanov", "неверный пароль")
    page = admin.get("/users").get_data(as_text=True)
    assert re.search(r"вход заблокирован до \d\d:\d\d<", page)


def test_a_lock_ending_another_day_shows_the_date(app):
    utc = dt.UTC
    with app.test_request_context():  # the plant is in Yekaterinburg (UTC+5) unless told
        assert app.extensions["hotline.settings"].business_hours.timezone.key == "Asia/Yekaterinburg"
        now = dt.datetime(2024, 12, 7, 18, 50, tzinfo=utc)  # 23:50 there
        assert users_page._until(dt.datetime(2024, 12, 7, 18, 55, tzinfo=utc), now) == "23:55"
        assert users_page._until(dt.datetime(2024, 12, 7, 19, 0, tzinfo=utc), now) == "8 декабря, 00:00"
