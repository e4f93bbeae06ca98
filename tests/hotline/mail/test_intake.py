"""Mail into requests, through a real Dovecot mailbox and a real SMTP server."""

from __future__ import annotations

import base64
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from sqlalchemy import func, select

from hotline import registry
from hotline.db import Database
from hotline.jobs import queue_for
from hotline.mail.intake import poll_once
from hotline.mail.service import mailbox_for
from hotline.mail.transport import MailboxError
from hotline.models import Attachment, Request, RequestStatus
from hotline.models import EmailMessage as EmailRow
from hotline.notify.outbox import drain
from hotline.storage import resolve
from tests.hotline.mail.conftest import deliver, folder_state

pytestmark = pytest.mark.slow


def customer_mail(
    subject: str, text: str, *, sender: str = "Иван Петров <ivan@plant.example>"
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "support@axon.system"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="plant.example")
    msg.set_content(text)
    return msg


def poll(settings):
    with mailbox_for(settings) as mailbox:
        return poll_once(settings, Database(settings.database_url), mailbox)


def requests_of(db: Database) -> list[Request]:
    with db.session() as session:
        return list(session.scalars(select(Request).order_by(Request.id)))


def test_new_mail_becomes_a_request_with_an_automatic_threaded_reply(
    mail_settings, db, dovecot, folder, smtp
):
    settings = mail_settings()
    msg = customer_mail("Сканер на линии 3 не читает коды", "С утра сканер не читает QR коды на линии 3.")
    deliver(dovecot, folder, msg)

    [result] = poll(settings)
    assert result.outcome == "created"
    [request] = requests_of(db)
    assert (request.channel, request.status, request.contact_email) == ("email", "new", "ivan@plant.example")
    assert request.subject == "Сканер на линии 3 не читает коды"
    assert "линии 3" in request.description
    assert request.contact_name == "Иван Петров"
    assert (request.kind, request.kind_confirmed) == ("incident", False)
    assert folder_state(dovecot, folder) == {"all": 1, "unseen": 0}

    assert drain(settings, db).sent == 1
    [reply] = smtp.messages
    assert smtp.envelopes[0][1] == ["ivan@plant.example"]
    assert reply["Subject"] == f"[Заявка {request.number}] Сканер на линии 3 не читает коды"
    assert reply["In-Reply-To"] == msg["Message-ID"]
    assert msg["Message-ID"] in reply["References"]
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["Message-ID"].endswith("@axon.system>")
    body = reply.get_content()
    assert request.number in body and "+7 343 567-45-30" in body
    # Sent once, and recorded as the request's outgoing mail.
    assert drain(settings, db).sent == 0
    assert len(smtp.messages) == 1
    with db.session() as session:
        out = session.scalars(select(EmailRow).where(EmailRow.direction == "out")).one()
        assert (out.message_id, out.request_id) == (reply["Message-ID"], request.id)


def test_reply_quoting_the_number_goes_to_the_same_request(mail_settings, db, dovecot, folder, smtp):
    settings = mail_settings()
    with db.session() as session:
        request = registry.open_request(
            session, kind="incident", channel="phone", actor="caller:+79001234567", description="голос"
        )
        registry.change_status(session, request, "in_progress", actor="engineer:anna")
        registry.ask_clarification(session, request, actor="engineer:anna", question="Пришлите журнал")
        number = request.number
    reply = customer_mail(f"Re: [Заявка {number}] журнал", "Журнал во вложении.")
    reply.add_attachment(
        b"2026-11-24 ERROR camera 3\n", maintype="text", subtype="plain", filename="scanner.log"
    )
    deliver(dovecot, folder, reply)

    [result] = poll(settings)
    assert (result.outcome, result.request_number) == ("added", number)
    [request] = requests_of(db)
    assert request.status == RequestStatus.IN_PROGRESS
    with db.session() as session:
        request = registry.get_request(session, number)
        actions = [e.action for e in request.events]
        assert "information_added" in actions
        info = next(e for e in request.events if e.action == "information_added")
        assert "Журнал во вложении" in info.text
        [attachment] = request.attachments
        assert attachment.filename == "scanner.log"
        assert resolve(settings.data_dir, attachment.path).read_bytes() == b"2026-11-24 ERROR camera 3\n"
        assert request.contact_email == "ivan@plant.example"


