"""Who may see what: login, roles, CSRF, lockout, security headers."""

from __future__ import annotations

from argon2 import PasswordHasher
from flask import url_for

from hotline import users
from hotline.users.throttle import LOGIN, PAIR
from tests.web.conftest import PASSWORD, csrf_token, login, post
from web import auth, create_app
from web.auth import IP_FAILURES

#: Endpoints anybody may reach: the login form, logging out, health, static files.
PUBLIC = {"static", "healthz", "auth.login", "auth.logout"}
#: Blueprints that authenticate in their own way (Twilio signs its requests).
OWN_AUTH = {"twilio", "twilio_media"}
#: Blueprints only admins may use.
ADMIN_ONLY = {"users"}


def _urls(app, voicemail, accounts) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) of every dashboard route, built from the app's URL map.

    A new route is checked without anybody adding it here; a new kind of URL argument
    fails loudly until it has a sample value.
    """
    samples = {
        "number": voicemail.number,
        "call_id": voicemail.call_id,
        "attachment_id": voicemail.attachment_id,
        "user_id": accounts["engineer"],
    }
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC or rule.endpoint.split(".")[0] in OWN_AUTH:
            continue
        missing = set(rule.arguments) - set(samples)
        assert not missing, f"{rule.rule}: give the access test a sample value for {missing}"
        with app.test_request_context():
            url = url_for(rule.endpoint, **{name: samples[name] for name in rule.arguments})
        for method in sorted((rule.methods or set()) & {"GET", "POST"}):
            out.append((rule.endpoint, method, url))
    return out


def test_every_route_needs_a_login(app, voicemail, accounts):
    checked = _urls(app, voicemail, accounts)
    assert {"requests.callback", "users.update", "requests.show"} <= {e for e, _, _ in checked}
    for endpoint, method, url in checked:
        client = app.test_client()
        if method == "GET":
            response = client.get(url)
        else:
            response = client.post(url, data={"csrf_token": csrf_token(client), "status": "in_progress"})
        assert response.status_code == 302, (endpoint, method, url)
        assert response.headers["Location"].startswith("/login"), (endpoint, method, url)


def test_engineers_are_refused_every_admin_route(app, engineer, voicemail, accounts):
    checked = [(e, m, u) for e, m, u in _urls(app, voicemail, accounts) if e.split(".")[0] in ADMIN_ONLY]
    assert checked
    for endpoint, method, url in checked:
        response = engineer.get(url) if method == "GET" else post(engineer, url, {"role": "admin"})
        assert response.status_code == 403, (endpoint, method, url)


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


def _copy_cookie(source, app):
    """A second browser holding a copy of `source`'s session cookie (a stolen cookie)."""
    thief = app.test_client()
    thief.set_cookie("hotline_session", source.get_cookie("hotline_session").value)
    return thief


def test_logout_ends_the_session_on_the_server_so_a_copied_cookie_stops_working(app, engineer):
    thief = _copy_cookie(engineer, app)
    assert thief.get("/").status_code == 200
    assert post(engineer, "/logout").status_code == 302
    assert thief.get("/").status_code == 302
    assert thief.get("/requests").headers["Location"].startswith("/login")


def test_a_new_password_ends_every_session_of_the_account(app, admin, engineer, accounts):
    thief = _copy_cookie(engineer, app)
    response = post(admin, f"/users/{accounts['engineer']}", {"password": "совсем-новый-пароль"})
    assert response.status_code == 302
    assert engineer.get("/").status_code == 302 and thief.get("/").status_code == 302
    assert admin.get("/").status_code == 200  # other accounts stay in


def test_the_csrf_token_changes_at_login(app, accounts):
    client = app.test_client()
    before = csrf_token(client)
    assert login(client, "ivanov").status_code == 302
    after = csrf_token(client, "/")
    assert before != after
    refused = client.post("/logout", data={"csrf_token": before})
    assert refused.status_code == 400
    assert client.post("/logout", data={"csrf_token": after}).status_code == 302


