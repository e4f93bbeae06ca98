"""The voicemail review and a request's page: every action an engineer takes."""

from __future__ import annotations

from sqlalchemy import select

from hotline import registry
from hotline.models import Request, RequestEvent, Transcript, TranscriptionState
from hotline.transcription.russian_numbers import normalize_numbers
from tests.web.conftest import post


def _request(app, number: str) -> Request:
    with app.extensions["hotline.db"].session() as s:
        req = registry.get_request(s, number)
        req.events, req.assignee  # noqa: B018 - load before the session ends
        return req


def test_review_queue_lists_phone_requests_waiting(engineer, app, voicemail):
    with app.extensions["hotline.db"].session() as s:
        registry.open_request(s, kind="problem", channel="email", actor="email:a@b.ru", subject="Письмо")
    page = engineer.get("/review").get_data(as_text=True)
    assert voicemail.number in page and "Письмо" not in page
    assert "линия три не читает коды" in page
    assert "1 голосовая заявка ждёт разбора" in engineer.get("/requests").get_data(as_text=True)
    post(engineer, f"/requests/{voicemail.number}/status", {"status": "in_progress"})
    assert "Все голосовые заявки разобраны" in engineer.get("/review").get_data(as_text=True)


def test_request_page_shows_player_transcript_and_history(engineer, voicemail):
    page = engineer.get(f"/requests/{voicemail.number}").get_data(as_text=True)
    assert f'<audio controls preload="metadata" src="/files/{voicemail.attachment_id}">' in page
    assert '<span class="word low" data-start="0.7" title="41 %">три</span>' in page
    assert '<span class="word" data-start="0.2" title="95 %">линия</span>' in page
    assert "С цифрами: линия 3 не читает коды" in page
    assert "voicemail.wav" in page and "вид выбран звонившим" in page.lower()
    # Only the transitions the lifecycle allows from "new".
    options = page.split('name="status"')[1].split("</select>")[0]
    assert 'value="in_progress"' in options and 'value="processed"' not in options
    assert "создана" in page and "звонивший 8\N{NO-BREAK SPACE}(900)\N{NO-BREAK SPACE}123-45-67" in page


def test_transcription_states_are_shown(engineer, app, voicemail):
    with app.extensions["hotline.db"].session() as s:
        att = s.get(Transcript, 1).attachment
        att.transcription_state = TranscriptionState.FAILED
        att.transcription_error = "модель не найдена"
        att.transcription_attempts = 3
    page = engineer.get(f"/requests/{voicemail.number}").get_data(as_text=True)
    assert "Расшифровка не удалась: модель не найдена (попыток: 3)" in page
    with app.extensions["hotline.db"].session() as s:
        s.get(Transcript, 1).attachment.transcription_state = TranscriptionState.PENDING
    assert "ждёт расшифровки" in engineer.get(f"/requests/{voicemail.number}").get_data(as_text=True)


def test_status_change_along_the_lifecycle(engineer, app, voicemail):
    url = f"/requests/{voicemail.number}/status"
    done = post(engineer, url, {"status": "in_progress", "note": "взял"}, follow_redirects=True)
    assert "Статус: в работе." in done.get_data(as_text=True)
    req = _request(app, voicemail.number)
    assert req.status == "in_progress" and req.first_response_at is not None
    assert req.events[-1].actor == "engineer:ivanov" and req.events[-1].text == "взял"
    # Why it is done is said, and goes to the customer: no comment, no change.
    refused = post(engineer, url, {"status": "processed"}, follow_redirects=True).get_data(as_text=True)
    assert "Напишите в комментарии, что сделано: он уйдёт заказчику вместе с уведомлением." in refused
    assert not _request(app, voicemail.number).archived
    post(engineer, url, {"status": "processed", "note": "заменили кабель камеры"})
    assert _request(app, voicemail.number).archived
    refused = post(engineer, url, {"status": "in_progress"}, follow_redirects=True).get_data(as_text=True)
    assert "Напишите в комментарии, почему заявка открывается снова." in refused
    assert _request(app, voicemail.number).archived
    assert voicemail.number in engineer.get("/archive").get_data(as_text=True)
    assert voicemail.number not in engineer.get("/requests").get_data(as_text=True)


