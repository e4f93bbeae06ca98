"""What the caller hears, as segments, and its two renderings: text and audio keys.

The flow speaks in segments:

- `Prompt(key)`: a phrase of the catalogue (`voice_models.prompts`), e.g. "menu";
- `Number(digits)`: a request number, read digit by digit;
- `Date(day, with_year)`: a date in Russian, «двадцать четвёртое ноября».

`render_text(segments)` gives one Russian string for text to speech (Twilio `<Say>`);
`render_keys(segments)` gives one prompt key per piece of audio, in order, each of
which has a WAV file (`voice_models.prompts.prompt_audio_path`): play them one after
another (Asterisk `STREAM FILE`, Twilio `<Play>`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from voice_models.prompts import FIRST_YEAR, LAST_YEAR, prompt_text


@dataclass(frozen=True)
class Prompt:
    """A phrase of the prompt catalogue."""

    key: str


@dataclass(frozen=True)
class Number:
    """A request number, read digit by digit."""

    digits: str


@dataclass(frozen=True)
class Date:
    """A calendar date, read as «двадцать четвёртое ноября» (plus the year if asked)."""

    day: dt.date
    with_year: bool = False


Segment = Prompt | Number | Date


def segment_keys(segment: Segment) -> list[str]:
    """The prompt keys that say one segment."""
    if isinstance(segment, Prompt):
        return [segment.key]
    if isinstance(segment, Number):
        return [f"digit_{d}" for d in segment.digits if d.isdigit()]
    keys = [f"day_{segment.day.day}", f"month_{segment.day.month}"]
    if segment.with_year and FIRST_YEAR <= segment.day.year <= LAST_YEAR:
        keys.append(f"year_{segment.day.year}")
    return keys


def render_keys(segments: Iterable[Segment]) -> list[str]:
    """One prompt key per piece of audio, in the order they are played."""
    return [key for segment in segments for key in segment_keys(segment)]


def render_text(segments: Iterable[Segment]) -> str:
    """The whole speech as one Russian text, for text to speech."""
    parts: list[str] = []
    for segment in segments:
        texts = [prompt_text(key) for key in segment_keys(segment)]
        if isinstance(segment, Date) and segment.with_year and len(texts) == 2:
            texts.append(f"{segment.day.year} года")  # outside the audio catalogue's years
        # Commas between the digits make text to speech read them one by one.
        joined = ", ".join(texts) if isinstance(segment, Number) else " ".join(texts)
        if isinstance(segment, Number | Date):
            joined += "."
        # A phrase ending in no punctuation before a new sentence gets a full stop,
        # so that text to speech pauses («Вид заявки: инцидент. Статус: …»).
        if parts and parts[-1][-1] not in ".!?:," and joined[:1].isupper():
            parts[-1] += "."
        parts.append(joined)
    return " ".join(parts)
