"""Customer notifications: e-mail through a real SMTP server, SMS through Twilio's REST API."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from hotline import registry
from hotline.mail.intake import ingest
from hotline.models import EmailMessage as EmailRow
from hotline.models import Notification, RequestEvent, utcnow
from hotline.notify.outbox import _claim, drain, enqueue
from tests.helpers import free_port
from tests.hotline.mail.test_intake import customer_mail

pytestmark = pytest.mark.slow


def open_by_mail(settings, db, subject="Сканер не читает коды"):
    msg = customer_mail(subject, "Линия 3 стоит.")
    result = ingest(settings, db, msg.as_bytes())
    return result.request_number, msg


def test_clarification_and_processed_are_mailed_in_the_customers_thread(mail_settings, db, smtp):
    settings = mail_settings()
    number, original = open_by_mail(settings, db)
    assert drain(settings, db).sent == 1
    auto = smtp.messages[0]
    with db.session() as session:
        request = registry.get_request(session, number)
        registry.change_status(session, request, "in_progress", actor="engineer:anna")
        registry.ask_clarification(session, request, actor="engineer:anna", question="Какая модель сканера?")
    assert drain(settings, db).sent == 1
    question = smtp.messages[1]
    assert question["Subject"] == f"Re: [Заявка {number}] Сканер не читает коды"
    assert question["In-Reply-To"] == original["Message-ID"]
    refs = question["References"].split()
    assert refs[:2] == [original["Message-ID"], auto["Message-ID"]]
    assert question["Auto-Submitted"] == "auto-replied"
    assert "Какая модель сканера?" in question.get_content()

    with db.session() as session:
        request = registry.get_request(session, number)
        registry.change_status(session, request, "processed", actor="engineer:anna", note="Заменён объектив.")
    assert drain(settings, db).sent == 1
    done = smtp.messages[2]
    assert "обработана" in done.get_content() and "Заменён объектив." in done.get_content()
    assert question["Message-ID"] in done["References"]
    assert drain(settings, db).sent == 0
    assert len(smtp.messages) == 3
    with db.session() as session:
        request = registry.get_request(session, number)
        assert [e.action for e in request.events].count("email_out") == 3


def test_a_phone_request_is_notified_by_sms_through_twilio(make_settings, db, twilio):
    settings = make_settings(
        HOTLINE_SMS_FROM="+73435674530",
        TWILIO_ACCOUNT_SID="AC0123456789abcdef0123456789abcdef",
        TWILIO_AUTH_TOKEN="tok3n",
        HOTLINE_TWILIO_API_BASE=twilio.url,
    )
    with db.session() as session:
        request = registry.open_request(
            session, kind="incident", channel="phone", actor="caller:+79001234567", phone="+79001234567"
        )
        registry.change_status(session, request, "in_progress", actor="engineer:anna")
        registry.ask_clarification(session, request, actor="engineer:anna", question="Назовите номер линии")
        number = request.number
    result = drain(settings, db)
    assert (result.sent, result.retry, result.failed) == (2, 0, 0)
    number_sms, call = twilio.requests  # the caller's number by SMS (tests/hotline/test_number_sms.py)
    assert number_sms["form"]["To"] == "+79001234567" and f"номер {number}" in number_sms["form"]["Body"]
    assert call["path"] == "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
    assert call["auth"] == "AC0123456789abcdef0123456789abcdef:tok3n"
    assert call["form"]["To"] == "+79001234567"
    assert call["form"]["From"] == "+73435674530"
    assert number in call["form"]["Body"] and "Назовите номер линии" in call["form"]["Body"]
    assert "+7 343 567-45-30" in call["form"]["Body"]  # hotline.phones.international_phone
    with db.session() as session:
        rows = session.scalars(select(Notification).order_by(Notification.id)).all()
        assert [(n.kind, n.channel, n.state) for n in rows] == [
            ("created", "sms", "sent"),
            ("clarification", "sms", "sent"),
        ]
        assert rows[1].external_id.startswith("SM")
    assert drain(settings, db).sent == 0
    assert len(twilio.requests) == 2


def test_smtp_down_is_retried_later_and_sends_exactly_once(make_settings, db):
    port = free_port()
    settings = make_settings(HOTLINE_SMTP_URL=f"smtp://127.0.0.1:{port}")
    number, _ = open_by_mail(settings, db)
    t0 = utcnow()
    result = drain(settings, db, now=t0)
    assert (result.sent, result.retry) == (0, 1)
    with db.session() as session:
        n = session.scalars(select(Notification)).one()
        assert (n.state, n.attempts) == ("pending", 1)
        assert "127.0.0.1" in n.last_error
        assert n.next_attempt_at > t0
    assert drain(settings, db, now=t0 + dt.timedelta(seconds=1)).retry == 0  # not due yet

    from tests.hotline.mail.conftest import SmtpSink

    sink = SmtpSink(port=port)
    sink.start()
    try:
        assert drain(settings, db, now=t0 + dt.timedelta(minutes=5)).sent == 1
        assert drain(settings, db, now=t0 + dt.timedelta(minutes=10)).sent == 0
    finally:
        sink.stop()
    assert len(sink.messages) == 1
    assert number in sink.messages[0]["Subject"]
    with db.session() as session:
        n = session.scalars(select(Notification)).one()
        assert (n.state, n.attempts, n.last_error) == ("sent", 2, None)


def test_a_claim_whose_worker_died_is_sent_after_the_lease(mail_settings, db, smtp):
    settings = mail_settings()
    open_by_mail(settings, db)
    with db.session() as session:
        assert enqueue(session, settings, utcnow()) == 1
    # A worker claims the notification and dies before sending it.
    claimed = _claim(db, {"email"}, utcnow())
    assert claimed is not None
    assert drain(settings, db).sent == 0  # still someone else's
    assert drain(settings, db, now=utcnow() + dt.timedelta(minutes=11)).sent == 1
    assert len(smtp.messages) == 1


def test_a_refused_recipient_fails_for_good_with_a_history_entry(mail_settings, db, smtp):
    settings = mail_settings()
    smtp.refuse.add("ivan@plant.example")
    number, _ = open_by_mail(settings, db)
    result = drain(settings, db)
    assert (result.sent, result.failed) == (0, 1)
    assert drain(settings, db, now=utcnow() + dt.timedelta(days=1)).failed == 0  # not retried
    with db.session() as session:
        request = registry.get_request(session, number)
        failure = next(e for e in request.events if e.action == "notification_failed")
        assert "ivan@plant.example" in failure.text and "550" in failure.text


def test_nothing_is_sent_without_a_contact_or_for_stale_history(mail_settings, db, smtp):
    settings = mail_settings()
    with db.session() as session:
        anonymous = registry.open_request(session, kind="problem", channel="phone", actor="caller:unknown")
        registry.change_status(session, anonymous, "in_progress", actor="engineer:anna")
        registry.change_status(session, anonymous, "processed", actor="engineer:anna")
        old = registry.open_request(
            session, kind="problem", channel="web", actor="cli", email="old@plant.example"
        )
        registry.change_status(session, old, "in_progress", actor="engineer:anna")
        event = registry.change_status(session, old, "processed", actor="engineer:anna")
        session.flush()
        event.at = utcnow() - dt.timedelta(days=30)
    assert drain(settings, db).sent == 0
    assert smtp.messages == []
    with db.session() as session:
        [skipped] = session.scalars(select(Notification)).all()
        assert (skipped.request_id, skipped.state) == (anonymous.id, "skipped")


def test_web_and_phone_requests_get_no_automatic_reply(mail_settings, db, smtp):
    settings = mail_settings()
    with db.session() as session:
        registry.open_request(session, kind="problem", channel="web", actor="cli", email="a@plant.example")
    assert drain(settings, db).queued == 0
    assert smtp.messages == []


def test_outgoing_mail_is_recorded_once(mail_settings, db, smtp):
    settings = mail_settings()
    open_by_mail(settings, db)
    drain(settings, db)
    with db.session() as session:
        rows = session.scalars(select(EmailRow).order_by(EmailRow.id)).all()
        assert [r.direction for r in rows] == ["in", "out"]
        assert session.scalars(select(RequestEvent).where(RequestEvent.action == "email_out")).one()


def test_intake_and_outbox_on_every_database(any_db, tmp_path, smtp):
    from hotline.settings import load_settings

    settings = load_settings(
        {
            "HOTLINE_DATA_DIR": str(tmp_path / "data"),
            "HOTLINE_DATABASE_URL": any_db.url,
            "HOTLINE_SECRET_KEY": "k",
            "HOTLINE_SMTP_URL": smtp.url,
        }
    )
    msg = customer_mail("Сбой", "Линия 1 стоит.")
    assert ingest(settings, any_db, msg.as_bytes()).outcome == "created"
    assert ingest(settings, any_db, msg.as_bytes()).outcome == "duplicate"
    assert drain(settings, any_db).sent == 1
    assert drain(settings, any_db).sent == 0
    assert len(smtp.messages) == 1