def test_illegal_transition_is_refused_with_a_clear_message(engineer, app, voicemail):
    response = post(
        engineer, f"/requests/{voicemail.number}/status", {"status": "processed"}, follow_redirects=True
    )
    text = response.get_data(as_text=True)
    assert "Этот переход не разрешён: заявка сейчас в статусе «новая». Можно перевести в: «в работе»." in text
    assert _request(app, voicemail.number).status == "new"
    bogus = post(
        engineer, f"/requests/{voicemail.number}/status", {"status": "deleted"}, follow_redirects=True
    )
    assert "Неизвестный статус." in bogus.get_data(as_text=True)
    post(engineer, f"/requests/{voicemail.number}/status", {"status": "in_progress"})
    page = engineer.get(f"/requests/{voicemail.number}").get_data(as_text=True)
    options = page.split('name="status"')[1].split("</select>")[0]
    assert 'value="processed"' in options and 'value="awaiting_info"' not in options
    silent = post(
        engineer, f"/requests/{voicemail.number}/status", {"status": "awaiting_info"}, follow_redirects=True
    )
    assert "задайте ему вопрос" in silent.get_data(as_text=True)
    assert _request(app, voicemail.number).status == "in_progress"


def test_transcript_correction_keeps_the_original(engineer, app, voicemail):
    url = f"/requests/{voicemail.number}/transcripts/{voicemail.attachment_id}"
    response = post(engineer, url, {"text": "Линия 3 не читает QR-коды"}, follow_redirects=True)
    assert "Исправленная расшифровка сохранена." in response.get_data(as_text=True)
    with app.extensions["hotline.db"].session() as s:
        t = s.scalars(select(Transcript)).one()
        assert t.text == "линия три не читает коды"
        assert (t.corrected_text, t.corrected_by) == ("Линия 3 не читает QR-коды", "ivanov")
        actions = s.scalars(
            select(RequestEvent.action).where(RequestEvent.request_id == voicemail.request_id)
        ).all()
        assert "transcript_corrected" in actions
    empty = post(engineer, url, {"text": "  "}, follow_redirects=True)
    assert "Исправленный текст пуст." in empty.get_data(as_text=True)
    # Another request's number with this attachment: not found.
    with app.extensions["hotline.db"].session() as s:
        other = registry.open_request(s, kind="problem", channel="web", actor="cli").number
    assert (
        post(engineer, f"/requests/{other}/transcripts/{voicemail.attachment_id}", {"text": "x"}).status_code
        == 404
    )


def test_note_kind_assignee_and_clarification(engineer, app, voicemail, accounts):
    base = f"/requests/{voicemail.number}"
    for empty in ("", "\x01\x02 \u202e"):  # control characters alone are empty too, said in Russian
        page = post(engineer, base + "/note", {"text": empty}, follow_redirects=True).get_data(as_text=True)
        assert "Заметка пуста." in page and "empty" not in page
    post(engineer, base + "/note", {"text": "Перезвонить после обеда"})
    post(engineer, base + "/kind", {"kind": "problem"})
    post(engineer, base + "/assign", {"user_id": str(accounts["engineer"])})
    response = post(engineer, base + "/clarify", {"question": "Какая версия ПСР QR?"}, follow_redirects=True)
    # No SMTP or SMS configured here: the engineer is told the truth.
    text = response.get_data(as_text=True)
    assert "Вопрос сохранён в заявке, но заказчику не отправлен." in text
    assert "SMS не отправляются — их отправку не настроил администратор" in text
    req = _request(app, voicemail.number)
    assert req.kind == "problem" and req.kind_confirmed
    assert req.assignee is not None and req.assignee.login == "ivanov"
    assert req.status == "awaiting_info"
    actions = [e.action for e in req.events]
    assert actions[-5:] == ["note", "kind", "assigned", "status", "clarification_requested"]
    assert req.events[-1].text == "Какая версия ПСР QR?"
    page = engineer.get(base).get_data(as_text=True)
    assert "Перезвонить после обеда" in page and "Иван Иванов" in page
    assert "Запросить уточнение" not in page  # already waiting for the customer
    post(engineer, base + "/assign", {"user_id": ""})
    assert _request(app, voicemail.number).assignee is None
    assert "Такого инженера нет." in post(
        engineer, base + "/assign", {"user_id": "999"}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Неизвестный вид" in post(engineer, base + "/kind", {"kind": "x"}, follow_redirects=True).get_data(
        as_text=True
    )


def test_unknown_or_malformed_numbers_are_404(engineer):
    assert engineer.get("/requests/10009").status_code == 404  # wrong check digit
    assert engineer.get("/requests/99999990").status_code in (404,)
    assert engineer.get("/requests/abc").status_code == 404
    assert post(engineer, "/requests/10009/status", {"status": "in_progress"}).status_code == 404


