"""The dashboard while the database is down, and after it comes back (real PostgreSQL via a proxy)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from flask import Flask

from hotline.db import Database
from hotline.settings import load_settings
from tests.web.conftest import csrf_token, login
from web import create_app

pytestmark = pytest.mark.postgres

DOWN = "База данных недоступна, попробуйте позже"


@pytest.fixture
def proxied_app(pg_via_proxy, tmp_path) -> Iterator[tuple[Flask, Database]]:
    db = Database(pg_via_proxy.url)
    settings = load_settings(
        {
            "HOTLINE_DATA_DIR": str(tmp_path / "data"),
            "HOTLINE_DATABASE_URL": db.url,
            "HOTLINE_SECRET_KEY": "test-secret-key",
        }
    )
    yield create_app({"TESTING": True}, settings=settings, db=db), db
    db.dispose()


def test_pages_say_the_database_is_down_and_work_again_after(
    pg_via_proxy, proxied_app, cheap_hashing, caplog
) -> None:
    app, db = proxied_app
    from hotline import users
    from tests.web.conftest import PASSWORD

    with db.session() as s:
        users.create_user(s, "ivanov", password=PASSWORD, name="Иван Иванов", role="engineer")
    engineer = app.test_client()
    assert login(engineer, "ivanov").status_code == 302
    assert engineer.get("/").status_code == 200
    stranger = app.test_client()
    token = csrf_token(stranger)  # the login form, as opened before the database went down

    pg_via_proxy.cut()
    with caplog.at_level(logging.ERROR):
        for client, url in ((engineer, "/"), (engineer, "/requests"), (stranger, "/login"), (stranger, "/")):
            page = client.get(url, follow_redirects=True)
            assert page.status_code == 503, url
            html = page.get_data(as_text=True)
            assert DOWN in html and "Traceback" not in html, url
        health = stranger.get("/healthz")
        assert health.status_code == 503 and health.json == {"status": "database unavailable"}
        # Logging in needs the database too: the same page, not a 500 or "wrong password".
        attempt = stranger.post("/login", data={"login": "ivanov", "password": "x", "csrf_token": token})
        assert attempt.status_code == 503 and DOWN in attempt.get_data(as_text=True)
    assert "Traceback" not in caplog.text

    pg_via_proxy.restore()
    assert engineer.get("/").status_code == 200  # the same session and pool, no restart
    assert stranger.get("/healthz").json == {"status": "ok"}
    assert login(stranger, "ivanov").status_code == 302
