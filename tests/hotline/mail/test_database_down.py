"""The mail service while the database is down (real Dovecot, SMTP and PostgreSQL via a proxy)."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import select

from hotline.db import Database
from hotline.mail.service import MailService
from hotline.models import Request
from tests.hotline.mail.conftest import deliver, folder_state
from tests.hotline.mail.test_intake import customer_mail

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def wait_until(check, seconds: float = 15.0):
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def test_mail_waits_unread_while_the_database_is_down_then_becomes_a_request(
    pg_via_proxy, mail_settings, dovecot, folder, smtp, caplog
) -> None:
    settings = mail_settings(
        HOTLINE_DATABASE_URL=pg_via_proxy.url, HOTLINE_MAIL_POLL_SECONDS="1", HOTLINE_OUTBOX_SECONDS="1"
    )
    db = Database(settings.database_url)
    pg_via_proxy.cut()
    deliver(dovecot, folder, customer_mail("Линия 2 стоит", "Сканер на линии 2 не читает коды."))
    service = MailService(settings, db)
    service.reconnect_seconds = 0.1
    with caplog.at_level(logging.WARNING):
        service.start()
        try:
            # The intake and the outbox both meet the dead database, more than once: they go on.
            wait_until(lambda: caplog.text.count("mail intake: database unavailable") >= 2)
            wait_until(lambda: "notification outbox: database unavailable" in caplog.text)
            assert folder_state(dovecot, folder) == {"all": 1, "unseen": 1}  # not marked seen

            pg_via_proxy.restore()

            def request() -> Request | None:
                with db.session() as session:
                    return session.scalars(select(Request)).one_or_none()

            taken = wait_until(request)
            assert taken.subject == "Линия 2 стоит" and taken.contact_email == "ivan@plant.example"
            wait_until(lambda: smtp.messages)  # the automatic reply left the outbox
            assert taken.number in smtp.messages[0]["Subject"]
            wait_until(lambda: folder_state(dovecot, folder)["unseen"] == 0)
        finally:
            service.stop()
            db.dispose()
    assert "Traceback" not in caplog.text