def test_request_list_filters_and_search(engineer, app, voicemail, accounts):
    with app.extensions["hotline.db"].session() as s:
        mail = registry.open_request(
            s,
            kind="service_request",
            channel="email",
            actor="email:x@plant.ru",
            email="x@plant.ru",
            subject="ЗАМЕНА камеры на линии Ёлочка",
            description="Просим заменить камеру",
        )
        registry.assign(s, mail, s.get(registry.User, accounts["admin"]), actor="cli")
        mail_number = mail.number

    def listed(**args: str) -> str:
        return engineer.get("/requests", query_string=args).get_data(as_text=True)

    assert voicemail.number in listed() and mail_number in listed()
    assert mail_number in listed(channel="email") and voicemail.number not in listed(channel="email")
    assert voicemail.number in listed(kind="incident") and mail_number not in listed(kind="incident")
    assert mail_number in listed(assignee=str(accounts["admin"])) and voicemail.number not in listed(
        assignee=str(accounts["admin"])
    )
    assert voicemail.number in listed(assignee="0") and mail_number not in listed(assignee="0")
    assert voicemail.number in listed(status="new")
    # Search: Cyrillic in any case (ё = е), phone as typed, number, transcript text.
    for query in ("замена", "ЕЛОЧКА", "камеру"):
        page = listed(q=query)
        assert mail_number in page and voicemail.number not in page, query
    assert voicemail.number in listed(q="8 900 123-45-67") and mail_number not in listed(q="8 900 123-45-67")
    assert voicemail.number in listed(q=voicemail.number) and mail_number not in listed(q=voicemail.number)
    assert voicemail.number in listed(q="ЧИТАЕТ") and mail_number not in listed(q="ЧИТАЕТ")
    assert "Заявок не найдено." in listed(q="[*?%_")


def test_request_list_pages(engineer, app):
    with app.extensions["hotline.db"].session() as s:
        numbers = [
            registry.open_request(s, kind="incident", channel="web", actor="cli", subject=f"№{i}").number
            for i in range(55)
        ]
    first = engineer.get("/requests").get_data(as_text=True)
    second = engineer.get("/requests?page=2").get_data(as_text=True)
    assert numbers[-1] in first and numbers[0] not in first
    assert numbers[0] in second and numbers[-1] not in second
    assert "Следующая" in first and "Следующая" not in second


def test_review_flow_on_both_databases(any_db, tmp_path):
    """The pages and actions on PostgreSQL too (row locks, regex search), not only SQLite."""
    from hotline import users
    from hotline.settings import load_settings
    from tests.web.conftest import PASSWORD, login
    from web import create_app

    settings = load_settings(
        {
            "HOTLINE_DATA_DIR": str(tmp_path / "data"),
            "HOTLINE_DATABASE_URL": any_db.url,
            "HOTLINE_SECRET_KEY": "k",
        }
    )
    with any_db.session() as s:
        users.create_user(s, "ivanov", password=PASSWORD)
        number = registry.open_request(
            s,
            kind="incident",
            channel="phone",
            actor="caller:+79001234567",
            phone="+79001234567",
            subject="Сканер на линии 2",
        ).number
    client = create_app({"TESTING": True}, settings=settings, db=any_db).test_client()
    assert login(client, "ivanov").status_code == 302
    for url in [
        "/",
        "/calls",
        "/requests",
        "/archive",
        "/review",
        f"/requests/{number}",
        "/requests?q=СКАНЕР",
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
    assert number in client.get("/requests?q=сканер").get_data(as_text=True)
    post(client, f"/requests/{number}/status", {"status": "in_progress"})
    post(client, f"/requests/{number}/clarify", {"question": "Какая камера?"})
    with any_db.session() as s:
        assert registry.get_request(s, number).status == "awaiting_info"


DIGIT_WORDS = ["ноль", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять"]


def test_request_page_links_the_requests_the_caller_named(engineer, app, voicemail):
    with app.extensions["hotline.db"].session() as s:
        earlier = registry.open_request(s, kind="incident", channel="phone", actor="cli").number
        spoken = " ".join(DIGIT_WORDS[int(d)] for d in earlier)  # "один ноль ноль ..."
        t = s.scalars(select(Transcript)).one()
        t.text = f"это опять по заявке {spoken} линия не работает"
        t.normalized_text = normalize_numbers(t.text)
    page = engineer.get(f"/requests/{voicemail.number}").get_data(as_text=True)
    assert "Упомянуты заявки" in page and f'href="/requests/{earlier}"' in page
    # The engineer's correction is what counts: a misheard number fixed by hand.
    url = f"/requests/{voicemail.number}/transcripts/{voicemail.attachment_id}"
    post(engineer, url, {"text": "линия не работает, заявки не называл"})
    assert "Упомянуты заявки" not in engineer.get(f"/requests/{voicemail.number}").get_data(as_text=True)
    post(engineer, url, {"text": f"это опять по заявке {spoken}"})
    page = engineer.get(f"/requests/{voicemail.number}").get_data(as_text=True)
    assert f'href="/requests/{earlier}"' in page
    # The request named links back to the voicemail, in its history.
    page = engineer.get(f"/requests/{earlier}").get_data(as_text=True)
    assert "упоминание в другой заявке" in page
    link = f'<a class="mono" href="/requests/{voicemail.number}">'
    assert f"упомянута в голосовом сообщении заявки {link}" in page
