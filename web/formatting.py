"""How things read on the dashboard: Russian labels, local times, durations."""

from __future__ import annotations

import datetime as dt
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import Flask, g, request
from sqlalchemy import select

from hotline.models import TranscriptionState, User, utcnow
from hotline.phones import display_phone, tel_uri
from hotline.users import ROLE_LABELS
from hotline.vocabulary import (
    Backend,
    BackendStatus,
    CallEventKind,
    Channel,
    HistoryAction,
    NotificationKind,
    NotificationState,
    NotifyChannel,
    Outcome,
    RequestKind,
    RequestStatus,
    file_size,
    label_of,
    plural,
)
from web.db import session, settings

# Every label comes from hotline.vocabulary; these are the template-facing dicts.
OUTCOME_LABELS = Outcome.choices()
BACKEND_LABELS = Backend.choices()
ACTION_LABELS = HistoryAction.choices()
TRANSCRIPTION_LABELS = {
    TranscriptionState.PENDING: "ждёт расшифровки",
    TranscriptionState.RUNNING: "расшифровывается",
    TranscriptionState.DONE: "расшифрована",
    TranscriptionState.FAILED: "расшифровка не удалась",
}
ACTOR_KINDS = {"engineer": "инженер", "caller": "звонивший", "email": "e-mail"}
ACTOR_NAMES = {"system": "система", "cli": "командная строка"}
# Words a recogniser was less sure of than this are marked for the engineer.
LOW_CONFIDENCE = 0.6
#: Recognisers by `Transcript.model` without its version; an unknown one goes unnamed.
MODEL_LABELS = {
    "fake": "демонстрационное распознавание",
    "vosk-model-small-ru": "малая русская модель",
    "vosk-model-ru": "большая русская модель",
}
#: Russia's time zones as people name them; another zone reads as «время UTC+N».
ZONE_NAMES = {
    "Europe/Kaliningrad": "калининградское",
    "Europe/Moscow": "московское",
    "Europe/Samara": "самарское",
    "Asia/Yekaterinburg": "екатеринбургское",
    "Asia/Omsk": "омское",
    "Asia/Novosibirsk": "новосибирское",
    "Asia/Krasnoyarsk": "красноярское",
    "Asia/Irkutsk": "иркутское",
    "Asia/Yakutsk": "якутское",
    "Asia/Vladivostok": "владивостокское",
    "Asia/Magadan": "магаданское",
    "Asia/Kamchatka": "камчатское",
}


def local(moment: dt.datetime | None, fmt: str = "%d.%m.%Y %H:%M") -> str:
    """A UTC moment as the plant's local time."""
    if moment is None:
        return "—"
    return moment.astimezone(settings().business_hours.timezone).strftime(fmt)


def duration(seconds: float | dt.timedelta | None) -> str:
    """3:07, 1:02:03, or 2 д 4 ч for long waits."""
    if seconds is None:
        return "—"
    total = int(seconds.total_seconds() if isinstance(seconds, dt.timedelta) else seconds)
    if total >= 86400:
        return f"{total // 86400} д {total % 86400 // 3600} ч"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def wait(span: dt.timedelta | None) -> str:
    """A waiting time as people say it: 40 с, 12 мин, 3 ч 5 мин, 2 д 4 ч."""
    if span is None:
        return "—"
    total = int(span.total_seconds())
    if total < 60:
        return f"{total} с"
    if total < 3600:
        return f"{total // 60} мин"
    if total < 86400:
        hours, minutes = total // 3600, total % 3600 // 60
        return f"{hours} ч {minutes} мин" if minutes else f"{hours} ч"
    days, hours = total // 86400, total % 86400 // 3600
    return f"{days} д {hours} ч" if hours else f"{days} д"


def zone(tz: ZoneInfo) -> str:
    """Asia/Yekaterinburg → «екатеринбургское время (UTC+5)»; an unnamed zone → «время UTC+N»."""
    minutes = int((dt.datetime.now(tz).utcoffset() or dt.timedelta()).total_seconds()) // 60
    hours, rest = divmod(abs(minutes), 60)
    utc = f"UTC{'+' if minutes >= 0 else '−'}{hours}{f':{rest:02d}' if rest else ''}" if minutes else "UTC"
    name = ZONE_NAMES.get(tz.key)
    return f"{name} время ({utc})" if name else f"время {utc}"


def ago(span: dt.timedelta | None) -> str:
    """How long ago, as people say it: только что, 1 минуту назад, 21 час назад, 2 дня назад."""
    if span is None:
        return "—"
    minutes = int(span.total_seconds()) // 60
    if minutes < 1:
        return "только что"
    if minutes < 60:
        return f"{minutes} {plural(minutes, 'минуту', 'минуты', 'минут')} назад"
    if minutes < 24 * 60:
        return f"{minutes // 60} {plural(minutes // 60, 'час', 'часа', 'часов')} назад"
    return f"{minutes // 1440} {plural(minutes // 1440, 'день', 'дня', 'дней')} назад"


