"""Who may see what: login, roles, CSRF, lockout, security headers."""

from __future__ import annotations

import pytest

from hotline import users
from tests.web.conftest import PASSWORD, csrf_token, login, post
from web import create_app
from web.auth import IP_FAILURES

PAGES = [
    "/",
    "/calls",
    "/calls/1",
    "/requests",
    "/archive",
    "/review",
    "/requests/10008",
    "/files/1",
    "/users",
    "/live",
    "/requests?mine=1",
]
ACTIONS = [
    "/requests/10008/status",
    "/requests/10008/note",
    "/requests/10008/clarify",
    "/requests/10008/reply",
    "/requests/10008/assign",
    "/requests/10008/kind",
    "/requests/10008/transcripts/1",
    "/users",
    "/users/1",
]


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_is_sent_to_the_login_page(app, voicemail, url):
    response = app.test_client().get(url)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("url", ACTIONS)
def test_anonymous_cannot_act(app, voicemail, url):
    client = app.test_client()
    response = client.post(url, data={"csrf_token": csrf_token(client), "status": "in_progress"})
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_health_check_needs_no_login(app):
    assert app.test_client().get("/healthz").json == {"status": "ok"}


def test_the_twilio_blueprint_needs_neither_login_nor_csrf_token(make_settings, db):
    """Twilio authenticates by signature: no login redirect and no CSRF refusal there."""
    settings = make_settings(HOTLINE_TWILIO_INSECURE_DEV="true")
    app = create_app({"TESTING": True}, settings=settings, db=db)
    response = app.test_client().post(
        "/twilio/voice", data={"CallSid": "CA1", "From": "+79001234567", "To": "+73435674530"}
    )
    assert response.status_code == 200 and b"<Response>" in response.data
    # …while any other POST without a token is refused.
    assert app.test_client().post("/login", data={"login": "x", "password": "y"}).status_code == 400


def test_engineer_sees_every_page_but_not_user_admin(engineer, voicemail):
    for url in ["/", "/calls", f"/calls/{voicemail.call_id}", "/requests", "/archive", "/review"]:
        assert engineer.get(url).status_code == 200, url
    assert engineer.get("/users").status_code == 403
    assert post(engineer, "/users", {"login": "petrov", "password": PASSWORD}).status_code == 403
    assert "Пользователи" not in engineer.get("/").get_data(as_text=True)


def test_admin_manages_users(admin, app, accounts):
    page = admin.get("/users").get_data(as_text=True)
    assert "ivanov" in page and "Новый пользователь" in page
    response = post(
        admin, "/users", {"login": "petrov", "name": "Пётр", "role": "engineer", "password": "длинный-пароль"}
    )
    assert response.status_code == 302
    weak = post(admin, "/users", {"login": "sidorov", "role": "engineer", "password": "123"})
    assert weak.status_code == 400 and "не короче" in weak.get_data(as_text=True)
    newcomer = app.test_client()
    assert login(newcomer, "petrov", "длинный-пароль").status_code == 302
    # Disable the account: the open session ends with it.
    assert post(admin, f"/users/{_id(app, 'petrov')}", {"active": "0"}).status_code == 302
    assert newcomer.get("/").status_code == 302
    # Make ivanov an admin, then reset his password: his session ends too.
    ivanov = app.test_client()
    login(ivanov, "ivanov")
    assert post(admin, f"/users/{accounts['engineer']}", {"role": "admin"}).status_code == 302
    assert ivanov.get("/users").status_code == 200
    post(admin, f"/users/{accounts['engineer']}", {"password": "совсем-новый-пароль"})
    assert ivanov.get("/").status_code == 302
    assert login(ivanov, "ivanov", "совсем-новый-пароль").status_code == 302


def test_the_last_admin_cannot_demote_or_disable_themselves(admin, accounts):
    response = post(admin, f"/users/{accounts['admin']}", {"role": "engineer"}, follow_redirects=True)
    assert "последний администратор" in response.get_data(as_text=True)
    response = post(admin, f"/users/{accounts['admin']}", {"active": "0"}, follow_redirects=True)
    assert "собственную" in response.get_data(as_text=True)
    assert admin.get("/users").status_code == 200


