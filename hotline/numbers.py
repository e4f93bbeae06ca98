"""Request numbers: digits only, the last one a Damm check digit over the others.

The Damm algorithm catches every single-digit error and every transposition of two
adjacent digits, the two mistakes people make on a keypad, so a mistyped number is
rejected before any lookup. Every channel (keypad, voice, e-mail, dashboard, CLI)
parses numbers with `parse_request_number`.
"""

from __future__ import annotations

import re

from hotline.errors import InvalidRequestNumber

# The totally anti-symmetric quasigroup of order 10 from Damm's thesis (2004).
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)

#: Sequence values start here, so that every number has at least five digits.
FIRST_SEQUENCE = 1000
MIN_LENGTH = 5
MAX_LENGTH = 12

# Digits standing alone in free text (e-mail subjects, transcripts): not part of a longer run.
_CANDIDATE = re.compile(rf"(?<!\d)\d{{{MIN_LENGTH},{MAX_LENGTH}}}(?!\d)")


def check_digit(digits: str) -> int:
    """The Damm check digit of a string of decimal digits."""
    interim = 0
    for ch in digits:
        interim = _DAMM[interim][ord(ch) - 48]
    return interim


def is_valid(number: str) -> bool:
    """True if `number` is all digits and its check digit is right."""
    return number.isascii() and number.isdigit() and check_digit(number) == 0


def make_request_number(sequence: int) -> str:
    """The request number for the n-th allocated sequence value."""
    if sequence < FIRST_SEQUENCE:
        raise ValueError(f"sequence must be at least {FIRST_SEQUENCE}")
    body = str(sequence)
    return body + str(check_digit(body))


def parse_request_number(text: str) -> str:
    """Normalise what a person typed into a request number, or raise InvalidRequestNumber.

    Spaces, dashes, a leading '№' or '#' and a trailing '#' (the keypad terminator)
    are tolerated; anything else that is not a digit is an error.
    """
    cleaned = text.strip().lstrip("№").strip().strip("#")
    cleaned = re.sub(r"[\s\-]", "", cleaned)
    if not cleaned:
        raise InvalidRequestNumber("номер заявки не указан")
    if not (cleaned.isascii() and cleaned.isdigit()):
        raise InvalidRequestNumber(f"номер заявки состоит только из цифр: {text.strip()!r}")
    if not MIN_LENGTH <= len(cleaned) <= MAX_LENGTH:
        raise InvalidRequestNumber(
            f"в номере заявки от {MIN_LENGTH} до {MAX_LENGTH} цифр, введено {len(cleaned)}"
        )
    if check_digit(cleaned) != 0:
        raise InvalidRequestNumber(f"номер {cleaned} введён с ошибкой (не сходится контрольная цифра)")
    return cleaned


def find_request_numbers(text: str) -> list[str]:
    """Valid request numbers standing alone in free text, in order, without repeats."""
    found: list[str] = []
    for match in _CANDIDATE.finditer(text):
        number = match.group()
        if is_valid(number) and number not in found:
            found.append(number)
    return found
