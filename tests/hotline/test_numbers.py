import random

import pytest

from hotline.errors import InvalidRequestNumber
from hotline.numbers import (
    check_digit,
    find_request_numbers,
    is_valid,
    make_request_number,
    parse_request_number,
)

SAMPLE = [make_request_number(n) for n in [1000, 1001, 1234, 9999, 10000, 54321, 99999, 123456]] + [
    make_request_number(random.Random(7).randrange(1000, 10**9)) for _ in range(200)
]


def test_known_damm_values():
    # Worked example from the Damm algorithm's literature: 572 → check digit 4.
    assert check_digit("572") == 4
    assert is_valid("5724")
    assert make_request_number(1000) == "10008"


@pytest.mark.parametrize("number", SAMPLE)
def test_every_single_digit_substitution_is_rejected(number):
    assert parse_request_number(number) == number
    for i, original in enumerate(number):
        for digit in "0123456789":
            if digit != original:
                typo = number[:i] + digit + number[i + 1 :]
                with pytest.raises(InvalidRequestNumber):
                    parse_request_number(typo)


@pytest.mark.parametrize("number", SAMPLE)
def test_every_adjacent_transposition_is_rejected(number):
    for i in range(len(number) - 1):
        if number[i] != number[i + 1]:
            swapped = number[:i] + number[i + 1] + number[i] + number[i + 2 :]
            with pytest.raises(InvalidRequestNumber):
                parse_request_number(swapped)


@pytest.mark.parametrize(
    "typed, expected",
    [("10008#", "10008"), (" 100-08 ", "10008"), ("№10008", "10008"), ("#10008#", "10008")],
)
def test_tolerated_decorations(typed, expected):
    assert parse_request_number(typed) == expected


@pytest.mark.parametrize(
    "typed, reason",
    [
        ("", "не указан"),
        ("#", "не указан"),
        ("abc12", "только из цифр"),
        ("1000٧", "только из цифр"),  # non-ASCII digit
        ("1234", "от 5"),
        ("9" * 500, "от 5"),
        ("10007", "контрольная цифра"),
    ],
)
def test_bad_input_gets_a_clear_error(typed, reason):
    with pytest.raises(InvalidRequestNumber, match=reason):
        parse_request_number(typed)


def test_numbers_increase_with_the_sequence():
    numbers = [make_request_number(n) for n in range(1000, 1100)]
    assert [int(n[:-1]) for n in numbers] == list(range(1000, 1100))
    with pytest.raises(ValueError):
        make_request_number(999)


def test_find_request_numbers_in_free_text():
    text = "Re: заявка №10008, см. также 10019 и 10007 (опечатка), телефон 83435674530"
    assert find_request_numbers(text) == ["10008", "10019"]
    assert find_request_numbers("10008 10008") == ["10008"]