def test_login_redirects_only_within_the_site(app, accounts):
    client = app.test_client()
    token = csrf_token(client)
    for target, expected in [
        ("/calls?outcome=abandoned", "/calls?outcome=abandoned"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/calls%0D%0ASet-Cookie:%20x=1", "/"),  # a line break in a header would be a 500
    ]:
        client = app.test_client()
        token = csrf_token(client)
        response = client.post(
            f"/login?next={target}", data={"login": "ivanov", "password": PASSWORD, "csrf_token": token}
        )
        assert response.headers["Location"] == expected


def _message(response) -> str:
    html = response.get_data(as_text=True)
    return html.split('class="flash')[1].split("</")[0] if 'class="flash' in html else html


def test_wrong_password_then_lockout_of_this_login_from_this_address(app, accounts):
    client = app.test_client()
    for _ in range(PAIR.limit):
        response = login(client, "ivanov", "неверный пароль")
        assert response.status_code == 401
        assert "Неверный логин или пароль" in response.get_data(as_text=True)
    # Now even the right password waits until the lock expires …
    locked = login(client, "ivanov")
    assert locked.status_code == 429 and "Слишком много неудачных попыток входа" in locked.get_data(
        as_text=True
    )
    # … but only from this address: a stranger's guesses cannot lock the engineer out.
    elsewhere = app.test_client()
    response = elsewhere.post(
        "/login",
        data={"login": "ivanov", "password": PASSWORD, "csrf_token": csrf_token(elsewhere)},
        environ_base={"REMOTE_ADDR": "10.0.0.7"},
    )
    assert response.status_code == 302
    admin = app.test_client()
    assert login(admin, "admin").status_code == 302
    assert "вход заблокирован до" in admin.get("/users").get_data(as_text=True)
    assert post(admin, f"/users/{accounts['engineer']}", {"unlock": "1"}).status_code == 302
    assert "вход заблокирован до" not in admin.get("/users").get_data(as_text=True)
    assert login(client, "ivanov").status_code == 302


def test_unknown_and_locked_logins_get_the_same_answer_after_the_same_work(app, accounts, monkeypatch):
    """No account enumeration: the same status, message and number of hash checks."""
    checks = {"n": 0}

    class CountingHasher(PasswordHasher):
        def verify(self, hash, password):  # noqa: A002 - the library's own parameter name
            checks["n"] += 1
            return super().verify(hash, password)

    monkeypatch.setattr(users, "hasher", CountingHasher(time_cost=1, memory_cost=8, parallelism=1))
    answers = {}
    for name in ["ivanov", "nobody"]:
        client = app.test_client()
        seen = []
        for _ in range(PAIR.limit + 2):
            checks["n"] = 0
            response = login(client, name, "неверный пароль")
            seen.append((response.status_code, _message(response), checks["n"]))
        answers[name] = seen
    assert answers["ivanov"] == answers["nobody"]
    assert [status for status, _, _ in answers["ivanov"]] == [401] * PAIR.limit + [429, 429]
    assert [n for _, _, n in answers["ivanov"]] == [1] * PAIR.limit + [0, 0]


def test_a_login_guessed_from_many_addresses_is_slowed_down_not_locked(app, accounts, monkeypatch):
    waited: list[float] = []
    monkeypatch.setattr(auth, "sleep", waited.append)
    for i in range(LOGIN.limit + 2):
        client = app.test_client()
        response = client.post(
            "/login",
            data={"login": "ivanov", "password": "неверный пароль", "csrf_token": csrf_token(client)},
            environ_base={"REMOTE_ADDR": f"10.2.0.{i}"},
        )
        assert response.status_code == 401
    assert len(waited) == 2 and 0 < waited[0] < waited[1]
    assert login(app.test_client(), "ivanov").status_code == 302  # slowed, never refused


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
    assert "Strict-Transport-Security" not in response.headers


def test_cookies_are_secure_when_served_over_https(make_settings, db):
    app = create_app(
        {"TESTING": True}, settings=make_settings(HOTLINE_PUBLIC_URL="https://hotline.example"), db=db
    )
    assert app.config["SESSION_COOKIE_SECURE"] is True
    client = app.test_client()
    response = client.get("/login", base_url="https://hotline.example")
    assert "Secure" in response.headers["Set-Cookie"] and "HttpOnly" in response.headers["Set-Cookie"]
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