def test_a_reply_without_the_number_still_finds_its_thread(mail_settings, db, dovecot, folder, smtp):
    settings = mail_settings()
    first = customer_mail("Проблема с печатью", "Коды печатаются бледно.")
    deliver(dovecot, folder, first)
    poll(settings)
    drain(settings, db)
    [auto] = smtp.messages
    answer = customer_mail("Re: печать", "Ещё фото приложу позже.")
    answer["In-Reply-To"] = auto["Message-ID"]
    answer["References"] = f"{first['Message-ID']} {auto['Message-ID']}"
    deliver(dovecot, folder, answer)
    [result] = poll(settings)
    assert result.outcome == "added"
    assert len(requests_of(db)) == 1


def test_an_answer_to_the_processed_mail_reopens_the_request(mail_settings, db, dovecot, folder, smtp):
    # The «обработана» mail says «Если вопрос не решён, ответьте на это письмо»: the
    # answer must reach an engineer, not sit in the archive.
    settings = mail_settings()
    first = customer_mail("Сканер не читает коды", "Линия 2 стоит.")
    deliver(dovecot, folder, first)
    poll(settings)
    with db.session() as session:
        [request] = session.scalars(select(Request)).all()
        registry.change_status(session, request, "in_progress", actor="engineer:anna")
        registry.change_status(session, request, "processed", actor="engineer:anna", note="заменён кабель")
    drain(settings, db)
    processed = smtp.messages[-1]
    assert "ответьте на это письмо" in processed.get_content()
    answer = customer_mail("Re: сканер", "Не помогло, снова не читает.")
    answer["In-Reply-To"] = processed["Message-ID"]
    deliver(dovecot, folder, answer)

    [result] = poll(settings)
    assert result.outcome == "added"
    [request] = requests_of(db)
    assert (request.status, request.archived) == (RequestStatus.IN_PROGRESS, False)
    with db.session() as session:
        last = registry.get_request(session, request.number).events[-3:]
        assert [e.action for e in last][:2] == ["information_added", "status"]
        assert "Не помогло" in last[0].text
        assert last[1].text == "заказчик написал по обработанной заявке: она снова в работе"


def test_the_same_message_twice_makes_one_request(mail_settings, db, dovecot, folder, smtp):
    settings = mail_settings()
    msg = customer_mail("Не работает линия", "Линия стоит.")
    deliver(dovecot, folder, msg)
    deliver(dovecot, folder, msg)
    outcomes = [r.outcome for r in poll(settings)]
    assert outcomes == ["created", "duplicate"]
    assert len(requests_of(db)) == 1
    assert folder_state(dovecot, folder) == {"all": 2, "unseen": 0}
    drain(settings, db)
    assert len(smtp.messages) == 1


def test_a_crash_between_commit_and_mark_neither_loses_nor_duplicates(
    mail_settings, db, dovecot, folder, monkeypatch
):
    settings = mail_settings()
    deliver(dovecot, folder, customer_mail("Ошибка камеры", "Камера 2 выдаёт ошибку."))
    from hotline.mail.transport import Mailbox

    real_mark = Mailbox.mark_done

    def crash(self, uid):
        raise MailboxError("connection lost")

    monkeypatch.setattr(Mailbox, "mark_done", crash)
    with pytest.raises(MailboxError):
        poll(settings)
    assert len(requests_of(db)) == 1  # committed
    assert folder_state(dovecot, folder)["unseen"] == 1  # but not marked

    monkeypatch.setattr(Mailbox, "mark_done", real_mark)
    [result] = poll(settings)
    assert result.outcome == "duplicate"
    assert len(requests_of(db)) == 1
    assert folder_state(dovecot, folder)["unseen"] == 0


def test_handled_mail_moves_to_the_processed_folder(mail_settings, db, dovecot, folder):
    settings = mail_settings(HOTLINE_IMAP_PROCESSED_FOLDER=f"{folder}-done")
    deliver(dovecot, folder, customer_mail("Сбой", "Сбой на линии 1."))
    [result] = poll(settings)
    assert result.outcome == "created"
    assert folder_state(dovecot, folder)["all"] == 0
    assert folder_state(dovecot, f"{folder}-done") == {"all": 1, "unseen": 0}


MALFORMED = (
    b"From: ivan@plant.example\r\n"
    b"Subject: broken\r\n"
    b"Message-ID: <broken-1@plant.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XYZ"\r\n'
    b"\r\n"
    b"--XYZ\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"0KHQutCw0L3QtdGAINGB0LvQvtC80LDQvQ=\r\n"  # bad padding, no closing boundary
)


