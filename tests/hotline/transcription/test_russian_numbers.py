import pytest

from hotline.transcription.russian_numbers import normalize_numbers, words_to_digits


@pytest.mark.parametrize(
    ("words", "digits"),
    [
        ("ноль", "0"),
        ("семь", "7"),
        ("двенадцать", "12"),
        ("сорок два", "42"),
        ("сто", "100"),
        ("сто двадцать три", "123"),
        ("сто пять", "105"),
        ("девятьсот девяносто девять", "999"),
        ("тысяча", "1000"),
        ("две тысячи двадцать пять", "2025"),
        ("сто тысяч", "100000"),
        ("миллион двести тысяч", "1200000"),
        # Callers dictate request numbers digit by digit or in groups.
        ("один ноль ноль ноль восемь", "10008"),
        ("десять ноль ноль восемь", "10008"),
        ("сто ноль ноль восемь", "100008"),
        ("двадцать двадцать", "2020"),
        ("одиннадцать два", "112"),
        ("три четыре пять", "345"),
        ("сто двадцать три сорок пять", "12345"),
        ("нуль один", "01"),
        # Case forms and ё.
        ("трёх", "3"),
        ("Одна Тысяча", "1000"),
    ],
)
def test_words_to_digits(words, digits):
    assert words_to_digits(words.split()) == digits


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("заявка один ноль ноль ноль восемь не работает", "заявка 10008 не работает"),
        ("линия номер три стоит уже сто двадцать минут", "линия номер 3 стоит уже 120 минут"),
        ("никаких чисел тут нет", "никаких чисел тут нет"),
        ("", ""),
        ("пять", "5"),
    ],
)
def test_normalize_numbers(text, normalized):
    assert normalize_numbers(text) == normalized
