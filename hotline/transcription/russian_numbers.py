"""Russian number words in a transcript turned into digits.

Vosk writes numbers as words ("сто двадцать три"), and callers read request numbers
digit by digit ("один ноль ноль ноль восемь") or in groups ("сто ноль ноль восемь").
`normalize_numbers` replaces every run of number words with digits: words that build
one number ("сто двадцать три") give that number, and numbers said one after another
are written one after another ("один ноль ноль ноль восемь" → "10008"), which is how
a dictated number is meant. num2words only goes the other way, hence this table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# word → (value, kind); kinds: zero, unit (1-9), teen (10-19), ten (20-90), hundred, scale.
_WORDS: dict[str, tuple[int, str]] = {}


def _add(kind: str, value: int, *forms: str) -> None:
    for form in forms:
        _WORDS[form] = (value, kind)


_add("zero", 0, "ноль", "нуль", "ноля", "нуля")
_add("unit", 1, "один", "одна", "одно", "одну", "одного", "одной")
_add("unit", 2, "два", "две", "двух")
_add("unit", 3, "три", "трех")
_add("unit", 4, "четыре", "четырех")
_add("unit", 5, "пять", "пяти")
_add("unit", 6, "шесть", "шести")
_add("unit", 7, "семь", "семи")
_add("unit", 8, "восемь", "восьми")
_add("unit", 9, "девять", "девяти")
for _value, _stem in enumerate(
    ("десят", "одиннадцат", "двенадцат", "тринадцат", "четырнадцат", "пятнадцат", "шестнадцат",
     "семнадцат", "восемнадцат", "девятнадцат"),
    start=10,
):  # fmt: skip
    _add("teen", _value, _stem + "ь", _stem + "и")
_add("ten", 20, "двадцать", "двадцати")
_add("ten", 30, "тридцать", "тридцати")
_add("ten", 40, "сорок", "сорока")
_add("ten", 50, "пятьдесят", "пятидесяти")
_add("ten", 60, "шестьдесят", "шестидесяти")
_add("ten", 70, "семьдесят", "семидесяти")
_add("ten", 80, "восемьдесят", "восьмидесяти")
_add("ten", 90, "девяносто")
_add("hundred", 100, "сто", "ста")
_add("hundred", 200, "двести", "двухсот")
_add("hundred", 300, "триста", "трехсот")
_add("hundred", 400, "четыреста", "четырехсот")
_add("hundred", 500, "пятьсот", "пятисот")
_add("hundred", 600, "шестьсот", "шестисот")
_add("hundred", 700, "семьсот", "семисот")
_add("hundred", 800, "восемьсот", "восьмисот")
_add("hundred", 900, "девятьсот", "девятисот")
_add("scale", 1000, "тысяча", "тысячи", "тысяч", "тысячу")
_add("scale", 1_000_000, "миллион", "миллиона", "миллионов")

_TOKEN = re.compile(r"\S+")


@dataclass
class _Group:
    """One number being built: a total of finished scales and the part below them."""

    total: int = 0
    part: int = 0
    last_scale: int = 0  # the smallest scale used so far (0: none)
    has_tens: bool = False
    has_units: bool = False
    empty: bool = True

    def accepts(self, value: int, kind: str) -> bool:
        if kind == "zero":
            return False
        if self.empty:
            return True
        if kind == "scale":
            return (self.last_scale == 0 or value < self.last_scale) and not (self.part == 0 and self.total)
        if kind == "hundred":
            return self.part == 0
        if kind in ("ten", "teen"):
            return not self.has_tens and not self.has_units
        return not self.has_units  # unit: after a hundred or a ten (not a teen)

    def add(self, value: int, kind: str) -> None:
        self.empty = False
        if kind == "scale":
            self.total += (self.part or 1) * value
            self.part, self.last_scale = 0, value
            self.has_tens = self.has_units = False
        elif kind == "hundred":
            self.part += value
        elif kind == "ten":
            self.part += value
            self.has_tens = True
        elif kind == "teen":
            self.part += value
            self.has_tens = self.has_units = True
        else:
            self.part += value
            self.has_units = True

    @property
    def value(self) -> int:
        return self.total + self.part


def words_to_digits(words: list[str]) -> str:
    """The digits said by a run of number words ('сто двадцать три' → '123')."""
    digits: list[str] = []
    group = _Group()
    for word in words:
        value, kind = _WORDS[_fold(word)]
        if kind == "zero":
            if not group.empty:
                digits.append(str(group.value))
                group = _Group()
            digits.append("0")
            continue
        if not group.accepts(value, kind):
            digits.append(str(group.value))
            group = _Group()
        group.add(value, kind)
    if not group.empty:
        digits.append(str(group.value))
    return "".join(digits)


def is_number_word(word: str) -> bool:
    """True if `word` is a Russian cardinal number word this module knows."""
    return _fold(word) in _WORDS


def normalize_numbers(text: str) -> str:
    """`text` with every run of Russian number words replaced by its digits."""
    out: list[str] = []
    run: list[str] = []
    for token in _TOKEN.findall(text):
        if is_number_word(token):
            run.append(token)
            continue
        if run:
            out.append(words_to_digits(run))
            run = []
        out.append(token)
    if run:
        out.append(words_to_digits(run))
    return " ".join(out)


def _fold(word: str) -> str:
    return word.lower().replace("ё", "е").strip(".,!?;:«»\"'()")


#: Every number word form this module knows (the live recognizer's grammar is built from it).
WORDS: tuple[str, ...] = tuple(_WORDS)
