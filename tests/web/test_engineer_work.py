"""The engineer's work: subjects from transcripts, «Мои заявки», sorting, age and targets, replies."""

from __future__ import annotations

import datetime as dt
import re
from email.message import EmailMessage

import pytest

from hotline import registry, reports
from hotline.models import EmailMessage as StoredEmail
from hotline.models import Request, utcnow
from hotline.notify import outbox
from hotline.settings import SettingsError
from tests.web.conftest import login, post
from web import create_app


def _numbers(page: str) -> list[str]:
    return re.findall(r'<a class="mono" href="/requests/(\d+)"', page)


def _request(app, number: str) -> Request:
    with app.extensions["hotline.db"].session() as s:
        return registry.get_request(s, number)


def _open(app, *, kind="incident", age=dt.timedelta(0), **contact: str) -> str:
    with app.extensions["hotline.db"].session() as s:
        req = registry.open_request(
            s, kind=kind, channel="web", actor="cli", subject=f"{kind} {age}", **contact
        )
        req.created_at = req.updated_at = utcnow() - age
        return req.number


# --- subjects -------------------------------------------------------------------------


def test_voicemail_subject_comes_from_the_transcript_and_follows_corrections(engineer, app, voicemail):
    from hotline.models import Transcript
    from hotline.transcription.transcripts import correct_transcript

    with app.extensions["hotline.db"].session() as s:
        req = registry.get_request(s, voicemail.number)
        registry.follow_transcript(req, "линия 3 не читает коды")  # as the pipeline does
    assert _request(app, voicemail.number).subject == "Линия 3 не читает коды"
    post(
        engineer,
        f"/requests/{voicemail.number}/transcripts/{voicemail.attachment_id}",
        {"text": "Линия 3 не читает QR-коды с утра"},
    )
    assert _request(app, voicemail.number).subject == "Линия 3 не читает QR-коды с утра"
    assert "Линия 3 не читает QR-коды с утра" in engineer.get("/requests").get_data(as_text=True)
    # A second correction follows the first one.
    with app.extensions["hotline.db"].session() as s:
        t = s.query(Transcript).one()
        correct_transcript(
            s, t, "линия три стоит, коды не читаются после обновления прошивки вчера", login="ivanov"
        )
    assert _request(app, voicemail.number).subject == "Линия три стоит, коды не читаются после обновления…"
    # A subject an engineer wrote is theirs: corrections no longer touch it.
    with app.extensions["hotline.db"].session() as s:
        registry.get_request(s, voicemail.number).subject = "Камера линии 3"
        t = s.query(Transcript).one()
        correct_transcript(s, t, "совсем другой текст", login="ivanov")
    assert _request(app, voicemail.number).subject == "Камера линии 3"


def test_the_transcription_pipeline_gives_the_subject(app, settings, voicemail):
    from hotline.transcription import pipeline

    class Result:
        text = "на линии пять сканер не видит коды"
        words: list[object] = []
        mean_confidence = 0.9
        audio_seconds = 3.0

    with app.extensions["hotline.db"].session() as s:
        from hotline.models import Attachment

        att = s.get(Attachment, voicemail.attachment_id)
        pipeline._store(s, att, Result(), "vosk-model-small-ru-0.22", 0.1)
    assert _request(app, voicemail.number).subject == "На линии 5 сканер не видит коды"


@pytest.mark.parametrize(
    ("text", "subject"),
    [
        ("", ""),
        ("коды", "Коды"),
        ("раз два три четыре пять шесть семь восемь девять", "Раз два три четыре пять шесть семь восемь…"),
        ("а" * 100, "А" + "а" * 79 + "…"),
    ],
)
def test_subject_from_text(text, subject):
    assert registry.subject_from_text(text) == subject


# --- my requests, sorting, age, targets -------------------------------------------------


def test_my_requests(engineer, app, accounts):
    mine, other = _open(app), _open(app)
    with app.extensions["hotline.db"].session() as s:
        from hotline.models import User

        registry.assign(s, registry.get_request(s, mine), s.get(User, accounts["engineer"]), actor="cli")
    page = engineer.get("/requests?mine=1").get_data(as_text=True)
    assert _numbers(page) == [mine] and "<h1>Мои заявки</h1>" in page
    assert _numbers(engineer.get("/requests").get_data(as_text=True)) == [other, mine]


