"""Phone numbers parsed once (hotline.phones) and text cleaned once (hotline.cleaning)."""

from __future__ import annotations

import pytest

from hotline.cleaning import clean, clean_line, clean_text
from hotline.errors import UserError
from hotline.phones import (
    PhoneKind,
    dial_number,
    display_phone,
    parse_phone,
    require_phone,
    russian_mobile,
    same_number,
    search_digits,
    sms_number,
)


@pytest.mark.parametrize(
    ("raw", "stored", "kind", "mobile"),
    [
        ("+73435674530", "+73435674530", PhoneKind.NUMBER, False),
        ("8 (343) 567-45-30", "+73435674530", PhoneKind.NUMBER, False),
        ("73435674530", "+73435674530", PhoneKind.NUMBER, False),
        ("89001234567", "+79001234567", PhoneKind.NUMBER, True),
        ("sip:+79001234567@pbx.example", "+79001234567", PhoneKind.NUMBER, True),
        ("+44 7911 123456", "+447911123456", PhoneKind.NUMBER, True),
        ("sip:alice@pbx.example", "sip:alice@pbx.example", PhoneKind.SIP, False),
        ("101", "101", PhoneKind.OTHER, False),
        ("+7900\x00", "+7900", PhoneKind.OTHER, False),
    ],
)
def test_parse_phone(raw, stored, kind, mobile):
    phone = parse_phone(raw)
    assert phone is not None
    assert (phone.stored, phone.kind, phone.mobile) == (stored, kind, mobile)


# Twilio's withheld callers, as words and as the words' keypad digits (ANONYMOUS, RESTRICTED).
@pytest.mark.parametrize(
    "raw", [None, "", "  ", "anonymous", "Unknown", "<unknown>", "restricted", "+266696687", "+7378742833"]
)
def test_withheld_numbers_are_none(raw):
    assert parse_phone(raw) is None


def test_a_long_sip_uri_is_cut_to_the_column_and_flagged():
    raw = "sip:" + "a" * 100 + "@pbx.example"
    phone = parse_phone(raw)
    assert phone is not None and phone.truncated and phone.stored == raw[:40] and phone.original == raw


def test_display_and_sms():
    assert display_phone("+73435674530") == "8 (343) 567-45-30"
    assert display_phone("+447911123456") == "+44 7911 123456"
    assert display_phone("sip:alice@pbx") == "sip:alice@pbx" and display_phone(None) == ""
    assert sms_number("+79001234567") == "+79001234567"
    assert sms_number("+73435674530") is None and sms_number("101") is None and sms_number(None) is None


@pytest.mark.parametrize(
    ("phone", "mobile"),
    [
        ("+79001234567", "+79001234567"),
        ("79001234567", "+79001234567"),
        ("89001234567", "+79001234567"),
        ("+7 (900) 123-45-67", "+79001234567"),
        ("+73435674530", None),  # a landline in Yekaterinburg
        ("+447911123456", None),  # a mobile, not a Russian one
        ("unknown", None),
        (None, None),
        ("+7900123456", None),  # a digit short
    ],
)
def test_russian_mobiles(phone, mobile):
    assert russian_mobile(phone) == mobile


@pytest.mark.parametrize(
    ("dialled", "ours"),
    [
        ("+73435674530", True),
        ("73435674530", True),
        ("83435674530", True),
        ("3435674530", True),
        ("8 (343) 567-45-30", True),
        ("sip:+73435674530@pbx.example", True),
        ("101", False),
        ("s", False),
        ("", False),
        (None, False),
        ("+73435674531", False),
        ("+43435674530", False),  # the same ten digits in another country
    ],
)
def test_same_number(dialled, ours):
    assert same_number(dialled, "+73435674530") is ours


@pytest.mark.parametrize(
    ("stored", "dial"),
    [
        ("+79001234567", "+79001234567"),
        ("8 (900) 123-45-67", "+79001234567"),
        ("101", "101"),
        ("+7900123456", "+7900123456"),  # not a valid number, but digits a trunk may know
        ("sip:alice@pbx.example", None),
        ("10", None),
        ("101; rm -rf /", None),
        ("unknown", None),
        (None, None),
    ],
)
def test_dial_number(stored, dial):
    assert dial_number(stored) == dial


@pytest.mark.parametrize(
    ("typed", "digits"),
    [
        ("8 (900) 123-45-67", "79001234567"),
        ("+7 900 1234567", "79001234567"),
        ("900 123-45-67", "79001234567"),  # a whole number without the country: as stored
        ("567-45", "56745"),  # a piece of one: its digits
        ("CA0010", ""),
        ("камера 3", ""),
    ],
)
def test_search_digits(typed, digits):
    assert search_digits(typed) == digits


@pytest.mark.parametrize("raw", ["12", "позвоните", "", "sip:alice@pbx"])
def test_require_phone_refuses_what_is_not_a_number(raw):
    with pytest.raises(UserError, match="not a phone number"):
        require_phone(raw)


def test_clean_removes_controls_and_escapes_and_says_so():
    cleaned = clean("Линия\x00 3\x1b[31m стоит\x1b[0m\x07\u202e", 300, what="тема")
    assert cleaned.text == "Линия 3 стоит" and cleaned.notes == ["тема: удалены управляющие символы"]
    assert clean_line("a\r\nb\tc") == "a b c"
    assert clean_text("a\r\nb\tc\x00") == "a\nb\tc"
    assert clean("x" * 10, 4).notes == ["текст: обрезано до 4 символов из 10"]
    assert clean("ok\ud800").text == "ok\ufffd"
    assert clean("обычный текст").notes == []
