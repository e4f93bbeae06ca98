"""Searching the request list as an engineer types: word forms, №, a mistyped number."""

from __future__ import annotations

from hotline import registry


def test_a_mistyped_number_on_the_list_page_suggests_the_request(engineer, voicemail):
    number = voicemail.number
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)  # the check digit off by one
    page = engineer.get(f"/requests?q=№{wrong}").get_data(as_text=True)
    assert "Заявок не найдено" in page
    assert f'Возможно, вы имели в виду <a class="mono" href="/requests/{number}">{number}</a>' in page
    assert "Возможно" not in engineer.get(f"/requests?q={number}").get_data(as_text=True)


def test_the_list_finds_word_forms_in_transcripts_and_numbers_with_their_sign(app, engineer, voicemail):
    with app.extensions["hotline.db"].session() as s:
        registry.open_request(s, kind="problem", channel="email", actor="cli", subject="Калибровка весов")
    page = engineer.get("/requests?q=калибровки").get_data(as_text=True)
    assert "Калибровка весов" in page and voicemail.number not in page
    page = engineer.get("/requests?q=линии+читают").get_data(as_text=True)  # «линия … читает» heard
    assert f"/requests/{voicemail.number}" in page and "Калибровка весов" not in page
    page = engineer.get(f"/requests?q=№ {voicemail.number}").get_data(as_text=True)
    assert f"/requests/{voicemail.number}" in page and "Калибровка весов" not in page