def test_sort_orders(engineer, app):
    old = _open(app, age=dt.timedelta(days=3))
    new = _open(app)
    middle = _open(app, age=dt.timedelta(days=1))
    with app.extensions["hotline.db"].session() as s:
        registry.change_status(s, registry.get_request(s, old), "in_progress", actor="engineer:ivanov")
    pages = {
        sort: _numbers(engineer.get(f"/requests?sort={sort}").get_data(as_text=True))
        for sort in ("", "age", "activity", "status", "bogus")
    }
    assert pages[""] == [new, middle, old] == pages["bogus"]
    assert pages["age"] == [old, middle, new]
    assert pages["activity"][0] == old
    assert pages["status"] == [middle, new, old]  # new ones (oldest first), then in progress


def test_age_last_answer_and_overdue(engineer, app, make_settings):
    late = _open(app, kind="incident", age=dt.timedelta(hours=5))  # target 4 h
    fine = _open(app, kind="problem", age=dt.timedelta(hours=5))  # target 24 h
    page = engineer.get("/requests").get_data(as_text=True)
    rows = {n: row for n, row in re.findall(r'href="/requests/(\d+)">\d+</a></td>(.*?)</tr>', page, re.S)}
    assert "просрочена" in rows[late] and "просрочена" not in rows[fine]
    assert "5 ч" in rows[late]
    # An answer restarts the clock; awaiting the customer stops it.
    with app.extensions["hotline.db"].session() as s:
        registry.add_note(s, registry.get_request(s, late), actor="engineer:ivanov", text="смотрим")
    page = engineer.get(f"/requests/{late}").get_data(as_text=True)
    assert "Последний ответ" in page and "просрочена" not in page and "из 4 ч по норме" in page


def test_clocks_follow_the_configured_targets(app, make_settings):
    number = _open(app, kind="service_request", age=dt.timedelta(hours=2))
    settings = make_settings(HOTLINE_RESPONSE_TARGETS="service_request=90m")
    assert settings.response_targets["service_request"] == dt.timedelta(minutes=90)
    assert settings.response_targets["incident"] == dt.timedelta(hours=4)
    with app.extensions["hotline.db"].session() as s:
        req = registry.get_request(s, number)
        clock = reports.request_clocks(s, [req], settings.response_targets)[req.id]
        assert clock.overdue and clock.last_answer_at is None
        registry.change_status(s, req, "in_progress", actor="engineer:ivanov")
        registry.ask_clarification(s, req, actor="engineer:ivanov", question="?")
        s.flush()
        clock = reports.request_clocks(s, [req], settings.response_targets)[req.id]
        assert clock.waiting is None and not clock.overdue and clock.last_answer_at is not None


@pytest.mark.parametrize("bad", ["incident=4", "incident=0h", "bug=4h", "incident=4w", "incident"])
def test_bad_targets_are_refused_with_the_variable_named(make_settings, bad):
    with pytest.raises(SettingsError, match="HOTLINE_RESPONSE_TARGETS"):
        make_settings(HOTLINE_RESPONSE_TARGETS=bad)


# --- free-text reply ----------------------------------------------------------------------


class Mailer:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    def send(self, message: EmailMessage) -> None:
        self.sent.append(message)


