"""The TwiML of speech: `<Say>` and `<Play>` say the same words, free text included."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest

from ivr import flow
from ivr.speech import Date, Hours, Number, Prompt, Text, render_keys, render_text
from ivr.twilio import twiml
from voice_models.prompt_audio import read_manifest, text_hash
from voice_models.prompts import PROMPTS_DIR, all_prompt_keys, prompt_text

QUESTION = Text("Какая линия стоит?", intro="clarification_asked", fallback=("info_awaited",))


def rendered(mode: str, *segments: object) -> ET.Element:
    speech = twiml.SpeechRenderer(mode, "Polly.Tatyana", lambda key: f"https://h/twilio/prompts/{key}.wav")
    actions: list[flow.Action] = [flow.Speak(tuple(segments), barge_in=True), flow.Gather(1, 6)]  # type: ignore[arg-type]
    return ET.fromstring(twiml.render(actions, lambda step: f"https://h/{step}", speech))


def test_say_mode_speaks_the_question_from_its_text() -> None:
    say = rendered("say", Prompt("status_is"), QUESTION, Prompt("info_offer")).find("Gather/Say")
    assert say is not None and say.get("language") == "ru-RU"
    assert say.text == (
        "Статус: Инженер просит уточнить: Какая линия стоит? Чтобы записать ответ сейчас, нажмите 1. "
        "Чтобы вернуться в меню, нажмите звёздочку."
    )


def test_play_mode_plays_the_files_and_says_the_question() -> None:
    gather = rendered("play", Prompt("status_is"), QUESTION, Prompt("info_offer")).find("Gather")
    assert gather is not None
    verbs = [(v.tag, v.text) for v in gather]
    assert verbs == [
        ("Play", "https://h/twilio/prompts/status_is.wav"),
        ("Say", "Инженер просит уточнить: Какая линия стоит?"),
        ("Play", "https://h/twilio/prompts/info_offer.wav"),
    ]


def test_play_mode_plays_the_fallback_of_empty_text() -> None:
    gather = rendered("play", Text("", intro="clarification_asked", fallback=("info_awaited",))).find(
        "Gather"
    )
    assert gather is not None
    assert [(v.tag, v.text) for v in gather] == [("Play", "https://h/twilio/prompts/info_awaited.wav")]


@pytest.mark.parametrize(
    "segments",
    [
        (Prompt("greeting"), Prompt("menu")),
        (Prompt("request_number"), Number("10008"), Prompt("changed_on"), Date(dt.date(2025, 11, 24))),
        (Prompt("duty_closed"), Prompt("duty_hours"), Hours((0, 1, 2, 3, 4), dt.time(9), dt.time(18, 30))),
    ],
)
def test_say_and_play_carry_the_same_words(segments: tuple[flow.Segment, ...]) -> None:
    """What <Say> reads is the texts of the files <Play> plays, in the same order."""
    said = rendered("say", *segments).find("Gather/Say")
    played = [v.text for v in rendered("play", *segments).find("Gather") or []]  # type: ignore[union-attr]
    keys = render_keys(segments)
    assert played == [f"https://h/twilio/prompts/{k}.wav" for k in keys]
    assert said is not None and said.text == render_text(segments)
    words = said.text.replace(",", "").replace(".", "").replace(":", "").split()  # type: ignore[union-attr]
    key_words = (
        " ".join(prompt_text(k) for k in keys).replace(",", "").replace(".", "").replace(":", "").split()
    )
    assert words == key_words


def test_every_played_file_was_made_from_the_text_say_reads() -> None:
    manifest = read_manifest(PROMPTS_DIR)
    stale = [k for k in all_prompt_keys() if manifest.get(k, {}).get("hash") != text_hash(prompt_text(k))]
    assert stale == [], "run `hotline prompts build`"