def test_malformed_mime_gives_a_request_with_a_note(mail_settings, db, dovecot, folder):
    settings = mail_settings()
    deliver(dovecot, folder, MALFORMED)
    [result] = poll(settings)
    assert result.outcome == "created"
    with db.session() as session:
        request = session.scalars(select(Request)).one()
        assert "Сканер сломан" in request.description
        note = next(e for e in request.events if e.action == "email_in").text
        assert "ошибками MIME" in note
        [original] = request.attachments
        assert original.filename == "message.eml"
        assert resolve(settings.data_dir, original.path).read_bytes() == MALFORMED


def test_an_oversized_attachment_is_left_out_with_a_note(mail_settings, db, dovecot, folder):
    settings = mail_settings(HOTLINE_ATTACHMENT_MAX_BYTES="2048")
    msg = customer_mail("Скриншот", "Во вложении скриншот и лог.")
    msg.add_attachment(b"\x89PNG" + b"x" * 5000, maintype="image", subtype="png", filename="screen.png")
    msg.add_attachment(b"small log", maintype="text", subtype="plain", filename="app.log")
    deliver(dovecot, folder, msg)
    poll(settings)
    with db.session() as session:
        request = session.scalars(select(Request)).one()
        assert [a.filename for a in request.attachments] == ["app.log"]
        note = next(e for e in request.events if e.action == "email_in").text
        assert "screen.png" in note and "не сохранено" in note


def _raw(subject_header: bytes, body: bytes, charset: str | None) -> bytes:
    ctype = b"text/plain" + (f"; charset={charset}".encode() if charset else b"")
    return (
        b"From: =?koi8-r?b?8MXU0s/X?= <petrov@plant.example>\r\n"
        b"Subject: " + subject_header + b"\r\n"
        b"Message-ID: <" + subject_header[-12:].hex().encode() + b"@plant.example>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: " + ctype + b"\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body + b"\r\n"
    )


TEXT = "Добрый день! Сканер на участке упаковки не распознаёт коды."


@pytest.mark.parametrize(
    ("subject", "body", "charset"),
    [
        (b"=?koi8-r?B?88LPyiDTy8HOxdLB?=", TEXT.encode("koi8-r"), "koi8-r"),
        (b"=?windows-1251?Q?=D1=E1=EE=E9_=F1=EA=E0=ED=E5=F0=E0?=", TEXT.encode("cp1251"), "windows-1251"),
        ("Сбой сканера".encode("cp1251"), TEXT.encode("cp1251"), None),  # raw 8-bit, undeclared
        (b"=?x-unknown?Q?abc?=", TEXT.encode("cp1251"), "x-unknown-charset"),
    ],
    ids=["koi8-r", "windows-1251", "undeclared-cp1251", "unknown-charset"],
)
def test_russian_legacy_encodings(mail_settings, db, dovecot, folder, subject, body, charset):
    settings = mail_settings()
    deliver(dovecot, folder, _raw(subject, body, charset))
    [result] = poll(settings)
    assert result.outcome == "created"
    with db.session() as session:
        request = session.scalars(select(Request)).one()
        assert request.description == TEXT
        if charset in ("koi8-r", "windows-1251", None):
            assert request.subject in ("Сбой сканера",)
        assert request.contact_name == "Петров"
        if charset is None or charset == "x-unknown-charset":
            assert "прочитан как" in next(e for e in request.events if e.action == "email_in").text


def test_html_only_mail_keeps_the_text_and_drops_scripts(mail_settings, db, dovecot, folder):
    settings = mail_settings()
    msg = customer_mail("HTML", "")
    msg.set_content(
        "<html><head><style>p{color:red}</style><script>alert('x')</script></head>"
        "<body><p>Линия&nbsp;2 <b>стоит</b></p><script>document.cookie</script>"
        '<p onclick="evil()">Код ошибки E42</p><img src=x onerror=alert(1)></body></html>',
        subtype="html",
    )
    deliver(dovecot, folder, msg)
    poll(settings)
    [request] = requests_of(db)
    assert "Линия 2" in request.description and "стоит" in request.description
    assert "Код ошибки E42" in request.description
    for bad in ("alert", "script", "cookie", "<", "evil", "color:red"):
        assert bad not in request.description