def person(login: str) -> str:
    """An engineer's name by login («Анна Смирнова»); the login when the name is unknown."""
    if "user_names" not in g:  # one query a page, however many history lines name someone
        g.user_names = {login: name for login, name in session().execute(select(User.login, User.name))}
    return g.user_names.get(login) or login


def actor(text: str) -> str:
    """'engineer:anna' → 'Анна Смирнова', 'caller:+73435674530' → 'звонивший 8 (343) 567-45-30'."""
    if text in ACTOR_NAMES:
        return ACTOR_NAMES[text]
    kind, _, who = text.partition(":")
    if kind == "engineer" and person(who) != who:
        return person(who)
    if kind == "caller":
        who = display_phone(who).replace(" ", "\N{NO-BREAK SPACE}")  # a number never breaks
    if kind == "cli":
        return f"командная строка ({who})"  # the system user who ran `hotline request …`
    return f"{ACTOR_KINDS.get(kind, kind)} {who}".strip()


def percent(part: float | str, whole: float = 1) -> str:
    """0.125 → «13 %», 3 of 8 → «38 %»: half rounds up, as people count (round() goes to even)."""
    value = Decimal(str(part)) * 100 / Decimal(str(whole))
    return f"{value.quantize(Decimal(1), ROUND_HALF_UP)} %"


def recognition(model: str, confidence: float | str | None) -> str:
    """How a transcript was made, in words: «малая русская модель, уверенность 82 %»."""
    parts = [MODEL_LABELS.get(re.sub(r"-[\d.]+$", "", model), "")]
    if confidence is not None:
        parts.append(f"уверенность {percent(confidence)}")
    return ", ".join(p for p in parts if p)


# The transcription pipeline's history line names the model by its code and the
# confidence as a fraction: «Расшифровка готова (модель fake, средняя уверенность 1.00)».
_RECOGNITION_NOTE = re.compile(r" \(модель ([^,()]*)(?:, средняя уверенность ([\d.]+))?\)")


def history_text(text: str) -> str:
    """A history entry's text with the recogniser in words (rows already stored say its code)."""

    def plain(m: re.Match[str]) -> str:
        words = recognition(m[1], m[2])
        return f" ({words})" if words else ""

    return _RECOGNITION_NOTE.sub(plain, text)


def plural_filter(n: int, one: str, few: str, many: str) -> str:
    """`{{ n|plural('заявка', 'заявки', 'заявок') }}` → «21 заявка»."""
    return f"{n} {plural(n, one, few, many)}"


def agree(n: int, one: str, few: str, many: str) -> str:
    """`{{ n|agree('ждёт', 'ждут', 'ждут') }}`: the form alone, for the word after the count."""
    return plural(n, one, few, many)


def with_args(**changes: Any) -> str:
    """The current URL's query string with some arguments changed (None removes one)."""
    args = {k: v for k, v in request.args.items() if k not in changes}
    args.update({k: v for k, v in changes.items() if v not in (None, "")})
    return "?" + urlencode(args) if args else "?"


def init_app(app: Flask) -> None:
    app.context_processor(lambda: {"now": utcnow()})
    app.jinja_env.filters.update(
        local=local,
        duration=duration,
        wait=wait,
        ago=ago,
        zone=zone,
        actor=actor,
        person=person,
        size=file_size,
        percent=percent,
        history_text=history_text,
        plural=plural_filter,
        agree=agree,
        phone=display_phone,  # `8 (343) 567-45-30`; _macros.html's `phone` links it for dialling
        tel=tel_uri,
    )
    app.jinja_env.globals.update(
        with_args=with_args,
        recognition=recognition,
        STATUS_LABELS=RequestStatus.choices(),
        KIND_LABELS=RequestKind.choices(),
        CHANNEL_LABELS=Channel.choices(),
        OUTCOME_LABELS=OUTCOME_LABELS,
        BACKEND_LABELS=BACKEND_LABELS,
        ACTION_LABELS=ACTION_LABELS,
        TRANSCRIPTION_LABELS={s.value: label for s, label in TRANSCRIPTION_LABELS.items()},
        ROLE_LABELS={r.value: label for r, label in ROLE_LABELS.items()},
        LOW_CONFIDENCE=LOW_CONFIDENCE,
        RequestStatus=RequestStatus,
        RequestKind=RequestKind,
        Channel=Channel,
        Outcome=Outcome,
        Backend=Backend,
        BackendStatus=BackendStatus,
        CallEventKind=CallEventKind,
        NotificationKind=NotificationKind,
        NotificationState=NotificationState,
        NotifyChannel=NotifyChannel,
        HistoryAction=HistoryAction,
        label_of=label_of,
    )
