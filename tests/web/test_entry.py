"""An engineer enters a request taken by other means, and adds files to a request."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from hotline import registry, users
from hotline.models import Attachment, Request
from hotline.storage import resolve
from tests.web.conftest import PASSWORD, csrf_token, login, post
from tests.web.test_browser import WAIT_MS, _shot, browser, server  # noqa: F401 - fixtures
from tests.web.test_phone_and_live import PHONE, _login, _no_sideways_scroll
from web import create_app


def _files(*named: tuple[str, bytes]) -> list[tuple[io.BytesIO, str, str]]:
    """Files as a browser sends them, each declared text/html (the hotline must not care)."""
    return [(io.BytesIO(data), name, "text/html") for name, data in named]


def test_an_engineer_registers_a_request_with_its_files(engineer, app, settings):
    page = engineer.get("/requests").get_data(as_text=True)
    assert 'href="/requests/new"' in page
    form = engineer.get("/requests/new").get_data(as_text=True)
    assert "Новая заявка" in form and 'enctype="multipart/form-data"' in form
    data = {
        "kind": "problem",
        "subject": "",
        "description": "Сканер на линии 2 теряет коды по ночам.\nЖурнал с флешки приложен.",
        "name": "Пётр Сидоров",
        "organisation": "Завод «Уралхиммаш»",
        "phone": "8 (343) 222-33-44",
        "email": "sidorov@plant.example",
        "files": _files(("scanner.log", b"2026-12-07 ERROR camera 2\n"), ("<script>.html", b"<p>packet</p>")),
    }
    response = post(engineer, "/requests/new", data, content_type="multipart/form-data")
    assert response.status_code == 302
    number = response.headers["Location"].rsplit("/", 1)[-1]
    shown = engineer.get(f"/requests/{number}").get_data(as_text=True)
    assert f"Заявка {number} зарегистрирована." in shown
    assert "scanner.log" in shown and "_script_.html" in shown  # a name made safe to store
    db = app.extensions["hotline.db"]
    with db.session() as s:
        req = registry.get_request(s, number)
        assert (req.channel, req.kind, req.kind_confirmed, req.status) == ("web", "problem", True, "new")
        assert req.subject == "Сканер на линии 2 теряет коды по ночам."  # the first line
        assert (req.contact_phone, req.contact_email) == ("+73432223344", "sidorov@plant.example")
        assert (req.contact_name, req.organisation) == ("Пётр Сидоров", "Завод «Уралхиммаш»")
        assert {e.actor for e in req.events} == {"engineer:ivanov"}
        files = {a.filename: a for a in req.attachments}
        stored = resolve(settings.data_dir, files["scanner.log"].path)
        assert stored.read_bytes() == b"2026-12-07 ERROR camera 2\n"
        # The type is the name's, never what the browser declared; HTML is downloaded, not shown.
        assert files["scanner.log"].content_type == "application/octet-stream"
        html = next(a for name, a in files.items() if name.endswith(".html"))
    download = engineer.get(f"/files/{html.id}")
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert download.headers["Content-Disposition"].startswith("attachment")
    download.close()


def test_a_form_with_mistakes_keeps_what_was_typed_and_saves_nothing(engineer, app):
    data = {
        "kind": "",
        "description": "  ",
        "name": "Пётр",
        "phone": "12",
        "email": "sidorov at plant",
        "files": _files(("photo.png", b"\x89PNG")),
    }
    response = post(engineer, "/requests/new", data, content_type="multipart/form-data")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    for problem in ("Выберите вид заявки.", "Опишите, что случилось.", "Телефон не распознан",
                    "Адрес e-mail не распознан.", "Файлы не сохранены: выберите их снова."):  # fmt: skip
        assert problem in page
    assert 'value="Пётр"' in page and 'value="12"' in page and 'value="sidorov at plant"' in page
    with app.extensions["hotline.db"].session() as s:
        assert s.scalars(select(Request)).all() == []
        assert s.scalars(select(Attachment)).all() == []


def test_files_for_an_existing_request(engineer, app, voicemail, monkeypatch):
    queued = []
    monkeypatch.setattr("web.requests.enqueue_transcription", lambda _settings, i: queued.append(i))
    url = f"/requests/{voicemail.number}/files"
    assert "add-files" in engineer.get(f"/requests/{voicemail.number}").get_data(as_text=True)
    files = _files(("call.wav", b"RIFF....WAVE"), ("screen.png", b"\x89PNG"))
    multipart = {"content_type": "multipart/form-data", "follow_redirects": True}
    response = post(engineer, url, {"files": files}, **multipart)
    assert "Вложено файлов: 2." in response.get_data(as_text=True)
    with app.extensions["hotline.db"].session() as s:
        req = registry.get_request(s, voicemail.number)
        added = [a for a in req.attachments if a.filename in ("call.wav", "screen.png")]
        assert {a.content_type for a in added} == {"audio/x-wav", "image/png"}
        [audio] = [a for a in added if a.is_audio]
        assert queued == [audio.id] and audio.transcription_state == "pending"
        history = [e.text for e in req.events if e.action == "attachment"][-2:]
        assert history == ["call.wav (12 байт)", "screen.png (4 байта)"]
    # No file chosen, or a forged form without the token: nothing stored.
    response = post(engineer, url, {}, **multipart)
    assert "Выберите файлы." in response.get_data(as_text=True)
    forged = engineer.post(url, data={"files": _files(("x.txt", b"x"))}, content_type="multipart/form-data")
    assert forged.status_code == 400
    with app.extensions["hotline.db"].session() as s:
        assert s.scalars(select(Attachment).where(Attachment.filename == "x.txt")).all() == []
    assert csrf_token(engineer, "/")  # the session goes on


def test_a_request_with_files_on_either_database(any_db, make_settings):
    settings = make_settings(HOTLINE_DATABASE_URL=any_db.url)
    with any_db.session() as s:
        users.create_user(s, "ivanov", password=PASSWORD, name="Иван Иванов", role="engineer")
    client = create_app({"TESTING": True}, settings=settings, db=any_db).test_client()
    assert login(client, "ivanov").status_code == 302
    data = {"kind": "incident", "description": "Линия 2 стоит", "email": "a@plant.example"}
    data["files"] = _files(("scanner.log", b"ERROR camera 2\n"), ("call.wav", b"RIFF....WAVE"))
    response = post(client, "/requests/new", data, content_type="multipart/form-data")
    number = response.headers["Location"].rsplit("/", 1)[-1]
    with any_db.session() as s:
        req = registry.get_request(s, number)
        assert (req.channel, req.contact_email) == ("web", "a@plant.example")
        assert sorted((a.filename, a.is_audio) for a in req.attachments) == [
            ("call.wav", True),
            ("scanner.log", False),
        ]
        assert [e.text for e in req.events if e.action == "attachment"] == [
            "scanner.log (15 байт)",
            "call.wav (12 байт)",
        ]


def test_a_body_over_the_attachment_limit_is_refused_and_saves_nothing(make_settings, db, accounts):
    # The form's limit is HOTLINE_ATTACHMENT_MAX_BYTES (and 1 MB for the form around it).
    settings = make_settings(HOTLINE_ATTACHMENT_MAX_BYTES="1024")
    client = create_app({"TESTING": True}, settings=settings, db=db).test_client()
    assert login(client, "ivanov").status_code == 302
    fields = {"csrf_token": csrf_token(client, "/"), "kind": "incident", "description": "Журнал"}
    fields["files"] = FileStorage(io.BytesIO(b"x" * ((1 << 20) + 2048)), "big.log")
    boundary, body = encode_multipart(MultiDict(fields))  # in memory, as a socket would bring it
    multipart = f"multipart/form-data; boundary={boundary}"
    response = client.post("/requests/new", data=body, content_type=multipart)
    assert response.status_code == 413 and "Слишком большой объём" in response.get_data(as_text=True)
    with db.session() as s:
        assert s.scalars(select(Request)).all() == [] and s.scalars(select(Attachment)).all() == []


def test_uploads_need_a_login(app, voicemail):
    anonymous = app.test_client()
    assert anonymous.get("/requests/new").status_code == 302
    response = anonymous.post(f"/requests/{voicemail.number}/files", data={"files": _files(("x.txt", b"x"))},
                              content_type="multipart/form-data")  # fmt: skip
    assert response.status_code in (302, 400)


@pytest.mark.slow
def test_on_a_phone_in_chromium(server, browser, app, accounts, tmp_path):  # noqa: F811
    context = browser.new_context(locale="ru-RU", viewport=PHONE, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    _login(page, server, "ivanov")
    page.goto(f"{server}/requests")
    page.click("#new-request-link")
    _no_sideways_scroll(page)
    page.select_option("select[name=kind]", "incident")
    page.fill("textarea[name=description]", "Линия 1 стоит: камера не видит коды.")
    page.fill("input[name=phone]", "+7 912 000-11-22")
    log = tmp_path / "camera.log"
    log.write_text("ERROR camera 1\n")
    page.set_input_files("#new-request input[type=file]", str(log))
    _shot(page, tmp_path, "new-request-phone")
    page.click("#new-request button[type=submit]")
    page.wait_for_selector(".flash.ok")
    assert "зарегистрирована" in page.inner_text(".flash.ok")
    assert page.locator("ul.files a", has_text="camera.log").count() == 1
    _no_sideways_scroll(page)
    context.close()
    with app.extensions["hotline.db"].session() as s:
        [req] = s.scalars(select(Request)).all()
        assert (req.channel, req.contact_phone) == ("web", "+79120001122")
        assert req.subject == "Линия 1 стоит: камера не видит коды."