@pytest.mark.parametrize(
    "headers",
    [
        {"From": "MAILER-DAEMON@mx.plant.example", "Subject": "Undelivered Mail Returned to Sender"},
        {"Return-Path": "<>", "Subject": "Delivery Status Notification"},
        {"Auto-Submitted": "auto-replied", "Subject": "Автоответ: в отпуске"},
        {"Auto-Submitted": "auto-generated", "Subject": "Отчёт"},
    ],
    ids=["mailer-daemon", "empty-return-path", "auto-replied", "auto-generated"],
)
def test_bounces_and_automatic_mail_make_no_request_and_no_reply(
    mail_settings, db, dovecot, folder, smtp, headers
):
    settings = mail_settings()
    msg = customer_mail(headers.pop("Subject"), "текст")
    for name, value in headers.items():
        del msg[name]
        msg[name] = value
    deliver(dovecot, folder, msg)
    [result] = poll(settings)
    assert result.outcome == "skipped"
    assert requests_of(db) == []
    assert folder_state(dovecot, folder)["unseen"] == 0
    drain(settings, db)
    assert smtp.messages == []


DSN = (
    b"From: Mail Delivery System <mailer@mx.plant.example>\r\n"
    b"Subject: Returned mail\r\n"
    b"Message-ID: <dsn-1@mx.plant.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
    b"--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
    b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; mx.plant.example\r\n\r\nFinal-Recipient: rfc822; nobody@plant.example\r\n"
    b"Action: failed\r\nStatus: 5.1.1\r\n\r\n"
    b"--B--\r\n"
)


def test_a_delivery_status_report_is_skipped(mail_settings, db, dovecot, folder):
    settings = mail_settings()
    deliver(dovecot, folder, DSN)
    assert [r.outcome for r in poll(settings)] == ["skipped"]
    assert requests_of(db) == []


def test_auto_submitted_no_is_a_person(mail_settings, db, dovecot, folder):
    settings = mail_settings()
    msg = customer_mail("Вопрос", "Нужна настройка.")
    msg["Auto-Submitted"] = "no"
    deliver(dovecot, folder, msg)
    assert [r.outcome for r in poll(settings)] == ["created"]


def test_our_own_reply_coming_back_is_not_a_request(mail_settings, db, dovecot, folder, smtp):
    settings = mail_settings()
    deliver(dovecot, folder, customer_mail("Сбой", "Сбой на линии 1."))
    poll(settings)
    drain(settings, db)
    [auto] = smtp.messages
    deliver(dovecot, folder, auto)  # e.g. a customer address that forwards to support
    assert [r.outcome for r in poll(settings)] == ["duplicate"]  # our own Message-ID
    del auto["Message-ID"]
    auto["Message-ID"] = make_msgid(domain="relay.example")  # re-sent by a relay
    deliver(dovecot, folder, auto)
    assert [r.outcome for r in poll(settings)] == ["skipped"]
    assert len(requests_of(db)) == 1
    drain(settings, db)
    assert len(smtp.messages) == 1


def test_a_voice_attachment_is_queued_for_transcription(mail_settings, db, dovecot, folder):
    settings = mail_settings()
    msg = customer_mail("Голосовое", "Запись во вложении.")
    msg.add_attachment(b"RIFF....WAVEfmt ", maintype="audio", subtype="wav", filename="voice.wav")
    deliver(dovecot, folder, msg)
    huey = queue_for(settings).huey
    before = huey.pending_count()
    poll(settings)
    with db.session() as session:
        attachment = session.scalars(select(Attachment)).one()
        assert attachment.transcription_state == "pending"
    assert huey.pending_count() == before + 1
    [task] = huey.pending()[-1:]
    assert task.args == (attachment.id,)


