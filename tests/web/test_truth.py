"""What the dashboard says about the customer matches what happened (issue 14, «Truth»)."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage

import pytest

from hotline import registry
from hotline.models import Request
from hotline.notify import outbox
from hotline.notify.channel import DeliveryError
from tests.web.conftest import post
from web import create_app
from web.customer import reach


def _request(app, number: str) -> Request:
    with app.extensions["hotline.db"].session() as s:
        return registry.get_request(s, number)


def _open(app, **contact: str) -> str:
    with app.extensions["hotline.db"].session() as s:
        req = registry.open_request(
            s, kind="incident", channel="web", actor="cli", subject="Камера", **contact
        )
        registry.change_status(s, req, "in_progress", actor="cli")
        return req.number


def test_without_a_channel_the_page_says_so_before_sending(engineer, app):
    number = _open(app)  # no e-mail, no phone
    page = engineer.get(f"/requests/{number}").get_data(as_text=True)
    assert 'id="no-reach"' in page
    assert "Ответить отсюда нельзя: у заявки нет ни e-mail, ни телефона заказчика." in page
    assert (
        "Заказчику вопрос тоже не отправить: он только сохранится в заявке, свяжитесь с заказчиком сами"
        in page
    )
    answer = post(
        engineer, f"/requests/{number}/clarify", {"question": "Какая камера?"}, follow_redirects=True
    )
    text = answer.get_data(as_text=True)
    assert "заказчику не отправлен" in text and "получит уведомление" not in text
    req = _request(app, number)
    assert req.status == "awaiting_info" and req.clarification_question == "Какая камера?"
    assert "Какая камера?" in text and "Вопрос заказчику" in text
    assert "Уведомление заказчику: не будет отправлено" in text
    assert text.count("у заявки нет ни e-mail, ни телефона заказчика") == 1  # said once


def test_phone_customer_hears_the_question_on_the_line(engineer, app):
    number = _open(app, phone="+79001234567")
    page = engineer.get(f"/requests/{number}").get_data(as_text=True)
    assert "SMS не отправляются — их отправку не настроил администратор" in page
    assert "звонивший услышит его" in page and "HOTLINE_" not in page


def test_question_is_cleared_when_the_request_leaves_awaiting_info(engineer, app):
    number = _open(app, phone="+79001234567")
    post(engineer, f"/requests/{number}/clarify", {"question": "Какая камера?"})
    assert _request(app, number).clarification_question == "Какая камера?"
    post(engineer, f"/requests/{number}/status", {"status": "in_progress"})
    req = _request(app, number)
    assert req.status == "in_progress" and req.clarification_question is None
    assert "Вопрос заказчику" not in engineer.get(f"/requests/{number}").get_data(as_text=True)


class RecordingMailer:
    def __init__(self, fail: DeliveryError | None = None):
        self.sent: list[EmailMessage] = []
        self.fail = fail

    def send(self, message: EmailMessage) -> None:
        if self.fail:
            raise self.fail
        self.sent.append(message)


@pytest.fixture
def mail_app(make_settings, db, accounts):
    settings = make_settings(HOTLINE_SMTP_URL="smtp://127.0.0.1:2525")
    return settings, create_app({"TESTING": True}, settings=settings, db=db)


def _client(app):
    from tests.web.conftest import login

    client = app.test_client()
    assert login(client, "ivanov").status_code == 302
    return client


def test_with_e_mail_the_question_is_sent_and_history_shows_delivery(mail_app, db):
    settings, app = mail_app
    client = _client(app)
    number = _open(app, email="master@zavod.ru")
    page = client.get(f"/requests/{number}").get_data(as_text=True)
    assert "вопрос уйдёт заказчику по e-mail на master@zavod.ru" in page
    text = post(client, f"/requests/{number}/clarify", {"question": "Какая камера?"}, follow_redirects=True)
    assert "будет отправлен заказчику по e-mail на master@zavod.ru" in text.get_data(as_text=True)
    assert "ждёт отправки по e-mail на master@zavod.ru" in client.get(f"/requests/{number}").get_data(
        as_text=True
    )
    mailer = RecordingMailer()
    outbox.drain(settings, db, mailer=mailer, now=dt.datetime.now(dt.UTC))
    assert len(mailer.sent) == 1 and "Какая камера?" in mailer.sent[0].get_body().get_content()
    page = client.get(f"/requests/{number}").get_data(as_text=True)
    assert "Уведомление заказчику (вопрос инженера) по e-mail на master@zavod.ru:" in page
    assert "<b>отправлено</b>" in page


def test_a_refused_notification_shows_as_not_delivered(mail_app, db):
    settings, app = mail_app
    client = _client(app)
    number = _open(app, email="nobody@zavod.ru")
    post(client, f"/requests/{number}/clarify", {"question": "Какая камера?"})
    mailer = RecordingMailer(fail=DeliveryError("550 нет такого ящика", permanent=True))
    outbox.drain(settings, db, mailer=mailer, now=dt.datetime.now(dt.UTC))
    page = client.get(f"/requests/{number}").get_data(as_text=True)
    assert "<b>не доставлено</b>" in page and "550 нет такого ящика" in page
    assert "уведомление не доставлено" in page  # the history entry's own label


def test_reach_is_the_outbox_routing_rule(make_settings):
    plain = make_settings()
    full = make_settings(
        HOTLINE_SMTP_URL="smtp://127.0.0.1:2525",
        HOTLINE_SMS_FROM="+73435674530",
        TWILIO_ACCOUNT_SID="AC" + "0" * 32,
        TWILIO_AUTH_TOKEN="t" * 32,
    )
    sms_only = make_settings(
        HOTLINE_SMS_FROM="+73435674530", TWILIO_ACCOUNT_SID="AC" + "0" * 32, TWILIO_AUTH_TOKEN="t" * 32
    )
    both = Request(contact_email="a@b.ru", contact_phone="+79001234567", channel="email")
    phone = Request(contact_phone="+79001234567", channel="phone")
    landline = Request(contact_phone="+73435674530", channel="phone")
    assert reach(full, both).how == "по e-mail на a@b.ru"
    assert reach(full, phone).how == "по SMS на 8 (900) 123-45-67"
    # The engineer reads who can fix it; the settings it needs are in the docs and logs.
    assert (
        reach(plain, both).why_not == "письма и SMS не отправляются — их отправку не настроил администратор"
    )
    assert reach(sms_only, both).how == "по SMS на 8 (900) 123-45-67"
    assert reach(plain, Request(channel="web")).why_not == "у заявки нет ни e-mail, ни телефона заказчика"
    assert "не мобильный" in reach(full, landline).why_not
    # The number of a new request: a letter is answered by a letter, a call from a mobile by SMS.
    assert reach(full, both, "created").how == "по e-mail на a@b.ru"
    assert reach(sms_only, both, "created").why_not == (
        "письма не отправляются — их отправку не настроил администратор"
    )
    assert reach(full, phone, "created").how == "по SMS на 8 (900) 123-45-67"
    assert (
        reach(plain, phone, "created").why_not
        == "SMS не отправляются — их отправку не настроил администратор"
    )
    assert "не мобильный" in reach(full, landline, "created").why_not
    web_mobile = Request(contact_phone="+79001234567", contact_email="a@b.ru", channel="web")
    assert "только в ответ на письмо" in reach(full, web_mobile, "created").why_not
    abroad = Request(contact_phone="+447911123456", channel="phone")
    assert reach(full, abroad).how == "по SMS на +44 7911 123456"
    assert "на российский мобильный" in reach(full, abroad, "created").why_not


def test_the_number_sms_shows_in_the_history_with_its_delivery(make_settings, db, accounts):
    sms = {
        "HOTLINE_SMS_FROM": "+73435674530",
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": "t",
    }
    settings = make_settings(**sms)
    app = create_app({"TESTING": True}, settings=settings, db=db)
    with app.extensions["hotline.db"].session() as s:
        number = registry.open_request(
            s, kind="incident", channel="phone", actor="caller:+79001234567", phone="+79001234567"
        ).number

    class Sms:
        def send(self, to: str, text: str) -> str:
            raise DeliveryError("Twilio 503: Service Unavailable")

    outbox.drain(settings, db, sms=Sms(), now=dt.datetime.now(dt.UTC))
    page = _client(app).get(f"/requests/{number}").get_data(as_text=True)
    assert "Уведомление заказчику (автоответ с номером заявки) по SMS на 8 (900) 123-45-67:" in page
    assert "<b>ждёт отправки</b> (попыток: 1" in page and "Twilio 503: Service Unavailable" in page


def test_overview_and_request_page_say_transcription_is_off(engineer, voicemail, settings):
    assert not settings.vosk_model.exists()
    for page in (engineer.get("/"), engineer.get(f"/requests/{voicemail.number}")):
        text = page.get_data(as_text=True)
        assert "Расшифровка выключена: модель распознавания речи не установлена" in text
        assert "hotline models fetch" not in text  # the command is for administrators


def test_demo_recogniser_is_named(make_settings, db, accounts):
    app = create_app({"TESTING": True}, settings=make_settings(HOTLINE_ASR="fake"), db=db)
    text = _client(app).get("/").get_data(as_text=True)
    assert "Расшифровка работает в демонстрационном режиме" in text and "HOTLINE_ASR" not in text


def test_with_a_model_nothing_is_said(make_settings, db, accounts, tmp_path):
    model = tmp_path / "vosk-model-small-ru-0.22"
    (model / "am").mkdir(parents=True)
    app = create_app({"TESTING": True}, settings=make_settings(HOTLINE_VOSK_MODEL=str(model)), db=db)
    assert "Расшифровка выключена" not in _client(app).get("/").get_data(as_text=True)
