"""Reading raw messages: charsets, HTML, broken MIME, automatic mail (no servers needed)."""

from __future__ import annotations

from hotline.mail.compose import base_subject
from hotline.mail.parse import decode_bytes, html_to_text, parse_message
from hotline.phones import international_phone
from hotline.registry import suggest_kind as guess_kind

TEXT = "Сканер на линии 3 не читает коды"


def test_declared_legacy_charsets_are_honoured():
    for charset in ("koi8-r", "windows-1251", "cp866"):
        assert decode_bytes(TEXT.encode(charset), charset) == (TEXT, None)


def test_undeclared_and_wrongly_declared_russian_is_guessed_with_a_note():
    for charset in ("koi8-r", "cp1251"):
        text, note = decode_bytes(TEXT.encode(charset), None)
        assert text == TEXT and "не указана" in note
    text, note = decode_bytes(TEXT.encode("cp1251"), "us-ascii")
    assert text == TEXT and "не в указанной кодировке" in note
    text, note = decode_bytes(TEXT.encode("utf-8"), "no-such-charset")
    assert text == TEXT and "неизвестная кодировка" in note


def test_garbage_bytes_never_raise():
    text, note = decode_bytes(bytes(range(256)), "utf-8")
    assert isinstance(text, str) and note


def test_html_to_text_drops_scripts_styles_and_markup():
    html = (
        "<style>.x{}</style><script>steal()</script><h1>Заголовок</h1>"
        "<p>строка&nbsp;1<br>строка 2</p><iframe src=evil>внутри</iframe>"
    )
    text = html_to_text(html)
    assert [line for line in text.splitlines() if line] == ["Заголовок", "строка 1", "строка 2"]


def test_rfc2047_subjects_and_raw_8bit_headers():
    raw = (
        b"From: =?windows-1251?B?yOLg7SDP5fLw7uI=?= <ivan@plant.example>\r\n"
        b"Subject: =?koi8-r?Q?=F3=C2=CF=CA?= \xf1\xea\xe0\xed\xe5\xf0\xe0\r\n\r\nx"
    )
    mail = parse_message(raw)
    assert mail.from_name == "Иван Петров"
    assert mail.subject == "Сбой сканера"


def test_message_without_id_gets_a_stable_synthetic_one():
    raw = b"From: a@plant.example\r\nSubject: x\r\n\r\nbody"
    assert parse_message(raw).message_id == parse_message(raw).message_id
    assert parse_message(raw).synthetic_id
    assert parse_message(raw + b"!").message_id != parse_message(raw).message_id


def test_truncated_multipart_keeps_text_and_reports_defects():
    raw = (
        b"From: a@plant.example\r\nContent-Type: multipart/mixed; boundary=Q\r\n\r\n"
        b"--Q\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + "текст".encode()
    )
    mail = parse_message(raw)
    assert mail.malformed and "текст" in mail.text


def test_multipart_without_boundary_is_read_as_text():
    raw = b"From: a@plant.example\r\nContent-Type: multipart/mixed\r\n\r\nplain words\r\n"
    mail = parse_message(raw)
    assert mail.malformed and "plain words" in mail.text


def test_forwarded_message_is_kept_as_an_eml_attachment():
    raw = (
        b"From: a@plant.example\r\nContent-Type: multipart/mixed; boundary=Q\r\n\r\n"
        b"--Q\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
        b"--Q\r\nContent-Type: message/rfc822\r\n\r\nFrom: b@x\r\nSubject: inner\r\n\r\ninner body\r\n"
        b"--Q--\r\n"
    )
    mail = parse_message(raw)
    assert mail.text == "see below"
    [att] = mail.attachments
    assert att.content_type == "message/rfc822" and b"inner body" in att.data


def test_missing_sender_is_noted():
    mail = parse_message(b"Subject: x\r\n\r\nbody")
    assert mail.from_addr == "" and any("отправителя" in n for n in mail.notes)


def test_kind_keywords_and_subject_helpers():
    assert guess_kind("Сбой линии") == "incident"
    assert guess_kind("Проблема повторяется каждый день") == "problem"
    assert guess_kind("Прошу настроить доступ") == "service_request"
    assert guess_kind("Добрый день") is None
    # A fault after an update is a fault: a tie goes to the more urgent kind.
    assert guess_kind("Не работает сканер на линии 5 после обновления") == "incident"
    assert guess_kind("Запрос на обслуживание") == "service_request"
    # Words after quotes, brackets and colons count.
    assert guess_kind("Сканер «Не работает» после обновления") == "incident"
    assert guess_kind("Тема: (ошибка) при печати") == "incident"
    assert guess_kind("Просьба:перенастроить камеру") == "service_request"
    assert base_subject("RE: Fwd: [Заявка 10008] Сканер") == "Сканер"
    assert international_phone("+73435674530") == "+7 343 567-45-30"


def test_a_stranger_quoting_a_number_adds_information_but_gets_no_notifications(settings, db):
    from email.message import EmailMessage

    from hotline import registry
    from hotline.mail.intake import ingest

    with db.session() as s:
        number = registry.open_request(
            s, kind="incident", channel="phone", actor="caller:+79001234567", phone="+79001234567"
        ).number
    msg = EmailMessage()
    msg["From"] = "someone@elsewhere.example"
    msg["To"] = "support@axon.system"
    msg["Subject"] = f"Заявка {number}"
    msg["Message-ID"] = "<x1@elsewhere.example>"
    msg.set_content("Дополнение к заявке")
    result = ingest(settings, db, msg.as_bytes())
    assert (result.outcome, result.request_number) == ("added", number)
    with db.session() as s:
        request = registry.get_request(s, number)
        assert request.contact_email is None and request.contact_phone == "+79001234567"
        assert any("Дополнение к заявке" in e.text for e in request.events if e.action == "information_added")