def test_reply_by_e_mail_is_threaded_and_in_history(make_settings, db, accounts):
    settings = make_settings(HOTLINE_SMTP_URL="smtp://127.0.0.1:2525")
    app = create_app({"TESTING": True}, settings=settings, db=db)
    client = app.test_client()
    login(client, "ivanov")
    number = _open(app, email="master@zavod.ru")
    with db.session() as s:
        s.add(
            StoredEmail(
                message_id="<first@zavod.ru>",
                direction="in",
                request_id=registry.get_request(s, number).id,
                subject="Камера",
            )
        )
    answer = post(
        client,
        f"/requests/{number}/reply",
        {"text": "Перезагрузите камеру, пожалуйста."},
        follow_redirects=True,
    )
    assert "будет отправлен заказчику по e-mail на master@zavod.ru" in answer.get_data(as_text=True)
    mailer = Mailer()
    outbox.drain(settings, db, mailer=mailer, now=utcnow())
    (message,) = mailer.sent
    assert message["In-Reply-To"] == "<first@zavod.ru>" and "<first@zavod.ru>" in message["References"]
    assert message["Subject"].startswith("Re: [Заявка") and message["Auto-Submitted"] is None
    body = message.get_body().get_content()
    assert "Перезагрузите камеру, пожалуйста." in body and "Иван Иванов" in body
    page = client.get(f"/requests/{number}").get_data(as_text=True)
    assert (
        "ответ заказчику" in page
        and "Уведомление заказчику (ответ инженера) по e-mail на master@zavod.ru:" in page
    )
    assert "<b>отправлено</b>" in page
    assert _request(app, number).first_response_at is not None


def test_reply_by_sms(make_settings, db, accounts):
    settings = make_settings(
        HOTLINE_SMS_FROM="+73435674530", TWILIO_ACCOUNT_SID="AC" + "0" * 32, TWILIO_AUTH_TOKEN="t" * 32
    )
    app = create_app({"TESTING": True}, settings=settings, db=db)
    client = app.test_client()
    login(client, "ivanov")
    number = _open(app, phone="+79001234567")
    post(client, f"/requests/{number}/reply", {"text": "Инженер приедет завтра в 9:00."})

    class Sms:
        sent: list[tuple[str, str]] = []

        def send(self, to: str, text: str) -> str:
            self.sent.append((to, text))
            return "SM" + "1" * 32

    sms = Sms()
    outbox.drain(settings, db, sms=sms, now=utcnow())
    assert sms.sent == [
        (
            "+79001234567",
            f"ПСР QR, заявка {number}: Инженер приедет завтра в 9:00.\n"
            f"Вопросы: +7 343 567-45-30, номер заявки {number}.",
        )
    ]


def test_reply_without_a_channel_keeps_the_text(engineer, app):
    number = _open(app, phone="+79001234567")
    page = engineer.get(f"/requests/{number}").get_data(as_text=True)
    assert 'id="reply-impossible"' in page
    assert 'Позвоните заказчику: <a href="tel:+79001234567">8 (900) 123-45-67</a>.' in page
    answer = post(engineer, f"/requests/{number}/reply", {"text": "Мой длинный ответ"})
    text = answer.get_data(as_text=True)
    assert answer.status_code == 400 and "Ответ не отправлен: заказчику отсюда не написать." in text
    # The reason is said once, beside the form, in words for the engineer (no settings names).
    assert text.count("SMS не отправляются — их отправку не настроил администратор") == 1
    assert "HOTLINE_" not in text and "Twilio" not in text
    assert "Мой длинный ответ" in text  # nothing typed is lost
    with app.extensions["hotline.db"].session() as s:
        assert [e.action for e in registry.get_request(s, number).events] == ["created"]
    empty = post(engineer, f"/requests/{number}/reply", {"text": "  "})
    assert empty.status_code == 400


def test_live_answers_the_waiting_voicemails_and_does_not_extend_the_session(engineer, app, voicemail):
    first = engineer.get("/live?scope=requests")
    assert first.status_code == 200 and "Set-Cookie" not in first.headers
    assert first.json["waiting"] == 1 and first.json["newest"]["number"] == voicemail.number
    page = engineer.get("/requests").get_data(as_text=True)
    assert f'data-live-stamp="{first.json["stamp"]}"' in page  # the page starts where the poll is
    assert "<title>(1) Заявки" in page
    with app.extensions["hotline.db"].session() as s:
        registry.add_note(s, registry.get_request(s, voicemail.number), actor="engineer:ivanov", text="x")
    assert engineer.get("/live?scope=requests").json["stamp"] != first.json["stamp"]
    assert engineer.get("/live?scope=request&number=bogus").json["waiting"] == 1
