"""A Redis queue that cannot be reached: logins still work, `/healthz` says what is down."""

import pytest
from flask import Flask

from hotline.db import Database
from hotline.jobs import QueueWatch
from tests.helpers import free_port
from tests.web.conftest import login
from web import create_app


@pytest.fixture
def settings(make_settings):
    return make_settings(HOTLINE_QUEUE_URL=f"redis://127.0.0.1:{free_port()}/0")


@pytest.fixture
def app(settings, db: Database) -> Flask:
    return create_app({"TESTING": True}, settings=settings, db=db)


def test_logins_work_while_redis_is_down(app, accounts, caplog):
    client = app.test_client()
    assert login(client, "ivanov", "wrong password").status_code == 401  # refused, not a 500
    assert login(client, "ivanov").status_code == 302
    warnings = [r.getMessage() for r in caplog.records if "login throttle" in r.getMessage()]
    assert len(warnings) == 1 and "unreachable" in warnings[0], warnings


def test_healthz_says_the_queue_is_unreachable(app, settings):
    watch = QueueWatch(settings)
    watch.start()
    try:
        health = app.test_client().get("/healthz")
        assert health.status_code == 503
        assert "Redis" in health.json["status"] and "queue unavailable" in health.json["status"]
    finally:
        watch.stop()
    assert app.test_client().get("/healthz").status_code == 200