def _id(app, login_name: str) -> int:
    with app.extensions["hotline.db"].session() as s:
        return users.get_user(s, login_name).id


def test_csrf_token_is_required_on_every_form(engineer, voicemail):
    url = f"/requests/{voicemail.number}/status"
    refused = engineer.post(url, data={"status": "in_progress"})
    assert refused.status_code == 400 and "Форма устарела" in refused.get_data(as_text=True)
    forged = engineer.post(url, data={"status": "in_progress", "csrf_token": "forged"})
    assert forged.status_code == 400
    page = engineer.get(f"/requests/{voicemail.number}").get_data(as_text=True)
    assert "в работе" not in page.split("<h1>")[1].split("</h1>")[0]  # status unchanged
    assert post(engineer, url, {"status": "in_progress"}).status_code == 302


def test_logout_needs_post_with_token_and_ends_the_session(engineer):
    assert engineer.get("/logout").status_code == 405
    assert engineer.post("/logout").status_code == 400
    assert post(engineer, "/logout").status_code == 302
    assert engineer.get("/").status_code == 302


def test_login_redirects_only_within_the_site(app, accounts):
    client = app.test_client()
    token = csrf_token(client)
    for target, expected in [
        ("/calls?outcome=abandoned", "/calls?outcome=abandoned"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
    ]:
        client = app.test_client()
        token = csrf_token(client)
        response = client.post(
            f"/login?next={target}", data={"login": "ivanov", "password": PASSWORD, "csrf_token": token}
        )
        assert response.headers["Location"] == expected


def test_wrong_password_then_lockout_of_the_account(app, accounts):
    client = app.test_client()
    for _ in range(users.FREE_ATTEMPTS):
        response = login(client, "ivanov", "неверный пароль")
        assert response.status_code == 401
        assert "Неверный логин или пароль" in response.get_data(as_text=True)
    # Now even the right password waits until the lock expires.
    locked = login(client, "ivanov")
    assert locked.status_code == 429 and "временно заблокирована" in locked.get_data(as_text=True)
    with app.extensions["hotline.db"].session() as s:
        user = users.get_user(s, "ivanov")
        assert user.failed_logins == users.FREE_ATTEMPTS and user.locked_until is not None
        user.locked_until = None  # time passes
    assert login(client, "ivanov").status_code == 302


def test_unknown_login_fails_like_a_wrong_password(app, accounts):
    response = login(app.test_client(), "nobody", "whatever-password")
    assert response.status_code == 401 and "Неверный логин или пароль" in response.get_data(as_text=True)


def test_many_failures_from_one_address_slow_it_down(app, accounts):
    client = app.test_client()
    for i in range(IP_FAILURES):
        assert login(client, f"guess{i}", "x").status_code == 401
    blocked = login(client, "ivanov")
    assert blocked.status_code == 429 and "с этого адреса" in blocked.get_data(as_text=True)
    other = app.test_client()
    response = other.post(
        "/login",
        data={"login": "ivanov", "password": PASSWORD, "csrf_token": csrf_token(other)},
        environ_base={"REMOTE_ADDR": "10.0.0.9"},
    )
    assert response.status_code == 302


def test_security_headers(engineer, app):
    response = engineer.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"
    assert "<script>" not in response.get_data(as_text=True)  # no inline script for the CSP to block
    cookie = app.test_client().get("/login").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie  # plain HTTP here


def test_cookies_are_secure_when_served_over_https(make_settings, db):
    app = create_app(
        {"TESTING": True}, settings=make_settings(HOTLINE_PUBLIC_URL="https://hotline.example"), db=db
    )
    assert app.config["SESSION_COOKIE_SECURE"] is True
    client = app.test_client()
    response = client.get("/login", base_url="https://hotline.example")
    assert "Secure" in response.headers["Set-Cookie"] and "HttpOnly" in response.headers["Set-Cookie"]