def asterisk_voicemail(cidnum: str, cidname: str, wav: bytes) -> bytes:
    """A voice message as Asterisk 22's app_voicemail.c (make_email, add_email_attachment)
    e-mails it with deploy/asterisk/voicemail.conf: CRLF lines, the caller id in
    X-Asterisk-CallerID/-CallerIDName only when not empty, no X-Asterisk-VM-* headers
    (those come with IMAP storage only), the recording as audio/x-wav msg0000.wav."""
    bound = "----voicemail_1hotline41731904238"
    caller = f"X-Asterisk-CallerID: {cidnum}\r\n" if cidnum else ""
    caller += f"X-Asterisk-CallerIDName: {cidname}\r\n" if cidname else ""
    heard = f"{cidname} <{cidnum}>" if cidnum else "an unknown caller"
    body = f"Звонок 07.12.2026 22:40, 0:12, номер {heard}. Запись во вложении."
    audio = base64.encodebytes(wav).decode().replace("\n", "\r\n")
    return (
        "Date: Mon, 07 Dec 2026 22:40:11 +0500\r\n"
        "From: =?UTF-8?B?0JPQvtGA0Y/Rh9Cw0Y8g0LvQuNC90LjRjyDQn9Ch0KAgUVI=?= <hotline-pbx@axon.system>\r\n"
        "To: =?UTF-8?B?0JPQvtGA0Y/Rh9Cw0Y8g0LvQuNC90LjRjyDQn9Ch0KAgUVI=?= <support@axon.system>\r\n"
        "Subject: =?UTF-8?Q?Voice?=\r\n"
        f"Message-ID: <Asterisk-1-1804289383-hotline-41731@pbx.axon.system>\r\n{caller}"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{bound}"\r\n\r\n\r\n'
        f"This is a multi-part message in MIME format.\r\n\r\n--{bound}\r\n"
        "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"{body}\r\n\r\n--{bound}\r\n"
        'Content-Type: audio/x-wav; name="msg0000.wav"\r\n'
        "Content-Transfer-Encoding: base64\r\nContent-Description: Voicemail sound attachment.\r\n"
        'Content-Disposition: attachment; filename="msg0000.wav"\r\n\r\n'
        f"{audio}\r\n\r\n--{bound}--\r\n.\r\n"
    ).encode()


@pytest.mark.parametrize(("cidnum", "phone"), [("89001234567", "+79001234567"), ("", None)])
def test_asterisks_fallback_voicemail_is_a_phone_request_of_the_caller(
    mail_settings, db, dovecot, folder, smtp, cidnum, phone
):
    # The dialplan's fallback (the hotline could not take the call) e-mails the voice
    # message from the PBX's address: the request is the caller's, as a call makes it.
    settings = mail_settings()
    with db.session() as session:  # the caller's number must not be read as a request's
        registry.open_request(session, kind="incident", channel="email", actor="email:a@plant.example")
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64)
    deliver(dovecot, folder, asterisk_voicemail(cidnum, "Petrov" if cidnum else "", wav))

    [result] = poll(settings)
    assert result.outcome == "created"
    [_, request] = requests_of(db)
    assert (request.channel, request.status, request.kind_confirmed) == ("phone", "new", False)
    assert (request.contact_phone, request.contact_email) == (phone, None)
    assert request.contact_name == ("Petrov" if cidnum else None)
    assert request.subject == registry.VOICE_SUBJECT and request.description == ""
    with db.session() as session:
        request = registry.get_request(session, request.number)
        [attachment] = request.attachments
        assert (attachment.filename, attachment.transcription_state) == ("msg0000.wav", "pending")
        assert resolve(settings.data_dir, attachment.path).read_bytes() == wav
        [email_in] = [e for e in request.events if e.action == "email_in"]
        caller = f"с номера {phone}" if phone else "со скрытого номера"
        assert email_in.text.startswith(f"голосовое сообщение {caller}, оставленное на резервном")
        assert {e.actor for e in request.events} == {f"caller:{phone or 'unknown'}"}
    # No automatic reply to the PBX's address; a caller's mobile gets the number by SMS.
    drain(settings, db)
    assert smtp.messages == []


def test_a_message_without_message_id_is_still_taken_once(mail_settings, db, dovecot, folder):
    settings = mail_settings()
    raw = b"From: ivan@plant.example\r\nSubject: no id\r\n\r\nbody text\r\n"
    deliver(dovecot, folder, raw)
    deliver(dovecot, folder, raw)
    assert [r.outcome for r in poll(settings)] == ["created", "duplicate"]
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(EmailRow)) == 1


def test_a_backlog_larger_than_one_fetch_batch_is_taken_in_whole(mail_settings, db, dovecot, folder):
    settings = mail_settings()
    with dovecot.client() as client:
        for i in range(23):  # the mailbox fetches 20 at a time
            client.append(folder, customer_mail(f"Заявка {i}", f"текст {i}").as_bytes())
    assert [r.outcome for r in poll(settings)] == ["created"] * 23
    assert [r.subject for r in requests_of(db)] == [f"Заявка {i}" for i in range(23)]
    assert folder_state(dovecot, folder) == {"all": 23, "unseen": 0}
