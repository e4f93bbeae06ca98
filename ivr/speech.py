"""What the caller hears, as segments, and its two renderings: text and audio keys.

The flow speaks in segments:

- `Prompt(key)`: a phrase of the catalogue (`voice_models.prompts`), e.g. "menu";
- `Number(digits)`: a request number, read digit by digit;
- `Date(day, with_year)`: a date in Russian, «двадцать четвёртое ноября»;
- `Hours(weekdays, start, end)`: working hours, «по будням, с девяти до восемнадцати»;
- `Text(text, intro, fallback)`: free text that has no audio file (an engineer's
  question), said after the phrase `intro`.

`render_text(segments)` gives one Russian string for text to speech (Twilio `<Say>`);
`render_audio(segments)` gives the pieces of audio in order: a prompt key, whose WAV
file is shipped (`voice_models.prompts.prompt_audio_path`), or a `Text` to be
synthesised at run time (`voice_models.prompt_audio.speak_cached`), with its
`fallback` keys to play where that cannot be done. `render_keys(segments)` gives the
prompt keys only, a `Text` replaced by its fallback: play them one after another
(Asterisk `STREAM FILE`, Twilio `<Play>`).
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


@dataclass(frozen=True)
class Hours:
    """Working hours: days of the week (0 = Monday) and a daily window."""

    weekdays: tuple[int, ...]
    start: dt.time
    end: dt.time


#: Longest free text said on the line (characters); longer text is cut at a word.
MAX_TEXT = 400


@dataclass(frozen=True)
class Text:
    """Free text with no audio file, said after the phrase `intro`.

    Where it cannot be synthesised, the `fallback` phrases are played instead of the
    whole segment (the intro included); where Asterisk cannot play the synthesised file
    (a folder it does not see), they follow the intro.
    """

    text: str
    intro: str | None = None
    fallback: tuple[str, ...] = ()


Segment = Prompt | Number | Date | Hours | Text


def clean_text(raw: str) -> str:
    """Free text made fit to be spoken: one line, no control characters, at most MAX_TEXT."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in raw).split())
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT].rsplit(" ", 1)[0].rstrip(",;:-")
    return text


#: The end of a window that lasts to midnight («24:00» in HOTLINE_BUSINESS_HOURS).
END_OF_DAY = dt.time.max


def _hours_keys(segment: Hours) -> list[str]:
    days = set(segment.weekdays)
    if days == set(range(7)):
        keys = ["days_daily"]
    elif days == set(range(5)):
        keys = ["days_weekdays"]
    else:
        keys = [f"weekday_{d}" for d in sorted(days) if 0 <= d <= 6]
        if len(keys) > 1:
            keys.insert(-1, "and")  # «по средам и по пятницам»
    if segment.start == dt.time(0) and segment.end == END_OF_DAY:
        return [*keys, "round_the_clock"]
    for edge, moment in (("from", segment.start), ("to", segment.end)):
        if moment == END_OF_DAY:
            keys.append("to_0")  # «до полуночи»
            continue
        keys.append(f"{edge}_{moment.hour}")
        keys += _minute_keys(moment.minute)
    return keys


def _minute_keys(minute: int) -> list[str]:
    """«ноль пяти», «пятнадцати», «сорока семи»: from 24 files, not 59."""
    if not minute:
        return []
    if minute < 10:
        return ["minute_0", f"minute_{minute}"]
    if minute < 20 or minute % 10 == 0:
        return [f"minute_{minute}"]
    return [f"minute_{minute - minute % 10}", f"minute_{minute % 10}"]


def segment_keys(segment: Segment) -> list[str]:
    """The prompt keys that say one segment (a `Text`: its fallback)."""
    if isinstance(segment, Prompt):
        return [segment.key]
    if isinstance(segment, Number):
        return [f"digit_{d}" for d in segment.digits if d.isdigit()]
    if isinstance(segment, Hours):
        return _hours_keys(segment)
    if isinstance(segment, Text):
        return list(segment.fallback)
    keys = [f"day_{segment.day.day}", f"month_{segment.day.month}"]
    if segment.with_year and FIRST_YEAR <= segment.day.year <= LAST_YEAR:
        keys.append(f"year_{segment.day.year}")
    return keys


def render_keys(segments: Iterable[Segment]) -> list[str]:
    """One prompt key per piece of audio, in the order they are played."""
    return [key for segment in segments for key in segment_keys(segment)]


def render_audio(segments: Iterable[Segment]) -> list[str | Text]:
    """The pieces of audio in order: prompt keys, and the `Text`s to synthesise."""
    pieces: list[str | Text] = []
    for segment in segments:
        if isinstance(segment, Text) and segment.text:
            pieces.append(segment)
        else:
            pieces.extend(segment_keys(segment))
    return pieces


def text_of(segment: Text) -> str:
    """What a `Text` says: its intro, then the text itself, as one sentence or two."""
    text = segment.text
    if text and text[-1] not in ".!?…":
        text += "."
    return f"{prompt_text(segment.intro)} {text}" if segment.intro else text


def render_text(segments: Iterable[Segment]) -> str:
    """The whole speech as one Russian text, for text to speech."""
    parts: list[str] = []
    for segment in segments:
        if isinstance(segment, Text):
            texts = [text_of(segment)] if segment.text else [prompt_text(k) for k in segment.fallback]
        else:
            texts = [prompt_text(key) for key in segment_keys(segment)]
        if isinstance(segment, Date) and segment.with_year and len(texts) == 2:
            texts.append(f"{segment.day.year} года")  # outside the audio catalogue's years
        # Commas between the digits (and the days) make text to speech pause on each.
        if isinstance(segment, Number):
            joined = ", ".join(texts)
        elif isinstance(segment, Hours) and "and" in (keys := segment_keys(segment)):
            last = keys.index("and") + 1  # the last day: «по понедельникам, по средам и по пятницам»
            joined = ", ".join(texts[: last - 1]) + " и " + texts[last] + ", " + " ".join(texts[last + 1 :])
        elif isinstance(segment, Hours):
            joined = texts[0] + ", " + " ".join(texts[1:])
        else:
            joined = " ".join(texts)
        if isinstance(segment, Number | Date | Hours):
            joined += "."
        # A phrase ending in no punctuation before a new sentence gets a full stop,
        # so that text to speech pauses («Вид заявки: инцидент. Статус: …»).
        if parts and parts[-1][-1] not in ".!?:," and joined[:1].isupper():
            parts[-1] += "."
        parts.append(joined)
    return " ".join(parts)
