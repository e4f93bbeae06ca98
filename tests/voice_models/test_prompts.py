import datetime as dt

import pytest

from ivr.speech import Date, Number, Prompt, render_keys, render_text
from voice_models.prompts import all_prompt_keys, prompt_audio_path, prompt_text


def test_every_key_has_russian_text():
    keys = all_prompt_keys()
    assert len(keys) == len(set(keys))
    for key in keys:
        text = prompt_text(key)
        assert text.strip()
        assert any("а" <= ch <= "я" or ch == "ё" for ch in text.lower()), key


def test_dynamic_keys_exist():
    keys = set(all_prompt_keys())
    assert {f"digit_{d}" for d in range(10)} <= keys
    assert {f"day_{d}" for d in range(1, 32)} <= keys
    assert {f"month_{m}" for m in range(1, 13)} <= keys
    assert {"kind_incident", "kind_problem", "kind_service_request"} <= keys
    assert {"status_new", "status_in_progress", "status_awaiting_info", "status_processed"} <= keys


def test_dates_are_correct_russian():
    assert render_text([Date(dt.date(2025, 11, 24))]) == "двадцать четвёртое ноября."
    assert render_text([Date(dt.date(2025, 3, 3))]) == "третье марта."
    assert render_text([Date(dt.date(2024, 1, 1), with_year=True)]) == (
        "первое января две тысячи двадцать четвёртого года."
    )
    assert render_keys([Date(dt.date(2024, 1, 31), with_year=True)]) == ["day_31", "month_1", "year_2024"]


def test_number_is_read_digit_by_digit():
    segments = [Prompt("request_number"), Number("10008")]
    assert render_keys(segments) == ["request_number", "digit_1", "digit_0", "digit_0", "digit_0", "digit_8"]
    assert render_text(segments) == "Заявка номер один, ноль, ноль, ноль, восемь."


def test_unknown_key_is_an_error():
    with pytest.raises(KeyError):
        render_text([Prompt("no_such_prompt")])
    with pytest.raises(KeyError):
        prompt_audio_path("no_such_prompt")
    assert prompt_audio_path("menu").name == "menu.wav"
