"""The call-back button: the engineer's phone rings first, then the customer's (AMI Originate)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from hotline.db import Database
from hotline.models import RequestEvent, User
from hotline.settings import Settings
from ivr.asterisk.callback import callback_queue
from ivr.asterisk.fake_ami import FakeAmiServer
from ivr.asterisk.service import AmiService
from tests.helpers import eventually
from tests.web.conftest import login, post
from web import create_app


@pytest.fixture
def ami_server() -> Iterator[FakeAmiServer]:
    server = FakeAmiServer().start()
    yield server
    server.stop()


@pytest.fixture
def ami_settings(make_settings, ami_server: FakeAmiServer) -> Settings:
    return make_settings(HOTLINE_AMI_URL=ami_server.url)


@pytest.fixture
def web(ami_settings: Settings, db: Database, accounts) -> FlaskClient:
    """The dashboard alone: it queues call-backs, it never places them."""
    client = create_app({"TESTING": True}, settings=ami_settings, db=db).test_client()
    login(client, "ivanov")
    return client


@pytest.fixture
def client(web: FlaskClient, ami_settings: Settings, db: Database) -> Iterator[FlaskClient]:
    """The dashboard with `hotline serve`'s AMI service running beside it."""
    service = AmiService(ami_settings, db)
    service.start()
    yield web
    service.stop()


def _history(db: Database) -> list[RequestEvent]:
    with db.session() as s:
        return list(s.scalars(select(RequestEvent).where(RequestEvent.action == "callback")))


def test_call_back_from_the_request_page(client, db, voicemail, ami_server):
    page = client.get(f"/requests/{voicemail.number}").get_data(as_text=True)
    assert "Перезвонить заказчику" in page
    response = post(client, f"/requests/{voicemail.number}/callback", {"extension": "PJSIP/101"})
    assert response.status_code == 302
    assert "Звоним на PJSIP/101" in client.get(f"/requests/{voicemail.number}").get_data(as_text=True)
    assert eventually(lambda: len(_history(db)) == 1)
    [originate] = ami_server.named("Originate")
    assert originate.get("Channel") == "PJSIP/101" and originate.get("Exten") == "+79001234567"
    [entry] = _history(db)
    assert entry.actor == "engineer:ivanov" and "инженер ответил" in entry.text
    with db.session() as s:  # the extension is remembered and offered next time
        assert s.scalars(select(User.extension).where(User.login == "ivanov")).one() == "PJSIP/101"
    assert 'value="PJSIP/101"' in client.get(f"/requests/{voicemail.number}").get_data(as_text=True)


def test_a_bad_extension_is_refused_at_once(client, db, voicemail, ami_server):
    post(client, f"/requests/{voicemail.number}/callback", {"extension": "101; rm -rf"})
    page = client.get(f"/requests/{voicemail.number}").get_data(as_text=True)
    assert "должен выглядеть как PJSIP/101" in page
    assert not ami_server.named("Originate")
    assert _history(db) == []


def test_a_failed_call_back_is_in_the_history(client, db, voicemail, ami_server):
    ami_server.originate_reason = "3"  # the engineer did not answer
    post(client, f"/requests/{voicemail.number}/callback", {"extension": "PJSIP/101"})
    assert eventually(lambda: len(_history(db)) == 1)
    assert "инженер не ответил" in _history(db)[0].text


def test_no_button_without_ami(engineer, voicemail):
    assert "Перезвонить заказчику" not in engineer.get(f"/requests/{voicemail.number}").get_data(as_text=True)
    assert (
        post(engineer, f"/requests/{voicemail.number}/callback", {"extension": "PJSIP/101"}).status_code
        == 404
    )


def test_the_page_only_queues_the_call_back(web, db, voicemail, ami_server, ami_settings):
    """No thread, no AMI login in the web worker: the AMI service places it later."""
    threads = threading.active_count()
    response = post(web, f"/requests/{voicemail.number}/callback", {"extension": "PJSIP/101"})
    assert response.status_code == 302
    assert callback_queue(ami_settings).huey.pending_count() == 1
    assert threading.active_count() == threads
    assert ami_server.logins == 0 and _history(db) == []
    service = AmiService(ami_settings, db)  # `hotline serve` starts: the queued call-back rings
    service.start()
    try:
        assert eventually(lambda: len(_history(db)) == 1)
        assert ami_server.logins == 1 and len(ami_server.named("Originate")) == 1
    finally:
        service.stop()
